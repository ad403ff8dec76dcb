"""Tests of the ONNX -> TF importer (edgelite_convert.onnx_import).

Each op test builds a tiny ONNX graph with ``onnx.helper``, runs it with
onnxruntime and with the imported TF function (inputs transposed to NHWC), and
compares every output. The zoo models (YuNet, SFace) are checked end to end, as a
TF function and as a float TFLite model; a PReLU model is checked as int8 TFLite.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper

from edgelite.errors import ConversionError
from edgelite_convert.onnx_import import SUPPORTED_OPS, import_onnx, unsupported_ops

RNG = np.random.default_rng(1234)
F = TensorProto.FLOAT


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------
def make_model(nodes, inputs, outputs, inits=None, opset=13):
    """Build an ONNX model; ``inputs``/``outputs`` are ``(name, shape)`` pairs, ``inits`` a name->array dict."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, F, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 9
    # Outputs given without a shape get one from shape inference.
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def run_ort(model, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def to_tf_input(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def check(model, feeds, tol=1e-4, **kw):
    """Compare import_onnx(model) with onnxruntime; return the imported module.

    With ``nhwc_outputs=True`` 4-D outputs come back NHWC (no output transpose,
    so ``transposes_inserted`` counts only the graph's own) and are compared
    after transposing them here.
    """
    ref = run_ort(model, feeds)
    imported = import_onnx(model, **kw)
    got = imported(*[to_tf_input(feeds[n]) for n in imported.input_names])
    assert list(got) == [o.name for o in model.graph.output]
    for name, r in ref.items():
        g = got[name].numpy()
        if kw.get("nhwc_outputs") and g.ndim == 4:
            g = g.transpose(0, 3, 1, 2)
        assert g.shape == r.shape, (name, g.shape, r.shape)
        err = float(np.abs(g - r).max()) if r.size else 0.0
        assert err <= tol * max(1.0, float(np.abs(r).max())), (name, err)
    return imported


def rand(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def single(op, x_shape, out_shape, inits=None, opset=13, extra_inputs=(), **attrs):
    """A one-node model ``op(x, *inits)``."""
    inits = inits or {}
    names = ["x", *[n for n, _ in extra_inputs], *inits]
    node = helper.make_node(op, names, ["y"], **attrs)
    return make_model([node], [("x", x_shape), *extra_inputs], [("y", out_shape)], inits, opset)


def tflite_ops(content: bytes) -> collections.Counter:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    return collections.Counter(o["op_name"] for o in it._get_ops_details())


def tflite_outputs_by_name(content: bytes, imported, inputs):
    """Run a TFLite model converted from ``imported`` and key outputs by ONNX name."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=2)
    runner = it.get_signature_runner()
    kwargs = {spec.name: x for spec, x in zip(imported.tf_input_specs, inputs)}
    return runner(**kwargs)


def convert_float(imported) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions([imported.concrete_function()], imported)
    return conv.convert()


# ----------------------------------------------------------------------------
# Conv family
# ----------------------------------------------------------------------------
CONV_CASES = [
    # (cin, cout, group, k, attrs, H, W)
    (3, 8, 1, 3, dict(pads=[1, 1, 1, 1]), 9, 9),
    (3, 8, 1, 3, dict(pads=[1, 1, 1, 1], strides=[2, 2]), 10, 10),  # YuNet stem: not 'SAME'
    (3, 8, 1, 3, dict(pads=[1, 1, 1, 1], strides=[2, 2]), 9, 11),
    (4, 6, 1, 3, dict(pads=[0, 1, 1, 0]), 8, 7),  # asymmetric
    (4, 6, 1, 3, dict(auto_pad="SAME_UPPER", strides=[2, 2]), 8, 7),
    (4, 6, 1, 3, dict(auto_pad="SAME_LOWER", strides=[2, 2]), 8, 7),
    (4, 6, 1, 3, dict(auto_pad="VALID"), 8, 7),
    (4, 6, 1, 3, dict(pads=[2, 2, 2, 2], dilations=[2, 2]), 9, 9),
    (4, 6, 1, 1, dict(strides=[2, 1]), 9, 9),
    (4, 6, 1, (3, 1), dict(pads=[1, 0, 1, 0]), 6, 5),
    (8, 8, 8, 3, dict(pads=[1, 1, 1, 1]), 8, 8),  # depthwise
    (8, 8, 8, 3, dict(pads=[1, 1, 1, 1], strides=[2, 2]), 8, 8),
    (4, 8, 4, 3, dict(pads=[1, 1, 1, 1]), 7, 7),  # depthwise, multiplier 2
    (8, 6, 2, 3, dict(pads=[1, 1, 1, 1]), 6, 6),  # grouped
    (8, 8, 8, 3, dict(pads=[1, 1, 1, 1], strides=[2, 1]), 8, 8),  # depthwise, unequal strides
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cin,cout,group,k,attrs,h,w", CONV_CASES)
def test_conv(cin, cout, group, k, attrs, h, w, bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    inits = {"w": rand(cout, cin // group, kh, kw)}
    if bias:
        inits["b"] = rand(cout)
    node = helper.make_node("Conv", ["x", *inits], ["y"], group=group, kernel_shape=[kh, kw], **attrs)
    m = make_model([node], [("x", [1, cin, h, w])], [("y", None)], inits)
    imported = check(m, {"x": rand(1, cin, h, w)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0


@pytest.mark.parametrize("attrs,group,h", [
    (dict(strides=[2, 2]), 1, 4),
    (dict(strides=[2, 2], pads=[1, 1, 1, 1]), 1, 5),
    (dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), 1, 4),
    (dict(strides=[2, 2], auto_pad="SAME_UPPER"), 1, 4),
    (dict(strides=[2, 2], output_shape=[9, 9]), 1, 4),
    (dict(strides=[1, 1], pads=[0, 1, 0, 1]), 1, 4),
    (dict(strides=[2, 2], pads=[1, 1, 1, 1]), 2, 4),
])
def test_conv_transpose(attrs, group, h):
    cin, cout_g = 4, 3
    inits = {"w": rand(cin, cout_g, 3, 3), "b": rand(cout_g * group)}
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], group=group, **attrs)
    m = (make_model([node], [("x", [1, cin, h, h])], [("y", None)], inits))
    check(m, {"x": rand(1, cin, h, h)})


def _bn_inits(c, prefix="bn"):
    return {f"{prefix}_s": rand(c, lo=0.5, hi=1.5), f"{prefix}_b": rand(c), f"{prefix}_m": rand(c),
            f"{prefix}_v": rand(c, lo=0.5, hi=2.0)}


def test_batchnorm_folded_into_conv():
    inits = {"w": rand(6, 3, 3, 3), **_bn_inits(6)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"],
                              epsilon=1e-3, name="bn")]
    m = make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 6, 8, 8])], inits)
    imported = check(m, {"x": rand(1, 3, 8, 8)})
    assert "BatchNormalization 'bn' folded into Conv 'conv'" in imported.rewrites


def test_batchnorm_not_folded_when_conv_output_is_shared():
    inits = {"w": rand(6, 3, 1, 1), **_bn_inits(6)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"]),
             helper.make_node("Add", ["bn", "c"], ["y"])]
    m = make_model(nodes, [("x", [1, 3, 5, 5])], [("y", [1, 6, 5, 5])], inits)
    imported = check(m, {"x": rand(1, 3, 5, 5)})
    assert not any("folded" in r for r in imported.rewrites)


def test_batchnorm_folded_forward_into_gemm_through_flatten():
    inits = {"w0": rand(3, 3, 1, 1), "sl": rand(3, 1, 1, lo=-0.5, hi=0.5), **_bn_inits(3, "a"),
             "w": rand(4, 3 * 4 * 4), "c": rand(4)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"]),
             helper.make_node("PRelu", ["c0", "sl"], ["p"]),
             helper.make_node("BatchNormalization", ["p", "a_s", "a_b", "a_m", "a_v"], ["b"], name="bn1"),
             helper.make_node("Dropout", ["b"], ["d"]),
             helper.make_node("Flatten", ["d"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "c"], ["y"], transB=1, beta=0.5, name="fc")]
    m = make_model(nodes, [("x", [1, 3, 4, 4])], [("y", [1, 4])], inits)
    imported = check(m, {"x": rand(1, 3, 4, 4)})
    assert "BatchNormalization 'bn1' folded into the following Gemm 'fc'" in imported.rewrites
    assert imported.transposes_inserted == 0


def test_batchnorm_explicit():
    nodes = [helper.make_node("BatchNormalization", ["x", "a_s", "a_b", "a_m", "a_v"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    m = make_model(nodes, [("x", [1, 3, 4, 5])], [("y", [1, 3, 4, 5])], _bn_inits(3, "a"))
    imported = check(m, {"x": rand(1, 3, 4, 5)}, nhwc_outputs=True)
    assert not any("folded" in r for r in imported.rewrites)
    assert imported.transposes_inserted == 0


def test_batchnorm_folded_after_gemm():
    inits = {"w": rand(6, 5), "c": rand(5), **_bn_inits(5, "z")}
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["g"], alpha=0.5, beta=2.0, name="fc"),
             helper.make_node("BatchNormalization", ["g", "z_s", "z_b", "z_m", "z_v"], ["y"], name="bnz")]
    m = make_model(nodes, [("x", [2, 6])], [("y", [2, 5])], inits)
    imported = check(m, {"x": rand(2, 6)})
    assert "BatchNormalization 'bnz' folded into Gemm 'fc'" in imported.rewrites


# ----------------------------------------------------------------------------
# Activations and elementwise ops
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("op,attrs,opset", [
    ("Relu", {}, 13), ("Sigmoid", {}, 13), ("Tanh", {}, 13),
    ("LeakyRelu", {}, 13), ("LeakyRelu", dict(alpha=0.3), 13),
    ("HardSigmoid", {}, 13), ("HardSigmoid", dict(alpha=0.3, beta=0.4), 13),
    ("HardSwish", {}, 14), ("Elu", {}, 13), ("Elu", dict(alpha=0.5), 13),
    ("Clip", dict(min=-0.5, max=0.7), 7), ("Clip", dict(min=0.0, max=6.0), 7),
    ("Identity", {}, 13), ("Dropout", {}, 13), ("Dropout", dict(ratio=0.4), 11),
    ("Neg", {}, 13), ("Abs", {}, 13), ("Exp", {}, 13), ("Softplus", {}, 13),
])
def test_unary(op, attrs, opset):
    m = single(op, [1, 3, 4, 5], [1, 3, 4, 5], opset=opset, **attrs)
    imported = check(m, {"x": rand(1, 3, 4, 5, lo=-8, hi=8)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.7), (0.0, 6.0), (None, 0.5), (0.0, None)])
def test_clip_opset11_inputs(lo, hi):
    inits = {}
    names = ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""]
    if lo is not None:
        inits["lo"] = np.array(lo, np.float32)
    if hi is not None:
        inits["hi"] = np.array(hi, np.float32)
    while names and not names[-1]:
        names.pop()
    m = make_model([helper.make_node("Clip", names, ["y"])], [("x", [1, 2, 3, 3])], [("y", [1, 2, 3, 3])],
                   inits, opset=11)
    check(m, {"x": rand(1, 2, 3, 3, lo=-8, hi=8)})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("c_shape", [[4, 1, 1], [1, 4, 1, 1], [1], [], [6], [5, 6], [1, 4, 5, 6], [4, 5, 1]])
def test_binary_with_nchw_constants(op, c_shape):
    c = rand(*c_shape, lo=0.5, hi=2.0)
    m = single(op, [1, 4, 5, 6], [1, 4, 5, 6], inits={"c": c})
    imported = check(m, {"x": rand(1, 4, 5, 6)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0


@pytest.mark.parametrize("op", ["Add", "Mul", "Max", "Min", "Sum"])
@pytest.mark.parametrize("b_shape", [[1, 4, 5, 6], [1, 4, 1, 1], [1, 1, 5, 6]])
def test_binary_two_runtime_inputs(op, b_shape):
    m = single(op, [1, 4, 5, 6], [1, 4, 5, 6], extra_inputs=[("b", b_shape)])
    imported = check(m, {"x": rand(1, 4, 5, 6), "b": rand(*b_shape)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0


def test_constant_first_operand_and_const_on_lower_rank():
    nodes = [helper.make_node("Sub", ["c", "x"], ["s"]), helper.make_node("Div", ["c", "s"], ["y"])]
    m = make_model(nodes, [("x", [1, 3, 4, 4])], [("y", [1, 3, 4, 4])], {"c": rand(3, 1, 1, lo=2, hi=3)})
    check(m, {"x": rand(1, 3, 4, 4)})


# ----------------------------------------------------------------------------
# PRelu
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("rewrite", [True, False])
@pytest.mark.parametrize("slope", [
    np.array([-0.5, 0.1, 0.25, 0.9], np.float32).reshape(4, 1, 1),
    np.array([-0.5, 0.1, 0.25, 1.3], np.float32).reshape(1, 4, 1, 1),  # one α > 1
    np.array([0.2], np.float32),  # scalar -> LEAKY_RELU
    np.array([1.7], np.float32),
    np.linspace(-0.3, 0.6, 6).astype(np.float32),  # broadcasts along W, not C
])
def test_prelu(slope, rewrite):
    m = single("PRelu", [1, 4, 5, 6], [1, 4, 5, 6], inits={"slope": slope})
    imported = check(m, {"x": rand(1, 4, 5, 6, lo=-4, hi=4)}, prelu_rewrite=rewrite)
    if rewrite and slope.max() > 1 and slope.size > 1:
        assert any("α>1" in r for r in imported.rewrites)


def test_prelu_runtime_slope():
    m = single("PRelu", [1, 4, 5, 6], [1, 4, 5, 6], extra_inputs=[("s", [1, 4, 1, 1])])
    check(m, {"x": rand(1, 4, 5, 6), "s": rand(1, 4, 1, 1)})


def _int8_errors(m, imported, calib, tests):
    """Convert to full-int8 TFLite; return (op counts, [(cosine, max err in output steps)])."""
    from ai_edge_litert.interpreter import Interpreter

    conv = tf.lite.TFLiteConverter.from_concrete_functions([imported.concrete_function()], imported)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x.transpose(0, 2, 3, 1)] for x in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    content = conv.convert()
    it = Interpreter(model_content=content, num_threads=2)
    it.allocate_tensors()
    out_d = it.get_output_details()[0]
    # The float output is dequantized from an int8 tensor: measure errors in its steps.
    deq = next(o for o in it._get_ops_details() if o["op_name"] == "DEQUANTIZE" and out_d["index"] in o["outputs"])
    step = float(it._get_tensor_details(deq["inputs"][0], 0)["quantization_parameters"]["scales"][0])
    errors = []
    for x in tests:
        ref = run_ort(m, {"x": x})["y"]
        it.set_tensor(it.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1))
        it.invoke()
        got = it.get_tensor(out_d["index"]).transpose(0, 3, 1, 2)
        cos = float(np.dot(got.ravel(), ref.ravel()) / np.linalg.norm(got) / np.linalg.norm(ref))
        errors.append((cos, float(np.abs(got - ref).max()) / step))
    return tflite_ops(content), errors


def test_prelu_int8_tflite_has_no_prelu_and_matches_onnxruntime():
    """Per-channel PReLU with negative α (and one layer with α > 1), full int8."""
    c = 16
    rng = np.random.default_rng(0)

    def u(*shape, s=1.0):
        return rng.uniform(-s, s, shape).astype(np.float32)

    inits = {"w1": u(c, 3, 3, 3, s=0.5), "b1": u(c, s=0.1),
             "a1": np.linspace(-0.6, 0.9, c).astype(np.float32).reshape(c, 1, 1),
             "w2": u(c, c, 1, 1, s=0.3), "b2": u(c, s=0.1),
             "a2": np.linspace(-0.3, 1.2, c).astype(np.float32).reshape(1, c, 1, 1),
             "w3": u(8, c, 3, 3, s=0.2), "b3": u(8)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["c1", "a1"], ["p1"]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"]),
             helper.make_node("PRelu", ["c2", "a2"], ["p2"]),
             helper.make_node("Conv", ["p2", "w3", "b3"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    m = make_model(nodes, [("x", [1, 3, 16, 16])], [("y", [1, 8, 8, 8])], inits)
    calib = [u(1, 3, 16, 16) for _ in range(32)]
    tests = [u(1, 3, 16, 16) for _ in range(4)]

    imported = import_onnx(m, nhwc_outputs=True)
    assert sum(r.startswith("PRelu") for r in imported.rewrites) == 2
    ops, errors = _int8_errors(m, imported, calib, tests)
    assert "PRELU" not in ops and "TRANSPOSE" not in ops, ops
    for cos, steps in errors:
        assert cos >= 0.99 and steps <= 5, (cos, steps)

    # The rewrite costs no accuracy against TFLite's own int8 PRELU.
    naive_ops, naive_errors = _int8_errors(m, import_onnx(m, nhwc_outputs=True, prelu_rewrite=False), calib, tests)
    assert naive_ops["PRELU"] == 2, naive_ops
    for (cos, steps), (ncos, nsteps) in zip(errors, naive_errors):
        assert cos >= ncos - 2e-3 and steps <= nsteps + 2, (cos, steps, ncos, nsteps)


def test_prelu_constant_tiled_along_width_gives_bit_identical_int8(monkeypatch):
    """The rewrite's per-channel MUL constant is stored [1,1,W,C] (one XNNPACK broadcast
    call per row instead of per pixel): same values, so the int8 model computes exactly
    what the [1,1,1,C] form did."""
    from ai_edge_litert.interpreter import Interpreter

    from edgelite_convert import onnx_ops, prelu

    c, hw = 8, 64  # 64x64 = 4096 pixels >= prelu.MIN_PIXELS
    rng = np.random.default_rng(1)
    inits = {"w1": rng.uniform(-0.5, 0.5, (c, 3, 3, 3)).astype(np.float32), "b1": np.zeros(c, np.float32),
             "a1": np.linspace(-0.6, 0.9, c).astype(np.float32).reshape(c, 1, 1),
             "w2": rng.uniform(-0.3, 0.3, (c, c, 1, 1)).astype(np.float32), "b2": np.zeros(c, np.float32),
             "a2": np.linspace(-0.3, 1.2, c).astype(np.float32).reshape(1, c, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["c1", "a1"], ["p1"]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"]),
             helper.make_node("PRelu", ["c2", "a2"], ["y"])]
    m = make_model(nodes, [("x", [1, 3, hw, hw])], [("y", [1, c, hw, hw])], inits)
    calib = [rng.uniform(-1, 1, (1, hw, hw, 3)).astype(np.float32) for _ in range(16)]
    tests = [rng.uniform(-1, 1, (1, hw, hw, 3)).astype(np.float32) for _ in range(4)]

    def int8(imported):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([imported.concrete_function()], imported)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        content = conv.convert()
        it = Interpreter(model_content=content)
        it.allocate_tensors()
        shapes = [tuple(it._get_tensor_details(i, 0)["shape"]) for op in it._get_ops_details()
                  if op["op_name"] == "MUL" for i in op["inputs"]]
        outs = []
        for x in tests:
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
        return shapes, outs

    tiled = import_onnx(m, nhwc_outputs=True)
    assert sum("[1,1,W,C]" in r for r in tiled.rewrites) == 2, tiled.rewrites
    shapes, outs = int8(tiled)
    assert (1, 1, hw, c) in shapes and (1, 1, 1, c) not in shapes, shapes

    monkeypatch.setattr(onnx_ops, "prelu_identity",
                        lambda *a, **k: prelu.prelu_identity(*a, **k, tile=False))
    untiled = import_onnx(m, nhwc_outputs=True)
    assert not any("[1,1,W,C]" in r for r in untiled.rewrites)
    shapes0, outs0 = int8(untiled)
    assert (1, 1, 1, c) in shapes0 and (1, 1, hw, c) not in shapes0, shapes0
    for a, b in zip(outs, outs0):
        assert np.array_equal(a, b)
    assert max(np.abs(o).max() for o in outs) > 0


def test_prelu_per_channel_constant_tiling_rules():
    from edgelite_convert.prelu import MAX_TILED, per_channel_constant

    x = np.zeros((1, 64, 80, 8), np.float32)  # 5120 pixels >= MIN_PIXELS
    k, tiled = per_channel_constant(np.arange(8, dtype=np.float32).reshape(1, 1, 1, 8), x)
    assert tiled and k.shape == (1, 1, 80, 8) and np.array_equal(k[0, 0, 3], np.arange(8))
    k, tiled = per_channel_constant(np.arange(8, dtype=np.float32).reshape(1, 8), x)  # Keras (1, C) slope
    assert tiled and k.shape == (80, 8)
    for c in (np.ones((1, 1, 80, 1), np.float32),   # varies along W, not C: left alone
              np.ones((1, 64, 1, 8), np.float32),   # varies along H
              np.float32(2.0)):
        k, tiled = per_channel_constant(c, x)
        assert k is c and not tiled
    assert not per_channel_constant(np.ones((1, 1, 1, 8), np.float32), x, tile=False)[1]

    class Dyn:  # a symbolic tensor with a dynamic width
        shape = (None, None, None, 8)
    assert not per_channel_constant(np.ones((1, 1, 1, 8), np.float32), Dyn())[1]
    wide = np.zeros((1, 1, MAX_TILED // 8 + 1, 8), np.float32)
    assert not per_channel_constant(np.ones((1, 1, 1, 8), np.float32), wide)[1]
    small = np.zeros((1, 56, 56, 8), np.float32)  # 3136 pixels < MIN_PIXELS: the gain is not worth the bytes
    assert not per_channel_constant(np.ones((1, 1, 1, 8), np.float32), small)[1]


# ----------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------
POOL_CASES = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0]),
    dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
]


@pytest.mark.parametrize("attrs", POOL_CASES)
@pytest.mark.parametrize("hw", [(7, 7), (8, 9)])
def test_maxpool(attrs, hw):
    m = (single("MaxPool", [1, 3, *hw], None, opset=12, **attrs))
    check(m, {"x": rand(1, 3, *hw, lo=-5, hi=-1)})  # all negative: zero padding would be wrong


# onnxruntime rejects count_include_pad=1 together with auto_pad SAME_*.
AVG_CASES = [(a, inc) for a in POOL_CASES for inc in (0, 1) if not (inc and a.get("auto_pad"))]


@pytest.mark.parametrize("attrs,include", AVG_CASES)
def test_avgpool(attrs, include):
    m = (
        single("AveragePool", [1, 3, 8, 9], None, opset=11, count_include_pad=include, **attrs))
    check(m, {"x": rand(1, 3, 8, 9)})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    imported = check(single(op, [1, 5, 4, 3], [1, 5, 1, 1]), {"x": rand(1, 5, 4, 3)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0


# ----------------------------------------------------------------------------
# Resize / Upsample
# ----------------------------------------------------------------------------
RESIZE_CASES = [
    # mode, coordinate_transformation_mode, nearest_mode, scales or sizes
    ("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),  # YuNet
    ("nearest", "asymmetric", "round_prefer_floor", [1, 1, 2, 2], None),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 2, 2], None),
    ("nearest", "half_pixel", "round_prefer_ceil", [1, 1, 3, 3], None),
    ("nearest", "align_corners", "round_prefer_floor", None, [1, 3, 9, 11]),
    ("nearest", "asymmetric", "floor", [1, 1, 1.5, 1.5], None),
    ("nearest", "pytorch_half_pixel", "floor", None, [1, 3, 7, 13]),
    ("nearest", "tf_half_pixel_for_nn", "floor", [1, 1, 2, 2], None),
    ("nearest", "asymmetric", "floor", [1, 1, 0.5, 0.5], None),
    ("linear", "half_pixel", "round_prefer_floor", [1, 1, 2, 2], None),
    ("linear", "align_corners", "round_prefer_floor", [1, 1, 2, 2], None),
    ("linear", "asymmetric", "round_prefer_floor", [1, 1, 2, 3], None),
    ("linear", "pytorch_half_pixel", "round_prefer_floor", None, [1, 3, 12, 7]),
    ("linear", "half_pixel", "round_prefer_floor", [1, 1, 1.7, 1.3], None),
    ("linear", "half_pixel", "round_prefer_floor", [1, 1, 0.5, 0.5], None),
]


@pytest.mark.parametrize("mode,coord,nearest,scales,sizes", RESIZE_CASES)
def test_resize(mode, coord, nearest, scales, sizes):
    inits = {"roi": np.zeros(0, np.float32), "scales": np.asarray(scales or [], np.float32)}
    names = ["x", "roi", "scales"]
    if sizes is not None:
        inits["sizes"] = np.asarray(sizes, np.int64)
        names.append("sizes")
    node = helper.make_node("Resize", names, ["y"], mode=mode, coordinate_transformation_mode=coord,
                            nearest_mode=nearest)
    m = (make_model([node], [("x", [1, 3, 6, 5])], [("y", None)], inits, 11))
    check(m, {"x": rand(1, 3, 6, 5)})


def test_resize_opset13_empty_roi_and_opset10():
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    m = make_model([node], [("x", [1, 2, 3, 4])], [("y", [1, 2, 6, 8])],
                   {"scales": np.array([1, 1, 2, 2], np.float32)}, 13)
    check(m, {"x": rand(1, 2, 3, 4)})
    node = helper.make_node("Resize", ["x", "scales"], ["y"], mode="linear")
    m = make_model([node], [("x", [1, 2, 3, 4])], [("y", [1, 2, 6, 8])],
                   {"scales": np.array([1, 1, 2, 2], np.float32)}, 10)
    check(m, {"x": rand(1, 2, 3, 4)})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample(mode):
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], mode=mode)
    m = make_model([node], [("x", [1, 2, 3, 4])], [("y", [1, 2, 6, 8])],
                   {"scales": np.array([1, 1, 2, 2], np.float32)}, 9)
    check(m, {"x": rand(1, 2, 3, 4)})
    node = helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=[1.0, 1.0, 2.0, 3.0])
    m = make_model([node], [("x", [1, 2, 3, 4])], [("y", [1, 2, 6, 12])], opset=7)
    check(m, {"x": rand(1, 2, 3, 4)})


# ----------------------------------------------------------------------------
# Layout-sensitive shape ops
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [1, -3, 2, 3, 0])
def test_concat(axis):
    shapes = {"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]}
    out = [1, 2, 3, 4]
    out[axis] *= 3
    node = helper.make_node("Concat", ["x", "b", "c"], ["y"], axis=axis)
    m = make_model([node], [("x", shapes["a"]), ("b", shapes["b"])], [("y", out)], {"c": rand(1, 2, 3, 4)})
    imported = check(m, {"x": rand(1, 2, 3, 4), "b": rand(1, 2, 3, 4)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0


def test_flatten_gemm_absorbs_layout():
    """SFace's tail: Flatten of an NCHW map feeding a Gemm needs no runtime transpose."""
    inits = {"w": rand(5, 3 * 4 * 6), "b": rand(5)}
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)]
    m = make_model(nodes, [("x", [1, 3, 4, 6])], [("y", [1, 5])], inits)
    imported = check(m, {"x": rand(1, 3, 4, 6)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0
    ops = tflite_ops(convert_float(imported))
    assert "TRANSPOSE" not in ops and "GATHER" not in ops, ops


def test_flatten_output_and_reshape_to_2d():
    nodes = [helper.make_node("Flatten", ["x"], ["y"]),
             helper.make_node("Reshape", ["x", "s"], ["z"])]
    m = make_model(nodes, [("x", [1, 3, 4, 6])], [("y", [1, 72]), ("z", [1, 72])],
                   {"s": np.array([0, -1], np.int64)})
    check(m, {"x": rand(1, 3, 4, 6)})


@pytest.mark.parametrize("axis", [0, 2, 3])
def test_flatten_axes(axis):
    shape = [1, 3, 4, 6]
    out = [int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))]
    check(single("Flatten", shape, out, axis=axis), {"x": rand(*shape)})


