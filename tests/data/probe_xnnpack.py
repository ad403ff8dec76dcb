"""Measure which ops the XNNPACK delegate runs, in int8 and in float32.

Builds one tiny single-op model per TFLite op with TensorFlow (float32 and
full-integer int8 with int8 I/O), loads each with the installed LiteRT runtime
and its default XNNPACK delegate, and reads back which nodes were delegated
(``edgelite.inspect.delegated_ops``). The result feeds the static table in
``sdk/edgelite/inspect.py`` used when no runtime is importable::

    .venv/bin/python tests/data/probe_xnnpack.py [OP_NAME ...]

Needs TensorFlow (the ``convert`` extra). Prints one line per probe:
``<intended op>  <precision>  <op in the converted model>=<delegated?> ...``.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from edgelite._tflite import parse_model  # noqa: E402
from edgelite.inspect import delegated_ops  # noqa: E402

RNG = np.random.default_rng(0)
X4 = (1, 8, 8, 4)


def _w(*shape):
    return tf.constant(RNG.normal(0, 0.5, shape).astype(np.float32))


def _probes():
    """(name, input shapes, fn) for every op worth knowing about."""
    cw, dw, fw, tw = _w(3, 3, 4, 4), _w(3, 3, 4, 1), _w(256, 8), _w(3, 3, 4, 4)
    alpha = tf.constant(np.full((1, 1, 4), -0.2, np.float32))
    one = [X4]
    two = [X4, X4]
    return [
        ("CONV_2D", one, lambda x: tf.nn.conv2d(x, cw, 1, "SAME")),
        ("DEPTHWISE_CONV_2D", one, lambda x: tf.nn.depthwise_conv2d(x, dw, [1, 1, 1, 1], "SAME")),
        ("FULLY_CONNECTED", one, lambda x: tf.matmul(tf.reshape(x, (1, 256)), fw)),
        ("TRANSPOSE_CONV", one, lambda x: tf.nn.conv2d_transpose(x, tw, (1, 16, 16, 4), 2)),
        ("ADD", two, lambda x, y: x + y),
        ("SUB", two, lambda x, y: x - y),
        ("MUL", two, lambda x, y: x * y),
        ("DIV", two, lambda x, y: x / (tf.abs(y) + 1.0)),
        ("MAXIMUM", two, tf.maximum),
        ("MINIMUM", two, tf.minimum),
        ("SQUARED_DIFFERENCE", two, tf.math.squared_difference),
        ("MAX_POOL_2D", one, lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID")),
        ("AVERAGE_POOL_2D", one, lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID")),
        ("MEAN", one, lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=True)),
        ("SUM", one, lambda x: tf.reduce_sum(x, axis=[1, 2], keepdims=True)),
        ("CONCATENATION", two, lambda x, y: tf.concat([x, y], axis=3)),
        ("RESHAPE", one, lambda x: tf.reshape(x, (1, 64, 4))),
        ("RESIZE_BILINEAR", one, lambda x: tf.image.resize(x, (16, 16), "bilinear")),
        ("RESIZE_NEAREST_NEIGHBOR", one, lambda x: tf.image.resize(x, (16, 16), "nearest")),
        ("RESIZE_NEAREST/v1", one, lambda x: tf.compat.v1.image.resize_nearest_neighbor(x, (16, 16))),
        ("TRANSPOSE", one, lambda x: tf.transpose(x, (0, 3, 1, 2))),
        ("PAD", one, lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])),
        ("LEAKY_RELU", one, lambda x: tf.nn.leaky_relu(x, 0.1)),
        ("LOGISTIC", one, tf.sigmoid),
        ("TANH", one, tf.tanh),
        ("HARD_SWISH", one, lambda x: x * tf.nn.relu6(x + 3.0) / 6.0),
        ("ELU", one, tf.nn.elu),
        ("SOFTMAX", one, tf.nn.softmax),
        ("PRELU", one, lambda x: tf.nn.relu(x) + alpha * tf.nn.relu(-x)),
        ("RELU", one, tf.nn.relu),
        ("RELU6", one, tf.nn.relu6),
        ("SPLIT", one, lambda x: tf.split(x, 2, axis=3)),
        ("SLICE", one, lambda x: tf.slice(x, [0, 1, 1, 0], [1, 4, 4, 4])),
        ("STRIDED_SLICE", one, lambda x: x[:, 1:7, 1:7, :]),
        ("STRIDED_SLICE/2", one, lambda x: x[:, ::2, 1:7, :]),
        ("DEPTH_TO_SPACE", one, lambda x: tf.nn.depth_to_space(x, 2)),
        ("SPACE_TO_DEPTH", one, lambda x: tf.nn.space_to_depth(x, 2)),
        ("BATCH_MATMUL", two, lambda x, y: tf.matmul(x, y, transpose_b=True)),
        ("SQUEEZE", [(1, 8, 1, 4)], lambda x: tf.squeeze(x, axis=2)),
        ("GELU", one, lambda x: tf.nn.gelu(x, approximate=False)),
        ("EXP", one, tf.exp),
        ("ABS", one, tf.abs),
        ("NEG", one, tf.negative),
        ("SQRT", one, lambda x: tf.sqrt(tf.abs(x))),
        ("RSQRT", one, lambda x: tf.math.rsqrt(tf.abs(x) + 1.0)),
        ("SQUARE", one, tf.square),
        ("FLOOR", one, tf.floor),
        ("CEIL", one, tf.math.ceil),
        ("ROUND", one, tf.round),
        ("LOG", one, lambda x: tf.math.log(tf.abs(x) + 1.0)),
        ("L2_NORMALIZATION", one, lambda x: tf.math.l2_normalize(x, axis=-1)),
    ]


def _convert(fn, shapes, int8: bool) -> bytes:
    sig = [tf.TensorSpec(s, tf.float32) for s in shapes]
    cf = tf.function(fn, input_signature=sig, autograph=False).get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf])
    if int8:
        def rep():
            for _ in range(8):
                yield [RNG.uniform(-2, 2, s).astype(np.float32) for s in shapes]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def main(only: list[str]) -> None:
    for name, shapes, fn in _probes():
        if only and name not in only:
            continue
        for int8 in (True, False):
            prec = "int8" if int8 else "float"
            try:
                data = _convert(fn, shapes, int8)
            except Exception as exc:  # noqa: BLE001 - report and go on
                sys.stdout.write(f"{name:24s} {prec:5s} conversion failed: "
                                 f"{str(exc).splitlines()[0][:80]}\n")
                continue
            info = parse_model(data)
            measured, note = delegated_ops(info)
            ops = info.subgraphs[0].operators
            cells = " ".join(
                f"{op.op_name}={'Y' if measured and measured.get(op.index) else 'n'}"
                for op in ops
            )
            sys.stdout.write(f"{name:24s} {prec:5s} {cells}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
