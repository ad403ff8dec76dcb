"""File helpers shared by the runtime and the converter: hashing and atomic writes.

Part of the small surface the converter uses (with :class:`edgelite.Model`,
:class:`edgelite.preprocess.PreprocessSpec`, :mod:`edgelite.metadata`,
:func:`edgelite.read_model_info` and the errors): a model, a cache file or an output
shard is written so that a reader, or a process killed mid-write, sees either the
old file or the new one, never a truncated one.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from pathlib import Path

from .errors import InputError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (bounded memory for any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, rename.

    A reader (or a process killed mid-write) sees either the old file or the new
    one, never a truncated model.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    finally:
        if tmp.exists():
            tmp.unlink()


def load_npy_bytes(data: bytes, what: str = "npy data"):
    """Parse ``.npy`` bytes without trusting their header.

    ``np.load`` allocates the array the header declares before reading the data, so
    a 100-byte payload declaring a terabyte shape is a memory bomb; object arrays
    would need pickle (code chosen by whoever wrote the file). Here the header is
    parsed, only numeric dtypes are accepted, the declared size is checked against
    the bytes actually present, and the data is viewed in place.

    Raises:
        InputError: not an ``.npy``, a non-numeric dtype, or a size that does not match.
    """
    import numpy as np
    from numpy.lib import format as npf

    f = io.BytesIO(data)
    try:
        version = npf.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(f, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npf.read_array_header_2_0(f, max_header_size=10_000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as e:
        raise InputError(f"{what} is not a valid .npy array: {e}") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InputError(f"{what}: dtype {dtype} is not allowed (numeric arrays only; object arrays would "
                         "need pickle)")
    count = math.prod(shape)
    payload = data[f.tell():]
    if count * dtype.itemsize != len(payload):
        raise InputError(f"{what}: header declares {shape} {dtype} ({count * dtype.itemsize} bytes) but "
                         f"{len(payload)} bytes follow")
    arr = np.frombuffer(payload, dtype=dtype, count=count)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


__all__ = ["atomic_write_bytes", "load_npy_bytes", "sha256_file"]