@pytest.mark.parametrize("target", [[1, -1, 4], [0, 3, -1], [2, 0, 16], [-1], [1, 3, 32, 1]])
def test_reshape(target):
    shape = [1, 3, 4, 8]
    total = int(np.prod(shape))
    out = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    if -1 in out:
        out[out.index(-1)] = total // -int(np.prod(out))
    m = single("Reshape", shape, out, inits={"s": np.asarray(target, np.int64)})
    check(m, {"x": rand(*shape)})


def test_yunet_head_transpose_reshape_is_free():
    """Conv -> Transpose(0,2,3,1) -> Reshape([1,-1,k]) folds into the NHWC layout."""
    inits = {"w": rand(4, 3, 3, 3), "b": rand(4), "s": np.array([1, -1, 4], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "s"], ["r"]),
             helper.make_node("Sigmoid", ["r"], ["y"])]
    m = make_model(nodes, [("x", [1, 3, 6, 5])], [("y", [1, 30, 4])], inits)
    imported = check(m, {"x": rand(1, 3, 6, 5)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [0, 3, 1, 2], [1, 0, 2, 3], [0, 1, 3, 2], [3, 2, 1, 0]])
def test_transpose(perm):
    shape = [1, 2, 3, 4]
    check(single("Transpose", shape, [shape[p] for p in perm], perm=perm), {"x": rand(*shape)})


