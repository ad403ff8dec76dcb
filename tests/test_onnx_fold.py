"""Shape subgraphs are folded, not refused; what remains is refused before TensorFlow (issue 12, items 4 and 9).

A YOLOv8-style export computes its anchor grid from the feature map's shape with
``Shape -> Gather -> Cast -> Range -> Unsqueeze -> Expand -> Concat``: ``Range`` and
``Expand`` have no handler, yet every such node is a constant once the input size is
fixed. They are folded (with onnx's numpy reference evaluator) before the
unsupported-op check; a refusal lists only the ops that really remain, with node
names and a fix, and happens without importing TensorFlow.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgelite.errors import ConversionError
from edgelite_convert.onnx_fold import check_supported, fold_unsupported, unsupported_ops

RNG = np.random.default_rng(3)
I64 = TensorProto.INT64


def _anchor_model(extra_topk: bool = False, batch="N") -> onnx.ModelProto:
    """Conv head + anchor grid from Shape/Range/Expand (+ optionally a runtime TopK)."""
    c = lambda name, v: numpy_helper.from_array(np.asarray(v), name)  # noqa: E731
    inits = [c("w1", RNG.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)),
             c("w2", RNG.normal(0, 0.3, (2, 4, 1, 1)).astype(np.float32)),
             c("i2", np.array(2, np.int64)), c("i3", np.array(3, np.int64)),
             c("zero", np.array(0.0, np.float32)), c("one", np.array(1.0, np.float32)),
             c("half", np.array(0.5, np.float32)), c("ax0", np.array([0], np.int64)),
             c("ax1", np.array([1], np.int64))]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["f"], pads=[1, 1, 1, 1], strides=[2, 2], name="stem"),
        helper.make_node("Conv", ["f", "w2"], ["reg"], name="head"),
        helper.make_node("Shape", ["f"], ["s"], name="grid/shape"),
        helper.make_node("Gather", ["s", "i2"], ["h"], axis=0, name="grid/h"),
        helper.make_node("Gather", ["s", "i3"], ["w"], axis=0, name="grid/w"),
        helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT, name="grid/hf"),
        helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT, name="grid/wf"),
        helper.make_node("Range", ["zero", "hf", "one"], ["ry"], name="grid/range_y"),
        helper.make_node("Range", ["zero", "wf", "one"], ["rx"], name="grid/range_x"),
        helper.make_node("Add", ["ry", "half"], ["cy"], name="grid/cy"),
        helper.make_node("Add", ["rx", "half"], ["cx"], name="grid/cx"),
        helper.make_node("Unsqueeze", ["cy", "ax1"], ["cy2"], name="grid/cy2"),
        helper.make_node("Unsqueeze", ["cx", "ax0"], ["cx2"], name="grid/cx2"),
        helper.make_node("Unsqueeze", ["h", "ax0"], ["h1"], name="grid/h1"),
        helper.make_node("Unsqueeze", ["w", "ax0"], ["w1d"], name="grid/w1"),
        helper.make_node("Concat", ["h1", "w1d"], ["hw"], axis=0, name="grid/hw"),
        helper.make_node("Expand", ["cy2", "hw"], ["gy"], name="grid/expand_y"),
        helper.make_node("Expand", ["cx2", "hw"], ["gx"], name="grid/expand_x"),
        helper.make_node("Unsqueeze", ["gx", "ax0"], ["gx3"], name="grid/gx3"),
        helper.make_node("Unsqueeze", ["gy", "ax0"], ["gy3"], name="grid/gy3"),
        helper.make_node("Concat", ["gx3", "gy3"], ["g3"], axis=0, name="grid/g3"),
        helper.make_node("Unsqueeze", ["g3", "ax0"], ["grid"], name="grid/grid"),
        helper.make_node("Add", ["reg", "grid"], ["boxes"], name="decode"),
    ]
    outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, 2, 8, 8])]
    if extra_topk:
        nodes += [helper.make_node("Flatten", ["boxes"], ["flat"], name="post/flat"),
                  helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([5], np.int64)),
                                   name="post/k"),
                  helper.make_node("TopK", ["flat", "k"], ["top", "idx"], name="post/topk")]
        outs = [helper.make_tensor_value_info("top", TensorProto.FLOAT, [batch, 5])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
                          outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_anchor_grid_ops_are_folded_and_import_matches_onnxruntime():
    from edgelite_convert.onnx_import import import_onnx

    m = _anchor_model()
    assert set(unsupported_ops(m)) == {"Expand", "Range"}
    folded_model, folded = fold_unsupported(m)
    assert sorted(folded) == ["Expand 'grid/expand_x'", "Expand 'grid/expand_y'", "Range 'grid/range_x'",
                              "Range 'grid/range_y'"]
    assert unsupported_ops(folded_model) == []
    x = RNG.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    imp = import_onnx(m)
    got = imp(x.transpose(0, 2, 3, 1))["boxes"].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert any("constant-folded before import" in r and "Range 'grid/range_y'" in r for r in imp.rewrites)


def test_supported_model_is_returned_unchanged():
    m = _anchor_model()
    folded_model, _ = fold_unsupported(m)
    again, folded = fold_unsupported(folded_model)
    assert again is folded_model and folded == []


def test_refusal_lists_only_what_remains_with_node_names_and_fix():
    m = _anchor_model(extra_topk=True)
    with pytest.raises(ConversionError) as e:
        check_supported(m)
    msg = str(e.value)
    assert "TopK (1 node: 'post/topk')" in msg and "sort the raw outputs in numpy" in msg
    assert "Range (" not in msg and "Expand (" not in msg  # folded, not refused
    assert "4 node(s) that only computed constants" in msg


def test_refusal_happens_before_tensorflow_is_imported(tmp_path):
    path = tmp_path / "yolo_topk.onnx"
    onnx.save(_anchor_model(extra_topk=True), str(path))
    code = (
        "import sys, numpy as np\n"
        "from edgelite.errors import ConversionError\n"
        "from edgelite_convert import convert\n"
        f"try:\n    convert({str(path)!r}, calibration=[np.zeros((1, 16, 16, 3), np.float32)] * 12)\n"
        "except ConversionError as e:\n    print('REFUSED', str(e).splitlines()[1])\n"
        "print('TF', 'tensorflow' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "REFUSED   - TopK (1 node: 'post/topk')" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "TF False" in r.stdout
    assert "oneDNN" not in r.stderr and "tensorflow" not in r.stderr.lower()


@pytest.mark.slow
def test_convert_folds_anchor_grid_end_to_end(tmp_path):
    from edgelite_convert import convert

    path = tmp_path / "yolo.onnx"
    onnx.save(_anchor_model(), str(path))
    calib = [RNG.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(20)]
    res = convert(path, calibration=calib, progress=False)
    assert len(res.report["onnx_folded"]) == 4
    assert res.report["fully_integer"] is True
    assert res.report["onnx_vs_float_tflite"]["max_abs_error_overall"] < 1e-4


def test_docs_supported_op_list_is_generated_from_the_registry():
    from edgelite_convert.onnx_ops import SUPPORTED_OPS
    from edgelite_convert.opdocs import DOC, supported_ops_markdown

    assert supported_ops_markdown() in DOC.read_text(), \
        "docs/converters.md is out of date: run python -m edgelite_convert.opdocs"
    assert f"**{len(SUPPORTED_OPS)} ONNX op types**" in DOC.read_text()
