"""Regenerate the small TFLite fixture models in this folder.

Needs TensorFlow (the ``convert`` extra); the SDK tests only read the outputs,
so run this by hand and commit what it writes::

    .venv/bin/python tests/data/make_fixtures.py

Every model is seeded and tiny (a few KB) so the test data stays far below
300 KB. The models are built from raw TF ops with constant weights and go
through ``TFLiteConverter.from_concrete_functions`` / ``from_saved_model``
because ``from_keras_model`` is broken with Keras 3 (TF >= 2.16).

Outputs:
    conv_float.tflite       conv+relu+maxpool+avgpool+dense, float32, 1x32x32x3
    conv_int8.tflite        the same weights, full-integer, int8 input/output
    conv_uint8io.tflite     the same weights, full-integer, uint8 input/output
    conv_int8_floatio.tflite  the same weights, full-integer inside, float32
                            input/output (QUANTIZE/DEQUANTIZE wrappers)
    multi_signature.tflite  float tf.Module with two signatures, ``add``, ``mul``
    prelu_int8.tflite       full-integer int8 conv+PReLU model (PRELU op), with an
                            ``edgelite`` JSON metadata entry added afterwards
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = Path(__file__).resolve().parent
INPUT_SHAPE = (1, 32, 32, 3)


def _conv_module() -> tf.Module:
    """A seeded conv+relu+pool+dense network built from raw TF ops.

    Raw ops (instead of Keras layers) keep the graph, and so the converted op
    list, identical across Keras versions. Weights are constants, not
    ``tf.Variable``: variables would survive conversion as READ_VARIABLE ops
    that calibration cannot run.
    """
    rng = np.random.default_rng(1234)

    class ConvNet(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
            self.b = tf.constant(rng.normal(0, 0.1, (8,)).astype(np.float32))
            self.dw = tf.constant(rng.normal(0, 0.2, (128, 10)).astype(np.float32))
            self.db = tf.constant(rng.normal(0, 0.1, (10,)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32, name="image")])
        def __call__(self, x):
            y = tf.nn.conv2d(x, self.w, strides=1, padding="SAME") + self.b
            y = tf.nn.relu(y)
            y = tf.nn.max_pool2d(y, 2, 2, "VALID")  # 16x16x8
            y = tf.nn.avg_pool2d(y, 4, 4, "VALID")  # 4x4x8
            y = tf.reshape(y, (1, 128))
            return {"logits": tf.matmul(y, self.dw) + self.db}

    return ConvNet()


def _prelu_module() -> tf.Module:
    """Conv followed by PReLU written as ``relu(x) + (-alpha) * relu(-x)``.

    The converter pattern-matches that expression into one PRELU op.
    """
    rng = np.random.default_rng(99)

    class PreluNet(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32))
            self.b = tf.constant(rng.normal(0, 0.1, (4,)).astype(np.float32))
            self.alpha = tf.constant(rng.uniform(0.1, 0.3, (1, 1, 4)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec((1, 16, 16, 3), tf.float32, name="image")])
        def __call__(self, x):
            y = tf.nn.conv2d(x, self.w, strides=1, padding="SAME") + self.b
            # Exactly this form (add of relu and negated-alpha times relu of -y) is
            # what the converter pattern-matches; `relu(y) - alpha * relu(-y)` is not.
            return {"features": tf.nn.relu(y) + (-self.alpha) * tf.nn.relu(-y)}

    return PreluNet()


def _representative(shape, n=16, seed=0):
    rng = np.random.default_rng(seed)

    def gen():
        for _ in range(n):
            yield [rng.uniform(-1.0, 1.0, shape).astype(np.float32)]

    return gen


def _convert(module, *, quantize: bool, io_type=None, shape=INPUT_SHAPE) -> bytes:
    fn = module.__call__.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    if quantize:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(shape)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
    return conv.convert()


def _multi_signature() -> bytes:
    class Arith(tf.Module):
        @tf.function(input_signature=[
            tf.TensorSpec((1, 4), tf.float32, name="x"),
            tf.TensorSpec((1, 4), tf.float32, name="y"),
        ])
        def add(self, x, y):
            return {"sum": x + y}

        @tf.function(input_signature=[
            tf.TensorSpec((1, 4), tf.float32, name="x"),
            tf.TensorSpec((1, 4), tf.float32, name="y"),
        ])
        def mul(self, x, y):
            return {"product": x * y}

    m = Arith()
    with tempfile.TemporaryDirectory() as d:
        tf.saved_model.save(m, d, signatures={"add": m.add, "mul": m.mul})
        conv = tf.lite.TFLiteConverter.from_saved_model(d, signature_keys=["add", "mul"])
        return conv.convert()


def _add_metadata(model: bytes, name: str, payload: bytes) -> bytes:
    """Append a named metadata entry (a new buffer) using TF's generated schema."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8)
    m.buffers.append(buf)
    md = schema.MetadataT()
    md.name = name
    md.buffer = len(m.buffers) - 1
    m.metadata = (m.metadata or []) + [md]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def main() -> None:
    tf.random.set_seed(0)
    conv = _conv_module()
    outputs = {
        "conv_float.tflite": _convert(conv, quantize=False),
        "conv_int8.tflite": _convert(conv, quantize=True, io_type=tf.int8),
        "conv_uint8io.tflite": _convert(conv, quantize=True, io_type=tf.uint8),
        "conv_int8_floatio.tflite": _convert(conv, quantize=True, io_type=tf.float32),
        "multi_signature.tflite": _multi_signature(),
    }
    prelu = _convert(_prelu_module(), quantize=True, io_type=tf.int8, shape=(1, 16, 16, 3))
    meta = {"schema": 1, "task": "test", "labels": ["a", "b"]}
    outputs["prelu_int8.tflite"] = _add_metadata(
        prelu, "edgelite", json.dumps(meta).encode("utf-8")
    )
    for name, data in outputs.items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