def test_transpose_then_conv():
    inits = {"w": rand(2, 4, 1, 1)}
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Conv", ["t", "w"], ["y"])]
    m = make_model(nodes, [("x", [1, 4, 3, 5])], [("y", [1, 2, 5, 3])], inits)
    imported = check(m, {"x": rand(1, 4, 3, 5)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 1  # the H<->W swap really moves data


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(opset):
    if opset == 11:
        nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
                 helper.make_node("Squeeze", ["g"], ["s"], axes=[2, 3]),
                 helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0])]
        inits = {}
    else:
        nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
                 helper.make_node("Squeeze", ["g", "ax"], ["s"]),
                 helper.make_node("Unsqueeze", ["s", "ax0"], ["y"])]
        inits = {"ax": np.array([2, 3], np.int64), "ax0": np.array([0], np.int64)}
    m = make_model(nodes, [("x", [1, 5, 3, 4])], [("y", [1, 1, 5])], inits, opset)
    imported = check(m, {"x": rand(1, 5, 3, 4)}, nhwc_outputs=True)
    assert imported.transposes_inserted == 0


def test_squeeze_no_axes_and_unsqueeze_4d():
    nodes = [helper.make_node("Squeeze", ["x"], ["s"]), helper.make_node("Unsqueeze", ["s"], ["y"], axes=[1, 3])]
    m = make_model(nodes, [("x", [1, 3, 1, 5])], [("y", [3, 1, 5, 1])], opset=11)
    check(m, {"x": rand(1, 3, 1, 5)})


