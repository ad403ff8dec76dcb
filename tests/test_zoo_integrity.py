"""Issue 11, model integrity: zoo models are verified against the SHA-256 recorded at build."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgelite import zoo
from edgelite.errors import IntegrityError, ZooError
from edgelite.face import FaceDetector


def _cache_with(tmp_path, zoo_models, name="yunet_320", precision="int8"):
    src = zoo.model_path(name, precision)
    dst = zoo.model_path(name, precision, tmp_path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    shutil.copy2(zoo.sha256_sidecar(src), zoo.sha256_sidecar(dst))
    return dst


def test_build_records_a_sidecar_for_every_model(zoo_models):
    for name in zoo.ZOO_MODELS:
        for precision in zoo.PRECISIONS:
            p = zoo.model_path(name, precision)
            line = zoo.sha256_sidecar(p).read_text()
            assert line == f"{zoo.sha256_file(p)}  {p.name}\n"  # sha256sum -c format
            assert zoo.require_model(name, precision) == p


@pytest.mark.parametrize("offset", [0.1, 0.5, 0.97])
def test_mutated_model_is_refused_with_a_rebuild_hint(tmp_path, zoo_models, offset):
    dst = _cache_with(tmp_path, zoo_models)
    data = bytearray(dst.read_bytes())
    data[int(len(data) * offset)] ^= 0x01  # one flipped bit
    mutated = tmp_path / "mutated"
    p = zoo.model_path("yunet_320", "int8", mutated)
    p.parent.mkdir(parents=True)
    p.write_bytes(bytes(data))
    shutil.copy2(zoo.sha256_sidecar(dst), zoo.sha256_sidecar(p))
    with pytest.raises(IntegrityError, match=r"does not match.*edgelite models build --force"):
        FaceDetector.from_zoo(cache_dir=str(mutated), input_size=320).detect(np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(ZooError):  # IntegrityError is a ZooError and a ValueError
        zoo.require_model("yunet_320", "int8", mutated)


def test_truncated_and_unrecorded_models_are_refused(tmp_path, zoo_models):
    dst = _cache_with(tmp_path, zoo_models)
    dst.write_bytes(dst.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match="does not match"):
        zoo.require_model("yunet_320", "int8", tmp_path)
    zoo.sha256_sidecar(dst).unlink()
    with pytest.raises(IntegrityError, match="no recorded SHA-256.*edgelite models build"):
        zoo.require_model("yunet_320", "int8", tmp_path)
    zoo.sha256_sidecar(dst).write_text("not a digest\n")
    with pytest.raises(IntegrityError, match="does not hold a SHA-256"):
        zoo.require_model("yunet_320", "int8", tmp_path)


def test_verification_is_cached_against_size_mtime_inode(tmp_path, zoo_models, monkeypatch):
    dst = _cache_with(tmp_path, zoo_models)
    calls = []
    real = zoo.sha256_file
    monkeypatch.setattr(zoo, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    for _ in range(3):
        zoo.require_model("yunet_320", "int8", tmp_path)
    assert len(calls) == 1
    # a modified file (new mtime) is hashed again, and refused
    data = bytearray(dst.read_bytes())
    data[1000] ^= 0xFF
    dst.write_bytes(bytes(data))
    st = dst.stat()
    import os
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(IntegrityError):
        zoo.require_model("yunet_320", "int8", tmp_path)
    assert len(calls) == 2
