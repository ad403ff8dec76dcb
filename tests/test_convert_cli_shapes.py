"""ONNX models with dynamic height/width (most PyTorch and Paddle exports) from the CLI.

``--input-shape NAME:1x3x48x192`` (repeatable) fixes any input's shape,
``--input-size H W`` fixes H/W of a single image input, a dynamic batch becomes 1,
and every refusal names the option that fixes it - before TensorFlow is loaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgelite
from edgelite.cli import main as cli_main
from edgelite.errors import ConversionError
from edgelite.preprocess import PreprocessSpec
from edgelite_convert.cli import parse_input_shapes
from edgelite_convert.convert import resolve_onnx_input_shapes

ROOT = Path(__file__).resolve().parents[1]
ORL = ROOT / "data" / "faces" / "orl"
RNG = np.random.default_rng(5)


def _dynamic_hw_model(path: Path, h="H", w="W", extra_input: bool = False) -> Path:
    """A text-recogniser-like stem: Conv(stride 2) -> Relu -> GlobalAveragePool ->
    Flatten -> Gemm, input ['N', 3, H, W] with H/W dynamic (as Paddle/PyTorch export)."""
    inits = {"w1": RNG.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
             "b1": RNG.normal(0, 0.1, (8,)).astype(np.float32),
             "wg": RNG.normal(0, 0.3, (8, 4)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wg"], ["logits"])]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, h, w])]
    if extra_input:
        ins.append(helper.make_tensor_value_info("len", TensorProto.FLOAT, ["N", "T"]))
    g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def test_parse_input_shapes():
    assert parse_input_shapes(["x:1x3x48x192", "a:b:1,10"]) == {"x": [1, 3, 48, 192], "a:b": [1, 10]}
    for bad in ["x1x3", "x:", ":1x3", "x:1xax3", "x:0x3"]:
        with pytest.raises(ConversionError, match="--input-shape"):
            parse_input_shapes([bad])
    with pytest.raises(ConversionError, match="twice"):
        parse_input_shapes(["x:1x3", "x:1x4"])


def test_dynamic_hw_refusal_names_the_options(tmp_path, monkeypatch):
    import sys

    p = _dynamic_hw_model(tmp_path / "rec.onnx")
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    with pytest.raises(ConversionError) as e:
        resolve_onnx_input_shapes(p, None, None)
    msg = str(e.value)
    assert "--input-shape x:1x3x224x224" in msg and "--input-size H W" in msg and "input_shapes=" in msg
    assert "'x' ?x3x?x?" in msg  # the model's inputs are listed with their declared shapes
    assert "tensorflow" not in sys.modules, "the refusal must come before TensorFlow is imported"


def test_resolution_rules(tmp_path):
    p = _dynamic_hw_model(tmp_path / "rec.onnx")
    spec = PreprocessSpec(size=(48, 192))
    assert resolve_onnx_input_shapes(p, None, spec) == {"x": [1, 3, 48, 192]}
    assert resolve_onnx_input_shapes(p, {"x": [2, 3, 32, 100]}, spec) == {"x": [2, 3, 32, 100]}
    with pytest.raises(ConversionError, match=r"unknown input\(s\) \['y'\].*'x' \?x3x\?x\?"):
        resolve_onnx_input_shapes(p, {"y": [1, 3, 8, 8]}, None)
    with pytest.raises(ConversionError, match="rank 4.*x:1x3x224x224"):
        resolve_onnx_input_shapes(p, {"x": [1, 3, 8]}, None)
    # only the batch is dynamic: it becomes 1
    q = _dynamic_hw_model(tmp_path / "static.onnx", h=32, w=64)
    assert resolve_onnx_input_shapes(q, None, None) == {"x": [1, 3, 32, 64]}
    with pytest.raises(ConversionError, match="--input-size 32 64.*--input-shape x:1x3x48x192"):
        resolve_onnx_input_shapes(q, None, spec)
    # a second, non-image dynamic input: --input-size cannot fix it, --input-shape can
    r = _dynamic_hw_model(tmp_path / "two.onnx", extra_input=True)
    with pytest.raises(ConversionError, match="Input 'len'.*--input-shape len:1x224") as e:
        resolve_onnx_input_shapes(r, {"x": [1, 3, 48, 192]}, spec)
    assert "--input-size" not in str(e.value)
    assert resolve_onnx_input_shapes(r, {"x": [1, 3, 48, 192], "len": [1, 5]}, None) == {
        "x": [1, 3, 48, 192], "len": [1, 5]}


def test_cli_refuses_dynamic_hw_without_shape(tmp_path, capsys):
    p = _dynamic_hw_model(tmp_path / "rec.onnx")
    np.save(tmp_path / "calib.npy", RNG.uniform(0, 1, (12, 48, 192, 3)).astype(np.float32))
    rc = cli_main(["convert", str(p), "--calibration", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "m.tflite")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--input-shape x:" in err and "--input-size H W" in err


@pytest.mark.slow
def test_cli_converts_dynamic_hw_with_input_shape_and_with_input_size(tmp_path, capsys):
    p = _dynamic_hw_model(tmp_path / "rec.onnx")
    np.save(tmp_path / "calib.npy", RNG.uniform(0, 1, (24, 48, 192, 3)).astype(np.float32))
    out = tmp_path / "a.tflite"
    rc = cli_main(["convert", str(p), "--calibration", str(tmp_path / "calib.npy"), "--input-shape", "x:1x3x48x192",
                   "--min-samples", "10", "-o", str(out), "--json"])
    assert rc == 0, capsys.readouterr().err
    m = edgelite.Model(out)
    assert m.inputs[0].shape == (1, 48, 192, 3)
    rep = json.loads(out.with_suffix(".report.json").read_text())
    assert rep["fully_integer"] is True and rep["onnx_vs_float_tflite"]["max_abs_error_overall"] < 1e-4
    # --input-size alone, calibrating from an image folder (ORL faces stretched to 48x192)
    out2 = tmp_path / "b.tflite"
    rc = cli_main(["convert", str(p), "--calibration", str(ORL), "--input-size", "48", "192", "--max-samples", "40",
                   "-o", str(out2), "--json"])
    assert rc == 0, capsys.readouterr().err
    m2 = edgelite.Model(out2)
    assert m2.inputs[0].shape == (1, 48, 192, 3)
    assert m2.metadata.preprocessing.size == (48, 192)