@pytest.mark.parametrize("ta,tb,alpha,beta,c_shape", [
    (0, 0, 1.0, 1.0, [5]), (0, 1, 0.5, 2.0, [1, 5]), (1, 0, 1.0, 0.0, [5]), (1, 1, 2.0, 0.5, [3, 5]),
    (0, 0, 1.0, 1.0, None),
])
def test_gemm(ta, tb, alpha, beta, c_shape):
    inits = {"b": rand(*([5, 4] if tb else [4, 5]))}
    names = ["x", "b"]
    if c_shape:
        inits["c"] = rand(*c_shape)
        names.append("c")
    node = helper.make_node("Gemm", names, ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
    m = make_model([node], [("x", [4, 3] if ta else [3, 4])], [("y", [3, 5])], inits)
    check(m, {"x": rand(*([4, 3] if ta else [3, 4]))})


def test_gemm_runtime_b():
    node = helper.make_node("Gemm", ["x", "b"], ["y"], transB=1, alpha=0.5)
    m = make_model([node], [("x", [3, 4]), ("b", [5, 4])], [("y", [3, 5])])
    check(m, {"x": rand(3, 4), "b": rand(5, 4)})


@pytest.mark.parametrize("a_shape,b_shape,const_b", [
    ([3, 4], [4, 5], True), ([2, 3, 4], [4, 5], True), ([1, 2, 3, 4], [4, 6], True),
    ([2, 3, 4], [2, 4, 5], False), ([3, 4], [4, 5], False),
])
def test_matmul(a_shape, b_shape, const_b):
    out = list(np.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2]))) + [a_shape[-2], b_shape[-1]]
    if const_b:
        m = single("MatMul", a_shape, out, inits={"b": rand(*b_shape)})
        feeds = {"x": rand(*a_shape)}
    else:
        m = single("MatMul", a_shape, out, extra_inputs=[("b", b_shape)])
        feeds = {"x": rand(*a_shape), "b": rand(*b_shape)}
    check(m, feeds)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis,shape", [
    (11, 1, [1, 3, 4, 5]), (11, 3, [1, 3, 4, 5]), (11, -1, [2, 7]), (11, 2, [1, 3, 4, 5]),
    (13, 1, [1, 3, 4, 5]), (13, -1, [1, 3, 4, 5]), (13, 2, [1, 3, 4, 5]), (13, 1, [2, 7]),
])
def test_softmax(op, opset, axis, shape):
    check(single(op, shape, shape, opset=opset, axis=axis), {"x": rand(*shape, lo=-3, hi=3)})


