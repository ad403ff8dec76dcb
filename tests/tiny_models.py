"""Tiny real TFLite models built with TensorFlow inside the tests (no fixtures
downloaded, nothing mocked). Imported lazily so runtime-only tests stay light."""
from __future__ import annotations

import numpy as np


def _tf():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


def conv_net_function(seed: int = 0):
    """A small NHWC conv net (conv-relu-pool-conv-gap-dense-softmax) as a tf.function."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
    b1 = tf.constant(rng.normal(0, 0.1, (8,)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 16)).astype(np.float32))
    wd = tf.constant(rng.normal(0, 0.3, (16, 5)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")])
    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + b1)
        y = tf.nn.max_pool2d(y, 2, 2, "VALID")
        y = tf.nn.relu(tf.nn.conv2d(y, w2, 1, "SAME"))
        y = tf.reduce_mean(y, axis=[1, 2])
        return {"probs": tf.nn.softmax(tf.matmul(y, wd))}
    return f


def calib_data(n: int = 64, seed: int = 1, shape=(1, 32, 32, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, shape).astype(np.float32) for _ in range(n)]


def convert_function(f, *, int8: bool, io: str = "int8", calib=None, dynamic_batch=False) -> bytes:
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    if int8:
        data = calib if calib is not None else calib_data()
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([d] for d in data)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io]
        conv.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io]
    return conv.convert()


def dynamic_batch_model() -> bytes:
    """y = 2x + 1 with a dynamic batch dimension (shape_signature [-1, 4])."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def f(x):
        return {"y": 2.0 * x + 1.0}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return conv.convert()


def two_input_model() -> bytes:
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 3], tf.float32, name="a"),
                                  tf.TensorSpec([1, 3], tf.float32, name="b")])
    def f(a, b):
        return {"sum": a + b, "prod": a * b}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return conv.convert()


def multi_signature_model(tmpdir) -> bytes:
    tf = _tf()

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32, name="x")])
        def add(self, x):
            return {"out": x + 10.0}

        @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32, name="x")])
        def mul(self, x):
            return {"out": x * 3.0}
    m = M()
    path = str(tmpdir)
    tf.saved_model.save(m, path, signatures={"add": m.add.get_concrete_function(),
                                             "mul": m.mul.get_concrete_function()})
    conv = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["add", "mul"])
    return conv.convert()
