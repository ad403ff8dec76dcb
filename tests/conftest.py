"""Shared fixtures. Real models and data only: the zoo's source ONNX files are
fetched (and hash-verified) once per cache, never mocked."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

# Tests build and use the zoo in a project-local cache, so a fresh clone (CI) really
# exercises fetch + convert instead of finding models a developer built by hand.
os.environ.setdefault("EDGELITE_CACHE_DIR", str(ROOT / ".cache" / "edgelite"))


@pytest.fixture(scope="session")
def onnx_sources() -> Path:
    """Directory with the two verified zoo source ONNX files (YuNet 2023mar, SFace 2021dec)."""
    from edgelite_convert.sources import fetch_sources

    paths = fetch_sources()
    d = paths["yunet"].parent
    assert (d / paths["sface"].name).is_file()
    return d


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return DATA / "faces"


@pytest.fixture(scope="session")
def zoo_models(onnx_sources) -> Path:
    """The built zoo (YuNet 320/640 + SFace, int8 + float32); built once if missing."""
    from edgelite import zoo
    from edgelite_convert.zoo import build_zoo

    missing = [n for n in zoo.ZOO_MODELS for p in zoo.PRECISIONS
               if not zoo.model_path(n, p).is_file() or not zoo.sha256_sidecar(zoo.model_path(n, p)).is_file()]
    if missing:
        build_zoo(progress=False)
    return zoo.models_dir()


@pytest.fixture(scope="session")
def orl_lfw(tmp_path_factory):
    """ORL subjects s21..s40 (not used for calibration) in LFW layout + a 10-fold pairs file."""
    from edgelite.face.pairs import make_pairs, write_lfw_layout

    root = tmp_path_factory.mktemp("orl_lfw")
    counts = write_lfw_layout(DATA / "faces" / "orl", root, [f"s{i}" for i in range(21, 41)])
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(make_pairs(counts)) + "\n")
    return root, pairs


def pytest_collection_modifyitems(config, items):
    """The golden tier needs the real zoo models (fetch + convert, minutes on a cold
    cache): every test that uses them, directly or through another fixture, is
    marked ``golden`` and ``slow``, so ``make test-fast`` (``-m "not slow"``) never
    builds the zoo."""
    for item in items:
        if "zoo_models" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.golden)
            item.add_marker(pytest.mark.slow)
