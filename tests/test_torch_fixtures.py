"""PyTorch models through ONNX: committed fixtures exported by tests/data/torch/make_torch_fixtures.py
(torch version in fixtures.json) convert to full int8, match onnxruntime in float, and run as one
XNNPACK partition (issue 12, item 11). No torch needed here; ``make test-torch`` covers the live path."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite.inspect import inspect_model

HERE = Path(__file__).resolve().parent / "data" / "torch"
INFO = json.loads((HERE / "fixtures.json").read_text())
NAMES = sorted(INFO["models"])


def synthetic_nhwc(n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1.5, 1.5, (n, 4, 4, 3)).astype(np.float32)
    img = np.repeat(np.repeat(base, -(-size // 4), 1), -(-size // 4), 2)[:, :size, :size]
    img = (img + rng.normal(0, 0.3, img.shape)).astype(np.float32)
    return [i[None] for i in img]


def test_fixtures_are_what_the_generator_recorded():
    assert INFO["torch"].startswith("2.") and INFO["opset"] == 17
    for name in NAMES:
        m = INFO["models"][name]
        assert hashlib.sha256((HERE / m["file"]).read_bytes()).hexdigest() == m["sha256"], name


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_torch_fixture_converts_fully_int8(name):
    from edgelite_convert import ConvertOptions, convert

    m = INFO["models"][name]
    size = m["input_shape"][2]
    calib = synthetic_nhwc(72, size, 1)
    res = convert(HERE / m["file"], calibration=calib, progress=False, options=ConvertOptions(holdout=12))
    rep = res.report
    assert rep["fully_integer"] is True, rep["float_ops"]
    assert rep["onnx_vs_float_tflite"]["max_abs_error_overall"] < 1e-3
    assert rep["validation"]["cosine_min_over_outputs"] >= 0.95, rep["validation"]
    assert [o.op_name for o in inspect_model(res.model).xnnpack_ops if not o.delegated] == []
    parts = sum(1 for o in edgelite.Model(res.model).interpreter._get_ops_details() if o["op_name"] == "DELEGATE")
    assert parts == 1
    assert rep["batch"]["batch_polymorphic"] is True
