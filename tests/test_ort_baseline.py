"""onnxruntime's static int8 quantization as a baseline in the conversion report (issue 12, item 8)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_report_has_onnxruntime_int8_baseline(tmp_path):
    from test_convert_xnnpack_rewrites import _onnx_blocks

    from edgelite_convert import ConvertOptions, convert
    from edgelite_convert.cli import format_report

    src = _onnx_blocks(tmp_path / "blocks.onnx")
    rng = np.random.default_rng(4)
    calib = [rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(40)]
    res = convert(src, calibration=calib, progress=False,
                  options=ConvertOptions(holdout=8, onnxruntime_baseline=True))
    b = res.report["onnxruntime_int8_baseline"]
    assert "skipped" not in b, b
    assert "QDQ" in b["method"] and "per-channel" in b["method"] and b["samples"] == 8
    assert 0.9 < b["cosine_min_over_outputs"] <= 1.0
    assert b["edgelite_int8_cosine_min_over_outputs"] == res.report["validation"]["cosine_min_over_outputs"]
    assert "onnxruntime static int8" in format_report(res.report, tmp_path / "m.tflite")
