"""File helpers shared by the runtime and the converter: hashing and atomic writes.

Part of the small surface the converter uses (with :class:`edgelite.Model`,
:class:`edgelite.preprocess.PreprocessSpec`, :mod:`edgelite.metadata`,
:func:`edgelite.read_model_info` and the errors): a model, a cache file or an output
shard is written so that a reader, or a process killed mid-write, sees either the
old file or the new one, never a truncated one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


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


__all__ = ["atomic_write_bytes", "sha256_file"]
