"""The model zoo on the device side: where built models live and how to find them.

Models are *built* on a workstation (``edgelite models build``, needs the
``convert`` extra) and *used* here. The cache directory is, in order:

1. the ``cache_dir`` argument / ``--cache-dir`` flag,
2. the ``EDGELITE_CACHE_DIR`` environment variable,
3. ``$XDG_CACHE_HOME/edgelite`` (``~/.cache/edgelite`` when unset).

Layout: ``<cache>/models/<name>-<precision>.tflite`` plus a JSON sidecar
``<name>-<precision>.json`` (build report, golden input/output hashes), a
``<name>-<precision>.tflite.sha256`` sidecar (``sha256sum`` format, written by the
build) and ``<cache>/sources/`` for the verified source ONNX files.

Integrity: :func:`require_model` (what every ``from_zoo`` factory calls) checks
the model's SHA-256 against its sidecar and raises
:class:`~edgelite.errors.IntegrityError` on a mismatch or a missing sidecar, with
the command that rebuilds it. A flipped bit or a truncated copy would otherwise
load and run with different outputs and no error (in a trial, 45 of 150 mutated
copies of the int8 YuNet did). The check hashes the file once per process and
caches the verdict against the file's ``(device, inode, size, mtime_ns)`` and the
sidecar's digest: a second ``from_zoo`` costs one ``stat``. Trade-off: a rewrite
in place that keeps size, inode *and* mtime (``touch -r``) while the process runs
is not re-hashed; that needs write access to the cache, which can also rewrite
the sidecar, so the check guards against corruption and accidental swaps, not
against someone who owns the cache directory (see SECURITY.md).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import threading

from .errors import IntegrityError, ZooError
from .fileio import atomic_write_bytes, sha256_file  # noqa: F401 - re-exported (older imports)

ENV_CACHE_DIR = "EDGELITE_CACHE_DIR"

#: Names of the zoo models and what they are.
ZOO_MODELS = {
    "yunet_320": "face detector: YuNet 2023mar at 320x320 (OpenCV model zoo, MIT)",
    "yunet_640": "face detector: YuNet 2023mar at 640x640 (OpenCV model zoo, MIT)",
    "sface": "face embedder: SFace 2021dec, 112x112 -> 128-D (OpenCV model zoo, Apache-2.0)",
}
#: Optional zoo models: built by ``edgelite models build`` like the others, but
#: nothing requires them unless their feature is used (``FaceLivenessChecker``,
#: ``face_unlock --liveness``).
OPTIONAL_MODELS = {
    "minifasnet_v2": "face liveness: MiniFASNetV2 80x80, crop scale 2.7 (Silent-Face-Anti-Spoofing, Apache-2.0)",
    "minifasnet_v1se": "face liveness: MiniFASNetV1SE 80x80, crop scale 4.0 (Silent-Face-Anti-Spoofing, Apache-2.0)",
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
    if name not in ZOO_MODELS and name not in OPTIONAL_MODELS:
        raise ZooError(f"unknown zoo model {name!r}; known: {', '.join([*ZOO_MODELS, *OPTIONAL_MODELS])}")
    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return models_dir(cache) / f"{name}-{precision}.tflite"


def require_model(name: str, precision: str = "int8", cache: str | os.PathLike | None = None,
                  *, verify: bool = True) -> Path:
    """Like :func:`model_path`, for a model that must be there and intact.

    Raises:
        ZooError: the model is not built (the message says how to build it).
        IntegrityError: ``verify`` and the file does not match its recorded
            SHA-256 (see :func:`verify_model`).
    """
    p = model_path(name, precision, cache)
    if not p.is_file():
        raise ZooError(
            f"zoo model {name}-{precision} is not built (looked for {p}). Build it on a "
            "machine with the convert extra: `pip install 'edgelite[convert]' && edgelite models build`, "
            f"then copy {p.parent} to this device (or set {ENV_CACHE_DIR})."
        )
    if verify:
        verify_model(p, name=f"{name}-{precision}", cache=cache)
    return p


def sha256_sidecar(model: str | os.PathLike) -> Path:
    """Path of the SHA-256 sidecar of a model file (``<file>.sha256``)."""
    model = Path(model)
    return model.with_name(model.name + ".sha256")


def write_sha256_sidecar(model: str | os.PathLike, digest: str | None = None) -> Path:
    """Record a model's SHA-256 next to it (``sha256sum`` format), atomically."""
    model = Path(model)
    digest = digest or sha256_file(model)
    side = sha256_sidecar(model)
    atomic_write_bytes(side, f"{digest}  {model.name}\n".encode())
    return side


_verified: dict[str, tuple] = {}
_verified_lock = threading.Lock()


def _rebuild_hint(name: str | None, cache: str | os.PathLike | None) -> str:
    cache_opt = f" --cache-dir {cache}" if cache else ""
    what = f" {name}" if name else ""
    return (f"rebuild it on a machine with the convert extra: `edgelite models build --force{cache_opt}`"
            f"{' (model' + what + ')' if name else ''}, then copy the models folder to this device again")


def verify_model(path: str | os.PathLike, *, name: str | None = None,
                 cache: str | os.PathLike | None = None) -> Path:
    """Check a zoo model file against its recorded SHA-256; return the path.

    The verdict is cached per process against ``(device, inode, size, mtime_ns)``
    of the file and the recorded digest, so repeated loads cost one ``stat``.

    Raises:
        IntegrityError: no sidecar, an unreadable sidecar, or a digest mismatch;
            the message says how to rebuild.
    """
    path = Path(path)
    side = sha256_sidecar(path)
    try:
        recorded = side.read_text(encoding="ascii", errors="replace").split()[0].lower()
    except FileNotFoundError:
        raise IntegrityError(
            f"{path}: no recorded SHA-256 ({side.name} is missing: built by an older edgelite, or copied "
            f"without it), so it cannot be verified; {_rebuild_hint(name, cache)}"
        ) from None
    except (OSError, IndexError) as exc:
        raise IntegrityError(f"{path}: unreadable SHA-256 sidecar {side} ({exc}); {_rebuild_hint(name, cache)}") from None
    if len(recorded) != 64 or any(c not in "0123456789abcdef" for c in recorded):
        raise IntegrityError(f"{path}: sidecar {side.name} does not hold a SHA-256; {_rebuild_hint(name, cache)}")
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, recorded)
    with _verified_lock:
        if _verified.get(str(path)) == key:
            return path
    actual = sha256_file(path)
    if actual != recorded:
        raise IntegrityError(
            f"{path}: SHA-256 {actual} does not match the one recorded at build time ({recorded}); the file is "
            f"corrupt or was modified; {_rebuild_hint(name, cache)}"
        )
    with _verified_lock:
        _verified[str(path)] = key
    return path


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
    for name in [*ZOO_MODELS, *OPTIONAL_MODELS]:
        for precision in PRECISIONS:
            p = model_path(name, precision, cache)
            if p.is_file():
                out.append(ZooEntry(name, precision, str(p), p.stat().st_size, sha256_file(p)))
    return out