PADS = [[0, 0, 1, 2, 0, 0, 2, 1], [0, 1, 0, 0, 0, 1, 0, 0], [0, 0, -1, 1, 0, 0, 1, -1]]


# Negative pads (cropping) only in constant mode: onnxruntime's reflect/edge refuse them.
@pytest.mark.parametrize("mode,pads", [(m, p) for m in ("constant", "reflect", "edge") for p in PADS
                                       if m == "constant" or min(p) >= 0])
def test_pad(mode, pads):
    shape = [1, 2, 4, 5]
    out = [shape[i] + pads[i] + pads[i + 4] for i in range(4)]
    inits = {"p": np.asarray(pads, np.int64)}
    names = ["x", "p"]
    if mode == "constant":
        inits["v"] = np.array(0.5, np.float32)
        names.append("v")
    m = make_model([helper.make_node("Pad", names, ["y"], mode=mode)], [("x", shape)], [("y", out)], inits, 11)
    check(m, {"x": rand(*shape)})
    m = single("Pad", shape, out, opset=7, mode=mode, pads=pads, value=0.25)
    check(m, {"x": rand(*shape)})


def test_constant_subgraph_is_folded():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape: the PyTorch flatten idiom."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Shape", ["r"], ["sh"]),
             helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
             helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("Cast", ["f"], ["y"], to=TensorProto.FLOAT)]
    inits = {"ax": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    m = make_model(nodes, [("x", [1, 2, 3, 4])], [("y", [1, 24])], inits)
    imported = check(m, {"x": rand(1, 2, 3, 4)})
    assert imported.transposes_inserted == 1  # a flattened output must be in ONNX order


def test_slice_split_reduce():
    nodes = [helper.make_node("Slice", ["x", "st", "en", "ax"], ["s"]),
             helper.make_node("Split", ["s"], ["a", "b"], axis=1),
             helper.make_node("ReduceMean", ["a"], ["y1"], axes=[2, 3], keepdims=1),
             helper.make_node("ReduceMax", ["b"], ["y2"], axes=[1], keepdims=0)]
    inits = {"st": np.array([0, 1], np.int64), "en": np.array([4, 100], np.int64), "ax": np.array([1, 3], np.int64)}
    m = make_model(nodes, [("x", [1, 4, 5, 6])], [("y1", [1, 2, 1, 1]), ("y2", [1, 5, 5])], inits, opset=12)
    check(m, {"x": rand(1, 4, 5, 6)})


# ----------------------------------------------------------------------------
# API: shapes, layouts, errors, saving
# ----------------------------------------------------------------------------
def _tiny_conv_model(batch="N"):
    inits = {"w": rand(4, 3, 3, 3), "b": rand(4)}
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", F, [batch, 4, 8, 8])],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_dynamic_batch_defaults_to_one_and_can_be_overridden():
    m = _tiny_conv_model()
    imported = import_onnx(m)
    assert imported.onnx_input_shapes == {"x": (1, 3, 8, 8)}
    assert imported.tf_input_specs[0].shape == (1, 8, 8, 3)
    assert imported.input_layouts == {"x": "NHWC"}
    x = rand(2, 3, 8, 8)
    imported = check(m, {"x": x}, input_shapes={"x": [2, 3, 8, 8]}, nhwc_outputs=True)
    assert imported.tf_input_specs[0].shape == (2, 8, 8, 3)
    with pytest.raises(ConversionError, match="unknown inputs"):
        import_onnx(m, input_shapes={"nope": [1, 3, 8, 8]})


def test_dynamic_spatial_dims_need_input_shapes():
    m = _tiny_conv_model()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(ConversionError, match="input_shapes"):
        import_onnx(m)


def test_nhwc_false_and_nhwc_outputs():
    m = _tiny_conv_model(1)
    x = rand(1, 3, 8, 8)
    ref = run_ort(m, {"x": x})["y"]
    a = import_onnx(m, nhwc=False)
    assert a.input_layouts == {"x": "AS_IS"} and a.tf_input_specs[0].shape == (1, 3, 8, 8)
    np.testing.assert_allclose(a(x)["y"].numpy(), ref, atol=1e-4)
    b = import_onnx(m, nhwc_outputs=True)
    np.testing.assert_allclose(b(x.transpose(0, 2, 3, 1))["y"].numpy(), ref.transpose(0, 2, 3, 1), atol=1e-4)
    assert b.transposes_inserted == 0


def test_float_tflite_of_convs_has_no_transpose():
    imported = import_onnx(_tiny_conv_model(1), nhwc_outputs=True)
    ops = tflite_ops(convert_float(imported))
    assert ops["CONV_2D"] == 1 and "TRANSPOSE" not in ops, ops


def test_unsupported_ops_are_all_listed():
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Erf", ["a"], ["b"], name="erf1"),
             helper.make_node("NonZero", ["b"], ["c"], name="nz"),
             helper.make_node("Erf", ["c"], ["d"], name="erf2"),
             helper.make_node("FusedConv", ["d"], ["y"], domain="com.microsoft", name="fc")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 3])],
                              [helper.make_tensor_value_info("y", F, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    assert unsupported_ops(m) == ["Erf", "NonZero", "com.microsoft.FusedConv"]
    with pytest.raises(ConversionError) as e:
        import_onnx(m)
    msg = str(e.value)
    for s in ("Erf", "NonZero", "com.microsoft.FusedConv", "'erf1'", "'erf2'", "'nz'", "docs/converters.md"):
        assert s in msg
    assert "Relu" in SUPPORTED_OPS and unsupported_ops(_tiny_conv_model()) == []


@pytest.mark.parametrize("opset", [11, 12, 13, 14, 15, 16, 17])
def test_opsets(opset):
    """A small CNN (conv, BN, clip, pool, resize, concat, softmax head) across opsets."""
    clip_node = helper.make_node("Clip", ["b", "lo", "hi"], ["r"])
    inits = {"w": rand(4, 3, 3, 3), **_bn_inits(4), "lo": np.array(0, np.float32), "hi": np.array(6, np.float32),
             "roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 2], np.float32),
             "fw": rand(8 * 4 * 4, 5), "fb": rand(5)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["b"]),
             clip_node,
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Resize", ["p", "roi", "sc"], ["u"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Concat", ["u", "r"], ["cat"], axis=1),
             helper.make_node("AveragePool", ["cat"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["g"]),
             helper.make_node("Softmax", ["g"], ["y"], axis=1)]
    m = make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 5])], inits, opset)
    imported = check(m, {"x": rand(1, 3, 8, 8, lo=-3, hi=3)})
    assert imported.transposes_inserted == 0


