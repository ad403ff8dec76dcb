"""Converter sources, modes, I/O types, calibration formats, debugger and selective
quantization, on a small tf.Module built here (real conversions, run by the runtime)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgelite
from edgelite.inspect import inspect_model

tf = pytest.importorskip("tensorflow")


def _module():
    rng = np.random.default_rng(0)
    w1 = tf.constant(rng.normal(0, 0.4, (3, 3, 3, 8)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.4, (8, 6)).astype(np.float32))

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 24, 24, 3], tf.float32, name="x")])
        def __call__(self, x):
            y = tf.nn.relu(tf.nn.conv2d(x, w1, 2, "SAME"))
            y = tf.reduce_mean(y, axis=[1, 2])
            return {"logits": tf.matmul(y, w2)}
    return Net()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("sm") / "net"
    m = _module()
    tf.saved_model.save(m, str(d), signatures={"serving_default": m.__call__.get_concrete_function()})
    return d


@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(1).uniform(0, 1, (60, 24, 24, 3)).astype(np.float32)


def _ref(saved_model, x):
    f = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    return f(x=tf.constant(x))["logits"].numpy()


@pytest.mark.slow
@pytest.mark.parametrize("mode,io,fully_int", [
    ("int8", "uint8", True), ("int8", "float32", True), ("int16x8", "float32", True),
    ("dynamic", "float32", False), ("float16", "float32", False), ("float32", "float32", False)])
def test_modes_and_io_types_from_saved_model(saved_model, calib, tmp_path, mode, io, fully_int):
    from edgelite_convert import ConvertOptions, convert

    opts = ConvertOptions(mode=mode, input_type=io, output_type=io, holdout=10,
                          allow_float_fallback=mode != "int8", recommended_calibration_samples=10)
    npz = tmp_path / "calib.npz"
    np.savez(npz, x=calib)     # .npz keyed by input name
    res = convert(saved_model, tmp_path / "m.tflite", calibration=npz if opts.needs_calibration else None,
                  options=opts, progress=False)
    m = edgelite.Model(res.path)
    assert m.metadata.quantization["mode"] == mode
    if mode == "int8":
        assert m.inputs[0].dtype == np.dtype(io) and res.fully_integer
    assert inspect_model(res.path).fully_integer is fully_int
    x = calib[:1]
    ref = _ref(saved_model, x)
    tol = {"int8": 0.05, "int16x8": 0.01, "dynamic": 0.05, "float16": 0.01, "float32": 1e-5}[mode]
    assert np.abs(m(x) - ref).max() <= tol * max(1.0, np.abs(ref).max())
    if mode == "float16":   # float16 weights, dequantized to float32 at load
        info = edgelite.read_model_info(res.path)
        assert "DEQUANTIZE" in info.op_histogram()
        assert any(t.dtype == "float16" for t in info.subgraphs[0].tensors)


def test_live_tf_function_and_iterable_calibration(calib, tmp_path):
    from edgelite_convert import ConvertOptions, convert

    net = _module()
    res = convert(net.__call__, tmp_path / "f.tflite", calibration=(c[None] for c in calib),
                  options=ConvertOptions(holdout=8, recommended_calibration_samples=10), progress=False)
    assert res.fully_integer
    v = res.report["validation"]["outputs"]
    (o,) = v.values()
    assert o["cosine_global"] > 0.99
    m = edgelite.Model(res.path)
    ref = net(tf.constant(calib[:1]))["logits"].numpy()
    assert np.abs(m(calib[:1]) - ref).max() < 0.05 * max(1.0, np.abs(ref).max())


@pytest.mark.slow
def test_layer_debugger_and_keep_float(saved_model, calib, tmp_path):
    from edgelite_convert import ConvertOptions, convert

    res = convert(saved_model, tmp_path / "d.tflite", calibration=calib, progress=False,
                  options=ConvertOptions(debug_layers=True, holdout=8, recommended_calibration_samples=10))
    stats = res.report["layer_stats"]
    assert stats and all({"tensor", "rmse", "scale"} <= set(s) for s in stats)
    worst = stats[0]["tensor"]
    res2 = convert(saved_model, tmp_path / "k.tflite", calibration=calib, progress=False,
                   options=ConvertOptions(keep_float=(worst,), holdout=8, recommended_calibration_samples=10,
                                          allow_float_fallback=True))
    assert res2.report["keep_float"] == [worst]
    cost = res2.report["keep_float_cost"]
    assert cost["full_int8_p50_ms"] > 0 and cost["with_float_layers_p50_ms"] > 0
    assert not inspect_model(res2.path).fully_integer      # the kept layer computes in float
    report = json.loads((tmp_path / "k.report.json").read_text())
    assert report["fully_integer"] is False


def test_unsupported_onnx_ops_listed(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from edgelite_convert import convert

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Erf", ["a"], ["b"]),
             helper.make_node("NonMaxSuppression", ["b", "b"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    p = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), p)
    with pytest.raises(edgelite.ConversionError, match="(?s)Erf.*NonMaxSuppression|NonMaxSuppression.*Erf"):
        convert(p, calibration=np.zeros((20, 1, 4), np.float32), progress=False)


def test_bad_sources(tmp_path):
    from edgelite_convert import convert
    with pytest.raises(edgelite.ModelNotFoundError):
        convert(tmp_path / "nope.keras")
    (tmp_path / "x.pt").write_bytes(b"torch")
    with pytest.raises(edgelite.ConversionError, match="unknown source format"):
        convert(tmp_path / "x.pt")
    with pytest.raises(edgelite.ConversionError, match="saved_model.pb"):
        convert(tmp_path)
