"""Shared fixtures. Real models and data only: the zoo's source ONNX files are
fetched (and hash-verified) once per cache, never mocked."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


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