def test_bad_opset_and_missing_file(tmp_path):
    m = single("Relu", [1, 2], [1, 2], opset=13)
    m.opset_import[0].version = 5
    with pytest.raises(ConversionError, match="opset 5"):
        import_onnx(m)
    from edgelite.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        import_onnx(tmp_path / "missing.onnx")


def test_save_and_reload(tmp_path):
    m = _tiny_conv_model(1)
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    imported = import_onnx(path)
    imported.save(tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    fn = loaded.signatures["serving_default"]
    x = rand(1, 3, 8, 8)
    out = fn(x=tf.constant(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(out["y"].numpy(), run_ort(m, {"x": x})["y"], atol=1e-4)


def test_numeric_output_names_and_shared_outputs():
    nodes = [helper.make_node("Relu", ["x"], ["383"]), helper.make_node("Identity", ["383"], ["out:0"])]
    m = make_model(nodes, [("x", [1, 2, 3, 3])], [("383", [1, 2, 3, 3]), ("out:0", [1, 2, 3, 3])])
    imported = check(m, {"x": rand(1, 2, 3, 3)})
    assert imported.output_names == ["383", "out:0"]


# ----------------------------------------------------------------------------
# Zoo models end to end
# ----------------------------------------------------------------------------
def _zoo_check(path, input_shape, seed, tf_tol, lite_tol):
    model = onnx.load(str(path))
    imported = import_onnx(model)
    assert imported.transposes_inserted == 0, imported.rewrites
    x = np.random.default_rng(seed).uniform(0, 255, input_shape).astype(np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {imported.input_names[0]: x})))
    got = imported(x.transpose(0, 2, 3, 1))
    tf_err = max(float(np.abs(got[k].numpy() - r).max()) for k, r in ref.items())

    content = convert_float(imported)
    ops = tflite_ops(content)
    assert "TRANSPOSE" not in ops, ops
    lite = tflite_outputs_by_name(content, imported, [x.transpose(0, 2, 3, 1)])
    lite_err = max(float(np.abs(lite[k] - r).max()) for k, r in ref.items())
    scale = max(float(np.abs(r).max()) for r in ref.values())
    print(f"\n{path.name}: max |TF - onnxruntime| = {tf_err:.3g}, "
          f"max |float TFLite - onnxruntime| = {lite_err:.3g} (max |output| {scale:.3g}); ops {dict(ops)}")
    assert tf_err <= tf_tol * max(1.0, scale)
    assert lite_err <= lite_tol * max(1.0, scale)
    return imported, ops


def test_yunet_end_to_end(onnx_sources):
    imported, ops = _zoo_check(onnx_sources / "face_detection_yunet_2023mar.onnx", (1, 3, 640, 640), 0,
                               1e-4, 1e-4)
    assert len(imported.output_names) == 12 and imported.output_names[0] == "cls_8"
    assert ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"] == 53


def test_sface_end_to_end(onnx_sources):
    imported, ops = _zoo_check(onnx_sources / "face_recognition_sface_2021dec.onnx", (1, 3, 112, 112), 1,
                               1e-4, 1e-4)
    assert imported.input_names == ["data"]  # initializers listed as graph inputs are not inputs
    assert sum("folded into" in r for r in imported.rewrites) == 29  # 27 convs, Gemm, and bn1 forward
    assert sum(r.startswith("PRelu") for r in imported.rewrites) == 27
    assert "PRELU" not in ops


@pytest.mark.parametrize("strides,pads,hw,mult", [([2, 1], [1, 1, 1, 1], (8, 8), 1), ([1, 2], [1, 1, 1, 1], (7, 9), 1),
                                                  ([2, 1], [0, 1, 0, 1], (9, 6), 2), ([4, 2], [1, 1, 1, 1], (12, 10), 1),
                                                  ([2, 1], [1, 0, 0, 0], (6, 5), 1)])
def test_depthwise_unequal_strides_is_one_depthwise_op(strides, pads, hw, mult):
    """A stride-(2,1) depthwise conv (text recognisers) used to become one CONV_2D per channel."""
    c = 6
    w = rand(c * mult, 1, 3, 3)
    m = single("Conv", [1, c, *hw], None, inits={"w": w, "b": rand(c * mult)}, group=c, strides=strides, pads=pads,
               kernel_shape=[3, 3])
    imported = check(m, {"x": rand(1, c, *hw)})
    assert any("DEPTHWISE_CONV_2D at stride" in r for r in imported.rewrites)
    ops = tflite_ops(convert_float(imported))
    assert ops["DEPTHWISE_CONV_2D"] == 1 and ops.get("CONV_2D", 0) == 0 and ops.get("CONCATENATION", 0) == 0, ops
