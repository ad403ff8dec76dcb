"""Benchmark: int8 PReLU as TFLite PRELU vs edgelite's rewrite, against float.

XNNPACK, TFLite's default CPU backend, has no int8 PRELU kernel, so a naive
full-int8 conversion of a PReLU network (SFace) runs PRELU in TFLite's slow
reference kernels - slower than the float model. ``import_onnx(prelu_rewrite=True)``
(the default) replaces each PReLU with delegated int8 ops. This script measures
the three variants of the same network in one run and prints median latencies
and ratios to float (timings are only comparable within one run).

By default it builds an SFace-shaped network (MobileNetV1-style: 3x3 conv + 13
depthwise/pointwise pairs, each followed by a per-channel PReLU with slopes in
[-0.8, 1.1], 112x112 input, Flatten + Gemm to 128) with random weights, so it needs
no download. ``--onnx PATH`` benchmarks a real model instead (its first input must
be a 4-D image).

Needs the ``convert`` extra (TensorFlow, onnx) plus ai-edge-litert::

    python device_tests/bench_prelu.py [--onnx face_recognition_sface_2021dec.onnx]
        [--threads 2] [--runs 50] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

from edgelite_convert.onnx_import import import_onnx

# (out channels, stride) of SFace's 13 depthwise/pointwise pairs after the 3x3 stem.
SFACE_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def sface_shaped_model(seed: int = 0) -> onnx.ModelProto:
    """An SFace-shaped PReLU network with random weights (BN already folded)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], {}
    n_prelu = 0

    def conv(x, cin, cout, k, stride, group):
        nonlocal n_prelu
        name = f"c{len(nodes)}"
        fan_in = cin // group * k * k
        inits[f"{name}_w"] = rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // group, k, k)).astype(np.float32)
        inits[f"{name}_b"] = rng.normal(0, 0.05, cout).astype(np.float32)
        pad = k // 2
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [name], group=group,
                                      kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))
        # Slopes like SFace's: mostly in [-0.8, 1]; two layers have a few slopes > 1.
        hi = 1.1 if n_prelu in (0, 1) else 1.0
        inits[f"{name}_a"] = rng.uniform(-0.8, hi, (cout, 1, 1)).astype(np.float32)
        nodes.append(helper.make_node("PRelu", [name, f"{name}_a"], [f"{name}_p"]))
        n_prelu += 1
        return f"{name}_p"

    x = conv("data", 3, 32, 3, 1, 1)
    c, size = 32, 112
    for cout, stride in SFACE_BLOCKS:
        x = conv(x, c, c, 3, stride, c)
        x = conv(x, c, cout, 1, 1, 1)
        c, size = cout, size // stride
    inits["fc_w"] = rng.normal(0, np.sqrt(1.0 / (c * size * size)), (128, c * size * size)).astype(np.float32)
    inits["fc_b"] = np.zeros(128, np.float32)
    nodes.append(helper.make_node("Flatten", [x], ["flat"]))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc1"], transB=1))
    graph = helper.make_graph(nodes, "sface_shaped",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 128])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    return model


def to_tflite(imported, calib: list[np.ndarray] | None) -> bytes:
    """Float TFLite (``calib=None``) or full-int8 with float I/O."""
    conv = tf.lite.TFLiteConverter.from_concrete_functions([imported.concrete_function()], imported)
    if calib is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def median_ms(content: bytes, x: np.ndarray, threads: int, runs: int) -> float:
    it = Interpreter(model_content=content, num_threads=threads)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    for _ in range(5):  # warm-up: XNNPACK packs weights on the first invoke
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def op_counts(content: bytes) -> dict[str, int]:
    it = Interpreter(model_content=content)
    counts: dict[str, int] = {}
    for op in it._get_ops_details():  # no public op listing in the interpreter API
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", help="benchmark this ONNX model instead of the synthetic SFace-shaped one")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50, help="timed invokes per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved measurements per variant")
    ap.add_argument("--calib", type=int, default=16, help="random calibration samples")
    args = ap.parse_args()

    model = onnx.load(args.onnx) if args.onnx else sface_shaped_model()
    rng = np.random.default_rng(0)
    rewritten = import_onnx(model)
    naive = import_onnx(model, prelu_rewrite=False)
    shape = rewritten.tf_input_specs[0].shape.as_list()
    calib = [rng.uniform(0, 255, shape).astype(np.float32) for _ in range(args.calib)]
    x = rng.uniform(0, 255, shape).astype(np.float32)

    variants = {
        "float": to_tflite(rewritten, None),
        "int8 naive PRELU": to_tflite(naive, calib),
        "int8 rewritten": to_tflite(rewritten, calib),
    }
    for name, content in variants.items():
        ops = op_counts(content)
        shown = {k: v for k, v in ops.items() if k in ("PRELU", "MUL", "ADD", "MAXIMUM", "MINIMUM", "RELU",
                                                     "LEAKY_RELU", "TRANSPOSE")}
        print(f"{name:18s} ops: {shown}")

    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):  # interleave so background load hits every variant alike
        for name, content in variants.items():
            times[name].append(median_ms(content, x, args.threads, args.runs))
    base = float(np.median(times["float"]))
    print(f"\nmedian latency, num_threads={args.threads} ({args.repeats} x {args.runs} invokes):")
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"  {name:18s} {med:8.2f} ms   x{med / base:.2f} vs float")
    naive_ms, rw_ms = float(np.median(times["int8 naive PRELU"])), float(np.median(times["int8 rewritten"]))
    print(f"  rewrite speed-up over naive int8: x{naive_ms / rw_ms:.1f}")


if __name__ == "__main__":
    main()
