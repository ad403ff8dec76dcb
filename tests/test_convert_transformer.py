"""LayerNorm, attention and Pow convert fully integer (issue 12, item 3).

Keras' LayerNormalization leaves a float NEG (``-mean``); the int8 pass turns the
DEQUANTIZE -> NEG -> QUANTIZE island into one int8 MUL by -1. From ONNX, the
LayerNormalization op (opset 17) and the decomposed form PyTorch exports before it
(ReduceMean, Sub, Pow(x, 2), Sqrt, Div) become MEAN/SUB/MUL/RSQRT. Accuracy is
measured against the float model on held-out samples.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(17)
T, D = 8, 16


def _keras_ln_mha():
    import keras

    keras.utils.set_random_seed(2)
    x = keras.Input((T, D), batch_size=1)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    a = keras.layers.LayerNormalization()(a + x)
    f = keras.layers.Dense(32, activation="relu")(a)
    f = keras.layers.LayerNormalization()(keras.layers.Dense(D)(f) + a)
    return keras.Model(x, keras.layers.Dense(4)(f))


@pytest.mark.slow
def test_keras_layernorm_and_mha_are_fully_int8():
    from edgelite_convert import ConvertOptions, convert

    calib = [RNG.normal(0, 1, (1, T, D)).astype(np.float32) for _ in range(60)]
    res = convert(_keras_ln_mha(), calibration=calib, progress=False, options=ConvertOptions(holdout=12))
    assert res.report["fully_integer"] is True, res.report["float_ops"]
    assert "NEG" not in res.report["op_histogram"]
    assert any("NEG" in r and "MUL by -1" in r for r in res.report["rewrites"])
    assert res.report["validation"]["cosine_min_over_outputs"] >= 0.99


def _c(name, v):
    return numpy_helper.from_array(np.asarray(v), name)


def _onnx_block(decomposed: bool, opset: int):
    """Single-head attention + LayerNorm, as exported from PyTorch."""
    inits = [_c("wq", RNG.normal(0, 0.3, (D, D)).astype(np.float32)),
             _c("wk", RNG.normal(0, 0.3, (D, D)).astype(np.float32)),
             _c("wv", RNG.normal(0, 0.3, (D, D)).astype(np.float32)),
             _c("wo", RNG.normal(0, 0.3, (D, 4)).astype(np.float32)),
             _c("scale", RNG.uniform(0.5, 1.5, (D,)).astype(np.float32)),
             _c("bias", RNG.normal(0, 0.1, (D,)).astype(np.float32)),
             _c("inv_sqrt_d", np.array(0.25, np.float32)), _c("two", np.array(2.0, np.float32)),
             _c("eps", np.array(1e-5, np.float32))]
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s0"]), helper.make_node("Mul", ["s0", "inv_sqrt_d"], ["s"]),
             helper.make_node("Softmax", ["s"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"]),
             helper.make_node("Add", ["o", "x"], ["r"])]
    if decomposed:
        nodes += [helper.make_node("ReduceMean", ["r"], ["mu"], axes=[-1]),
                  helper.make_node("Sub", ["r", "mu"], ["d"]), helper.make_node("Pow", ["d", "two"], ["d2"]),
                  helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
                  helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"]),
                  helper.make_node("Div", ["d", "sd"], ["n"]), helper.make_node("Mul", ["n", "scale"], ["ns"]),
                  helper.make_node("Add", ["ns", "bias"], ["ln"])]
    else:
        nodes += [helper.make_node("LayerNormalization", ["r", "scale", "bias"], ["ln"], axis=-1, epsilon=1e-5)]
    nodes += [helper.make_node("MatMul", ["ln", "wo"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, D])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, T, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("decomposed,opset", [(False, 17), (True, 13)])
def test_onnx_layernorm_attention_matches_onnxruntime(decomposed, opset):
    from edgelite_convert.onnx_import import import_onnx

    m = _onnx_block(decomposed, opset)
    x = RNG.normal(0, 1, (1, T, D)).astype(np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    imp = import_onnx(m)
    np.testing.assert_allclose(imp(x)["y"].numpy(), ref, atol=1e-4, rtol=1e-4)
    if decomposed:
        assert any("x ** 2 -> x*x" in r for r in imp.rewrites)
        assert any("rsqrt" in r for r in imp.rewrites)


@pytest.mark.slow
@pytest.mark.parametrize("decomposed,opset", [(False, 17), (True, 13)])
def test_onnx_layernorm_attention_fully_int8(tmp_path, decomposed, opset):
    from edgelite_convert import ConvertOptions, convert

    path = tmp_path / "block.onnx"
    onnx.save(_onnx_block(decomposed, opset), str(path))
    calib = [RNG.normal(0, 1, (1, T, D)).astype(np.float32) for _ in range(60)]
    res = convert(path, calibration=calib, progress=False, options=ConvertOptions(holdout=12))
    assert res.report["fully_integer"] is True, res.report["float_ops"]
    assert not {"POW", "DIV", "SQRT", "NEG"} & set(res.report["op_histogram"])
    assert res.report["validation"]["cosine_min_over_outputs"] >= 0.99
