"""The model zoo on the device side: where built models live and how to find them.

Models are *built* on a workstation (``edgelite models build``, needs the
``convert`` extra) and *used* here. The cache directory is, in order:

1. the ``cache_dir`` argument / ``--cache-dir`` flag,
2. the ``EDGELITE_CACHE_DIR`` environment variable,
3. ``$XDG_CACHE_HOME/edgelite`` (``~/.cache/edgelite`` when unset).

Layout: ``<cache>/models/<name>-<precision>.tflite`` plus a JSON sidecar
``<name>-<precision>.json`` (build report, golden input/output hashes) and
``<cache>/sources/`` for the verified source ONNX files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from .errors import ZooError

ENV_CACHE_DIR = "EDGELITE_CACHE_DIR"

#: Names of the zoo models and what they are.
ZOO_MODELS = {
    "yunet_320": "face detector: YuNet 2023mar at 320x320 (OpenCV model zoo, MIT)",
    "yunet_640": "face detector: YuNet 2023mar at 640x640 (OpenCV model zoo, MIT)",
    "sface": "face embedder: SFace 2021dec, 112x112 -> 128-D (OpenCV model zoo, Apache-2.0)",
}
PRECISIONS = ("int8", "float32")


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Return the edgelite cache directory (not created)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "edgelite"


def models_dir(override: str | os.PathLike | None = None) -> Path:
    return cache_dir(override) / "models"


def sources_dir(override: str | os.PathLike | None = None) -> Path:
    return cache_dir(override) / "sources"


def model_path(name: str, precision: str = "int8", cache: str | os.PathLike | None = None) -> Path:
    """Path where zoo model ``name`` at ``precision`` lives (may not exist yet)."""
    if name not in ZOO_MODELS:
        raise ZooError(f"unknown zoo model {name!r}; known: {', '.join(ZOO_MODELS)}")
    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return models_dir(cache) / f"{name}-{precision}.tflite"


def require_model(name: str, precision: str = "int8", cache: str | os.PathLike | None = None) -> Path:
    """Like :func:`model_path` but raise a :class:`ZooError` saying how to build it when absent."""
    p = model_path(name, precision, cache)
    if not p.is_file():
        raise ZooError(
            f"zoo model {name}-{precision} is not built (looked for {p}). Build it on a "
            "machine with the convert extra: `pip install 'edgelite[convert]' && edgelite models build`, "
            f"then copy {p.parent} to this device (or set {ENV_CACHE_DIR})."
        )
    return p


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
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


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One built model in the cache."""

    name: str
    precision: str
    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def list_models(cache: str | os.PathLike | None = None) -> list[ZooEntry]:
    """List the zoo models present in the cache (built ones only)."""
    out = []
    for name in ZOO_MODELS:
        for precision in PRECISIONS:
            p = model_path(name, precision, cache)
            if p.is_file():
                out.append(ZooEntry(name, precision, str(p), p.stat().st_size, sha256_file(p)))
    return out
