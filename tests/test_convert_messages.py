"""Error messages of the converter say what is wrong, where, and what fixes it (issue 12, item 9)."""
from __future__ import annotations

import numpy as np
import pytest

from edgelite.errors import ConversionError


@pytest.mark.slow
def test_not_fully_integer_is_summarised_by_op_type_with_names_and_fixes():
    import tensorflow as tf

    from edgelite_convert import convert

    w = np.random.default_rng(0).normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
        def __call__(self, x):
            return tf.sin(tf.nn.conv2d(x, w, 1, "SAME"), name="wave")

    calib = [np.random.default_rng(i).uniform(0, 1, (1, 8, 8, 3)).astype(np.float32) for i in range(12)]
    with pytest.raises(ConversionError) as e:
        convert(M(), calibration=calib, progress=False)
    msg = str(e.value)
    lines = msg.splitlines()
    assert "compute in float" in lines[0]
    assert lines[1].startswith("  - SIN x1 (") and "Fix:" in lines[1]
    assert any(x.startswith("  - QUANTIZE x") for x in lines[2:])  # boundary ops listed after the cause
    assert "FloatOp(" not in msg and len(msg) < 2000
    assert "--allow-float-fallback" in msg


class _FakeTqdm:
    totals: list = []

    def __init__(self, total=None, **kw):
        _FakeTqdm.totals.append(total)
        self.n = 0

    def update(self, k):
        self.n += k

    def close(self):
        pass


@pytest.mark.parametrize("kind", ["list", "array", "npy", "folder", "generator"])
def test_calibration_progress_total_is_the_number_of_samples_read(kind, tmp_path, monkeypatch):
    import sys
    import types
    from pathlib import Path

    from edgelite.preprocess import PreprocessSpec
    from edgelite_convert.calibration import build_calibration_set

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeTqdm))
    _FakeTqdm.totals = []
    rng = np.random.default_rng(0)
    arr = rng.uniform(0, 1, (30, 8, 8, 3)).astype(np.float32)
    spec = None
    specs = [("x", [1, 8, 8, 3], "float32")]
    want = 30
    if kind == "list":
        src = [a[None] for a in arr]
    elif kind == "array":
        src = arr
    elif kind == "npy":
        src = tmp_path / "c.npy"
        np.save(src, arr)
    elif kind == "folder":
        src = Path(__file__).resolve().parents[1] / "data" / "faces" / "orl"
        spec = PreprocessSpec(size=(8, 8), mean=0, std=255)
        want = 40  # max_samples below: 400 images in the folder
    else:
        src = (a[None] for a in arr)
        want = None
    cs = build_calibration_set(src, specs, preprocess=spec, max_samples=40, min_recommended=1)
    assert _FakeTqdm.totals == [want]
    assert cs.count == (40 if kind == "folder" else 30)
