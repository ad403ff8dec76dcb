"""int8 faster than float: the ops XNNPACK does not run in int8 are rewritten (issue 12, item 2).

Tiny models with the blocks of MobileNetV3 (hard-swish, squeeze-excite with a
hard-sigmoid gate), NASNet (3x3 average pools with SAME padding, a standalone ReLU
after a concatenation) and a Keras variable batch (which leaves SHAPE/STRIDED_SLICE/
PACK chains per squeeze-excite block). After conversion XNNPACK must run the whole
int8 graph as one partition, and the outputs must stay as close to float as before.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgelite
from edgelite.inspect import inspect_model

RNG = np.random.default_rng(21)


def _partitions(model_bytes: bytes) -> int:
    m = edgelite.Model(model_bytes, num_threads=1)
    return sum(1 for o in m.interpreter._get_ops_details() if o.get("op_name") == "DELEGATE")


def _not_delegated(model_bytes: bytes) -> list[str]:
    return sorted({o.op_name for o in inspect_model(model_bytes).xnnpack_ops if not o.delegated})


def _cosine(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _keras_blocks():
    import keras

    keras.utils.set_random_seed(3)
    x = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(16, 3, padding="same")(x)
    a = keras.layers.BatchNormalization()(a)
    h = keras.layers.Activation("hard_swish")(a)
    # squeeze-excite, MobileNetV3 style (hard-sigmoid gate); its Reshape uses the batch size
    s = keras.layers.GlobalAveragePooling2D(keepdims=True)(h)
    s = keras.layers.Conv2D(4, 1, activation="relu")(s)
    s = keras.layers.Conv2D(16, 1, activation="hard_sigmoid")(s)
    h = keras.layers.Multiply()([h, s])
    # NASNet style: 3x3 average pool (SAME, stride 1), concat, standalone ReLU
    p = keras.layers.AveragePooling2D(3, 1, padding="same")(h)
    c = keras.layers.Concatenate()([h, p])
    r = keras.layers.ReLU()(c)
    r = keras.layers.SeparableConv2D(16, 3, padding="same")(r)
    r = keras.layers.Add()([r, h])
    g = keras.layers.GlobalAveragePooling2D()(r)
    out = keras.layers.Dense(6)(g)
    return keras.Model(x, out)


@pytest.fixture(scope="module")
def keras_pair():
    from edgelite_convert import ConvertOptions, convert

    m = _keras_blocks()
    calib = [RNG.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(40)]
    new = convert(m, calibration=calib, progress=False, options=ConvertOptions(holdout=8))
    old = convert(m, calibration=calib, progress=False,
                  options=ConvertOptions(holdout=8, xnnpack_rewrites=False, static_batch=False,
                                         allow_float_fallback=True))
    return new, old, calib


@pytest.mark.slow
def test_keras_blocks_run_as_one_int8_partition(keras_pair):
    new, old, _ = keras_pair
    # before: HARD_SWISH, AVERAGE_POOL_2D, RELU and the batch-size shape chain split the graph
    assert {"HARD_SWISH", "AVERAGE_POOL_2D"} <= set(_not_delegated(old.model))
    assert _partitions(old.model) > 1
    # after
    hist = new.report["op_histogram"]
    assert not {"HARD_SWISH", "AVERAGE_POOL_2D", "RELU", "SHAPE", "STRIDED_SLICE", "PACK"} & set(hist), hist
    assert new.report["fully_integer"] is True
    assert _not_delegated(new.model) == []
    assert _partitions(new.model) == 1
    rw = " | ".join(new.report["rewrites"])
    assert "static batch" in rw and "HARD_SWISH -> ADD" in rw and "AVERAGE_POOL_2D -> DEPTHWISE_CONV_2D + MUL" in rw


@pytest.mark.slow
def test_keras_blocks_accuracy_kept(keras_pair):
    new, old, calib = keras_pair
    fm = edgelite.Model(new.float_model)
    qn, qo = edgelite.Model(new.model), edgelite.Model(old.model)
    xs = calib[-8:]
    ref = np.concatenate([fm(x) for x in xs])
    got_new = np.concatenate([qn(x) for x in xs])
    got_old = np.concatenate([qo(x) for x in xs])
    c_new, c_old = _cosine(ref, got_new), _cosine(ref, got_old)
    assert c_new >= 0.99 and c_new >= c_old - 0.005, (c_new, c_old)


def _onnx_blocks(path):
    """The same blocks as an ONNX export: HardSwish, AveragePool (3x3, stride 2, pads, exclude pad),
    GlobalAveragePool."""
    w1 = RNG.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32)
    w2 = RNG.normal(0, 0.4, (8, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c"], ["h"]),
             helper.make_node("AveragePool", ["h"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              count_include_pad=0),
             helper.make_node("Conv", ["p", "w2"], ["c2"]),
             helper.make_node("Relu", ["c2"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.mark.slow
def test_onnx_hardswish_and_avgpool_are_rewritten(tmp_path):
    from edgelite_convert import ConvertOptions, convert

    src = _onnx_blocks(tmp_path / "blocks.onnx")
    calib = [RNG.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(32)]
    new = convert(src, calibration=calib, progress=False, options=ConvertOptions(holdout=8))
    old = convert(src, calibration=calib, progress=False, options=ConvertOptions(holdout=8, xnnpack_rewrites=False))
    assert "HARD_SWISH" in old.report["op_histogram"]
    assert not {"HARD_SWISH", "AVERAGE_POOL_2D"} & set(new.report["op_histogram"])
    assert _not_delegated(new.model) == [] and _partitions(new.model) == 1
    v_new = new.report["validation"]["outputs"]["y"]["cosine_global"]
    v_old = old.report["validation"]["outputs"]["y"]["cosine_global"]
    assert v_new >= 0.99 and v_new >= v_old - 0.005


@pytest.mark.slow
def test_avgpool_rewrite_matches_tflite_average_pool_exactly_enough():
    """DEPTHWISE_CONV_2D(1/9) + MUL(border map) vs the builtin int8 AVERAGE_POOL_2D, SAME padding,
    strides 1 and 2: within one quantization step everywhere."""
    import tensorflow as tf

    from edgelite_convert.tflite_rewrite import rewrite_for_xnnpack

    for stride in (1, 2):
        @tf.function(input_signature=[tf.TensorSpec([1, 9, 10, 4], tf.float32)])
        def f(x):
            return tf.nn.avg_pool2d(x, 3, stride, "SAME")

        conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([RNG.uniform(-2, 2, (1, 9, 10, 4)).astype(np.float32)]
                                               for _ in range(20))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
        base = conv.convert()
        new, rw = rewrite_for_xnnpack(base)
        assert rw and "AVERAGE_POOL_2D" not in str(edgelite.Model(new).info.op_histogram())
        x = RNG.integers(-128, 128, (1, 9, 10, 4)).astype(np.int8)
        a = edgelite.Model(base, delegates=None).run(x, dequantize=False)
        b = edgelite.Model(new).run(x, dequantize=False)
        d = np.abs(next(iter(a.values())).astype(int) - next(iter(b.values())).astype(int))
        assert d.max() <= 1, (stride, d.max())


@pytest.mark.slow
def test_stride_2_1_depthwise_is_one_op_one_partition_int8(tmp_path):
    """Text-recogniser block: depthwise 3x3 with strides (2, 1) + ReLU (item 7): one DEPTHWISE_CONV_2D
    (not one CONV_2D per channel), the ReLU fused through the subsampling, one XNNPACK partition."""
    from edgelite_convert import ConvertOptions, convert

    c = 8
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w1", "b1"], ["d"], group=c, strides=[2, 1], pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("Relu", ["d"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 48])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 8, 48])],
                          [numpy_helper.from_array(RNG.normal(0, .3, (c, 3, 3, 3)).astype(np.float32), "w0"),
                           numpy_helper.from_array(RNG.normal(0, .3, (c, 1, 3, 3)).astype(np.float32), "w1"),
                           numpy_helper.from_array(RNG.normal(0, .1, (c,)).astype(np.float32), "b1")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "dw21.onnx"))
    calib = [RNG.uniform(-1, 1, (1, 16, 48, 3)).astype(np.float32) for _ in range(30)]
    res = convert(tmp_path / "dw21.onnx", calibration=calib, progress=False, options=ConvertOptions(holdout=8))
    hist = res.report["op_histogram"]
    assert hist.get("DEPTHWISE_CONV_2D") == 1 and hist.get("CONV_2D") == 1 and "RELU" not in hist, hist
    assert _not_delegated(res.model) == [] and _partitions(res.model) == 1
    assert res.report["validation"]["cosine_min_over_outputs"] >= 0.999
    assert res.report["batch"]["batch_polymorphic"] is True


@pytest.mark.slow
def test_six_way_concatenation_is_split_for_xnnpack():
    """NASNet cells concatenate 6 branches: XNNPACK takes at most 5 inputs, so the op stayed on the
    builtin kernel in int8 and float32 (13 partitions in NASNetMobile)."""
    import keras

    from edgelite_convert import ConvertOptions, convert

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    c = keras.layers.Concatenate()([keras.layers.Conv2D(4, 1)(x) for _ in range(6)])
    m = keras.Model(x, keras.layers.Flatten()(keras.layers.Conv2D(4, 1)(c)))
    calib = [RNG.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(30)]
    res = convert(m, calibration=calib, progress=False, options=ConvertOptions(holdout=8))
    for b in (res.model, res.float_model):
        assert _not_delegated(b) == [] and _partitions(b) == 1
    assert any("CONCATENATION of 6 inputs" in r for r in res.report["rewrites"])
    assert res.report["validation"]["cosine_min_over_outputs"] >= 0.999


def test_fold_channel_swap_gives_the_same_outputs_on_reversed_channels():
    """A BGR-trained model, folded, takes RGB: int8 outputs are bit-identical on the
    reversed image (integer sums in another order), float32 equal to rounding. A model
    whose image also feeds another op is left alone, with the reason."""
    import tiny_models
    from edgelite_convert.tflite_rewrite import fold_channel_swap

    tf = tiny_models._tf()
    rng = np.random.default_rng(4)
    xs = [rng.uniform(0, 1, (1, 32, 32, 3)).astype(np.float32) for _ in range(8)]
    for int8 in (True, False):
        data = tiny_models.convert_function(tiny_models.conv_net_function(5), int8=int8, calib=xs)
        new, why = fold_channel_swap(data)
        assert new is not None and "1 first convolution" in why, why
        a, b = edgelite.Model(data, num_threads=1), edgelite.Model(new, num_threads=1)
        for x in xs:
            xa = edgelite.quant.quantize(x, a.inputs[0].scale, a.inputs[0].zero_point) if int8 else x
            ya = next(iter(a.run(xa, dequantize=False).values()))
            yb = next(iter(b.run(np.ascontiguousarray(xa[..., ::-1]), dequantize=False).values()))
            if int8:
                assert np.array_equal(ya, yb)
            else:
                np.testing.assert_allclose(ya, yb, rtol=0, atol=1e-6)
        yc = next(iter(b.run(xa, dequantize=False).values()))  # the same image without reversing: not the same model
        assert not np.array_equal(ya, yc)
    w = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def mixed(x):
        return tf.nn.conv2d(x, w, 1, "SAME") + tf.reduce_mean(x, axis=-1, keepdims=True)

    new, why = fold_channel_swap(tiny_models.convert_function(mixed, int8=False))
    assert new is None and "not only convolutions" in why, why
