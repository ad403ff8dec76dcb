"""Turning ``INPUT…`` arguments into one sorted list of files, and reading them.

An input is one of:

* a folder: scanned recursively for image files (and ``.npy`` for the ``model``
  task); hidden files and folders (``.name``) are skipped;
* a glob (``photos/**/*.jpg``): every match that is not a folder is tried;
* a manifest: ``.txt``/``.lst`` (one path per line, ``#`` comments), ``.csv`` or
  ``.parquet`` with a ``path`` column; relative paths are relative to the
  manifest's folder;
* any other file, which is always tried whatever it holds (so a bad one ends up
  in the errors table rather than being silently ignored);
* a URI of any filesystem pyarrow knows (``s3://bucket/prefix/``,
  ``gs://…``, ``file:///…``): a prefix is listed recursively like a folder.

The list is de-duplicated and sorted, so the same inputs always give the same
shards (that is what makes resume exact).
"""
from __future__ import annotations

import csv
import glob
import os
import stat
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ImageError, InputError
from .options import IMAGE_EXTS, NPY_EXTS

MANIFEST_EXTS = (".txt", ".lst", ".csv", ".parquet")


def is_uri(s: str) -> bool:
    """A pyarrow filesystem URI (``s3://``, ``gs://``…); ``file://`` counts as a local path."""
    return "://" in s and not s.startswith("file://")


def _wanted(name: str, exts: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(exts))


def _scan_dir(root: Path, exts: Sequence[str]) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and _wanted(f, exts):
                out.append(os.path.abspath(os.path.join(dirpath, f)))
    return out


def _read_manifest(path: Path) -> list[str]:
    base = path.parent
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        from ._arrow import require_pyarrow

        pa, pq = require_pyarrow()
        table = pq.read_table(path)
        if "path" not in table.column_names:
            raise InputError(f"manifest {path} has no 'path' column (columns: {table.column_names})")
        items = [p for p in table.column("path").to_pylist() if p]
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise InputError(f"manifest {path} has no 'path' column in its header (got {reader.fieldnames})")
            items = [r["path"].strip() for r in reader if (r.get("path") or "").strip()]
    else:
        items = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                items.append(line)
    out = []
    for p in items:
        if is_uri(p) or os.path.isabs(p):
            out.append(p)
        else:
            out.append(os.path.abspath(base / p))
    return out


def _list_uri(uri: str, exts: Sequence[str]) -> list[str]:
    from ._arrow import require_pyarrow

    require_pyarrow()
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input {uri} does not exist")
    if info.type == pafs.FileType.File:
        return [uri]
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return [f"{scheme}://{f.path}" for f in found
            if f.type == pafs.FileType.File and not f.base_name.startswith(".") and _wanted(f.base_name, exts)]


def collect_inputs(inputs: Iterable[str | os.PathLike], *, npy: bool = False) -> list[str]:
    """Expand folders, globs and manifests into a sorted, de-duplicated list of paths.

    Args:
        inputs: folders, files, globs, manifests or filesystem URIs (see the module doc).
        npy: also pick ``.npy`` files when scanning folders (the ``model`` task).

    Returns:
        Absolute local paths and URIs, sorted.

    Raises:
        InputError: an input that does not exist, a glob that matches nothing, a
            manifest without a ``path`` column.
    """
    exts = IMAGE_EXTS + (NPY_EXTS if npy else ())
    out: set[str] = set()
    for raw in inputs:
        s = os.fspath(raw)
        if not s:
            raise InputError("an input is the empty string")
        if is_uri(s):
            out.update(_list_uri(s, exts))
            continue
        if s.startswith("file://"):
            s = s[len("file://"):]
        p = Path(s)
        if any(ch in s for ch in "*?[") and not p.exists():
            matches = [m for m in glob.glob(s, recursive=True) if not os.path.isdir(m)]
            if not matches:
                raise InputError(f"glob {s!r} matches no file")
            out.update(os.path.abspath(m) for m in matches)
        elif p.is_dir():
            out.update(_scan_dir(p, exts))
        elif p.suffix.lower() in MANIFEST_EXTS and p.is_file():
            out.update(_read_manifest(p))
        elif os.path.lexists(p):
            out.add(os.path.abspath(p))
        else:
            raise InputError(f"input {s!r} does not exist (a folder, file, glob, manifest or URI was expected)")
    return sorted(out)


class UnreadableError(ImageError):
    """The bytes of an input could not be read (missing, a folder, a special file, too big...)."""


def check_stat(path: str, st: os.stat_result, max_bytes: int) -> None:
    """Refuse what is not a regular file, or is above ``max_bytes``, from its ``stat``."""
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise UnreadableError(f"{path}: is {kind}, not a regular file")
    if st.st_size > max_bytes:
        raise UnreadableError(f"{path}: {st.st_size} bytes is above max_file_bytes={max_bytes}")


def read_bytes(path: str, max_bytes: int) -> bytes:
    """The bytes of one input, refusing what is not a regular file or is too big.

    A FIFO would block a reader forever and ``/dev/zero`` never ends: both are
    refused from ``stat`` before any read, and the read itself is capped.
    """
    if is_uri(path):
        import pyarrow.fs as pafs

        fs, p = pafs.FileSystem.from_uri(path)
        info = fs.get_file_info(p)
        if info.type != pafs.FileType.File:
            raise UnreadableError(f"{path}: not a file ({info.type.name})")
        if info.size is not None and info.size > max_bytes:
            raise UnreadableError(f"{path}: {info.size} bytes is above max_file_bytes={max_bytes}")
        with fs.open_input_stream(p) as f:
            data = f.read(max_bytes + 1)
    else:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UnreadableError(f"{path}: no such file") from None
        except OSError as e:
            raise UnreadableError(f"{path}: cannot stat ({e.strerror or e})") from None
        check_stat(path, st, max_bytes)
        try:
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise UnreadableError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise UnreadableError(f"{path}: more than max_file_bytes={max_bytes} bytes")
    return data


def decode_npy(data: bytes, label: str):
    """A ``.npy`` payload as an array: :func:`edgelite.fileio.load_npy_bytes` (no pickles,
    and a header declaring more data than the file holds is refused before any allocation)."""
    from ..errors import InputError
    from ..fileio import load_npy_bytes

    try:
        return load_npy_bytes(data, str(label))
    except InputError as e:
        raise ImageError(f"{label}: not a valid .npy file ({e})") from None
