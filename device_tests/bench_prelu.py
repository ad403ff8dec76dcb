"""Benchmark: int8 PReLU forms (native PRELU, edgelite's rewrite and alternatives), one run.

XNNPACK, TFLite's default CPU backend, does not run PRELU in int8 (ai-edge-litert
2.3.0 delegates it in float only), so a naive full-int8 conversion of a PReLU
network (SFace) runs PRELU in TFLite's slow reference kernels - slower than the
float model. ``import_onnx(prelu_rewrite=True)`` (the default) replaces each PReLU
with delegated int8 ops (:mod:`edgelite_convert.prelu`). This script builds these
variants of the same network and times them interleaved in one run (timings are
only comparable within one run; the ratios are what to read):

* ``float``: float32 TFLite;
* ``int8 naive PRELU``: TFLite's own int8 PRELU op (not delegated);
* ``int8 rewrite, [1,1,1,C] const``: the rewrite with its per-channel constant
  broadcast per pixel (what edgelite shipped before);
* ``int8 rewrite (chosen)``: the rewrite as shipped, constant ``[1,1,W,C]``;
* ``int8 MUL -> 1x1 depthwise``: the measured alternative, ``x + relu(dwconv1x1(x, α-1))``;
* ``int8 no PReLU (floor)``: every PReLU deleted - NOT a valid model, only the time
  the convolutions alone take: no exact PReLU form can beat it.

Each variant's output is compared with the chosen one's (max |difference| over
max |output|): the tiled and untiled rewrites give bit-identical int8 results.

By default it builds an SFace-shaped network (MobileNetV1-style: 3x3 conv + 13
depthwise/pointwise pairs, each followed by a per-channel PReLU with slopes in
[-0.8, 1.1], 112x112 input, Flatten + Gemm to 128) with random weights, so it needs
no download. ``--onnx PATH`` benchmarks a real model instead (its first input must
be a 4-D image), e.g. the zoo's SFace source. ``--clock thread`` measures the CPU
time of the invoking thread instead of wall time: on a shared machine it is far less
noisy, but only meaningful with ``--threads 1`` (XNNPACK's worker threads are not
counted).

Needs the ``convert`` extra (TensorFlow, onnx) plus ai-edge-litert::

    python device_tests/bench_prelu.py [--onnx face_recognition_sface_2021dec.onnx]
        [--threads 2] [--runs 50] [--repeats 7] [--clock wall|thread] [--per-shape]

Writes ``results/<device-id>/prelu_<model>_t<threads>_<clock>.{json,md}``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from edgelite_convert import onnx_ops  # noqa: E402
from edgelite_convert import prelu as prelu_mod  # noqa: E402
from edgelite_convert.onnx_import import import_onnx  # noqa: E402

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


def _dwconv_form(x, alpha, lo, hi, *, relu, leaky_relu):
    """The measured alternative: the per-channel MUL as a 1x1 DEPTHWISE_CONV_2D (per-channel weights)."""
    a = np.asarray(alpha, np.float32).reshape(-1)
    if lo == hi or len(x.shape) != 4 or a.size != x.shape[-1]:
        return prelu_mod.prelu_identity(x, alpha, lo, hi, relu=relu, leaky_relu=leaky_relu)

    def dw(t, w):
        return tf.nn.depthwise_conv2d(t, np.asarray(w, np.float32).reshape(1, 1, -1, 1), [1, 1, 1, 1], "VALID")
    if hi <= 1.0:
        return x + relu(dw(x, a - 1.0)), "x + relu(dw1x1(x, α-1))"
    return x + dw(relu(x * np.float32(-1.0)), 1.0 - a), "x + dw1x1(relu(-x), 1-α)"


def _untiled_form(x, alpha, lo, hi, *, relu, leaky_relu):
    return prelu_mod.prelu_identity(x, alpha, lo, hi, relu=relu, leaky_relu=leaky_relu, tile=False)


def _no_prelu(x, alpha, lo, hi, *, relu, leaky_relu):
    return x, "deleted (floor reference, not a valid model)"


@contextlib.contextmanager
def prelu_form(fn):
    """Import with another PReLU form (the importer calls ``onnx_ops.prelu_identity``)."""
    saved = onnx_ops.prelu_identity
    onnx_ops.prelu_identity = fn
    try:
        yield
    finally:
        onnx_ops.prelu_identity = saved


def to_tflite(imported, calib: list[np.ndarray] | None) -> bytes:
    """Float TFLite (``calib=None``) or full-int8 with int8 I/O, with edgelite's int8 flatbuffer rewrites."""
    from edgelite_convert.tflite_rewrite import rewrite_for_xnnpack

    conv = tf.lite.TFLiteConverter.from_concrete_functions([imported.concrete_function()], imported)
    if calib is None:
        return conv.convert()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x] for x in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return rewrite_for_xnnpack(conv.convert())[0]


class _Runner:
    def __init__(self, content: bytes, x: np.ndarray, threads: int):
        self.it = Interpreter(model_content=content, num_threads=threads)
        self.it.allocate_tensors()
        d = self.it.get_input_details()[0]
        if d["dtype"] != np.float32:
            s, z = d["quantization"]
            x = np.clip(np.round(x / s + z), -128, 127).astype(d["dtype"])
        self.it.set_tensor(d["index"], x)
        self.out = self.it.get_output_details()[0]
        for _ in range(5):  # warm-up: XNNPACK packs weights on the first invoke
            self.it.invoke()

    def output(self) -> np.ndarray:
        self.it.invoke()
        y = self.it.get_tensor(self.out["index"]).astype(np.float32)
        if self.out["dtype"] != np.float32:
            s, z = self.out["quantization"]
            y = (y - z) * s
        return y

    def median_ms(self, runs: int, clock) -> float:
        times = []
        for _ in range(runs):
            t0 = clock()
            self.it.invoke()
            times.append(clock() - t0)
        return float(np.median(times)) * 1e3


def op_counts(content: bytes) -> dict[str, int]:
    it = Interpreter(model_content=content)
    counts: dict[str, int] = {}
    for op in it._get_ops_details():  # no public op listing in the interpreter API
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


BEFORE, CHOSEN = "int8 rewrite, [1,1,1,C] const", "int8 rewrite (chosen)"

#: (H=W, C) of SFace's PReLU activations, largest first.
SFACE_SHAPES = [(112, 32), (112, 64), (56, 64), (56, 128), (28, 128), (28, 256), (14, 256), (14, 512), (7, 512),
                (7, 1024)]


def _one_op(fn, s: int, c: int, rng) -> bytes:
    spec = tf.TensorSpec((1, s, s, c), tf.float32)
    cf = tf.function(fn, input_signature=[spec], autograph=False).get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.normal(0, 1, (1, s, s, c)).astype(np.float32)] for _ in range(4))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def per_shape(threads: int, runs: int, repeats: int, clock) -> list[dict]:
    """The per-channel multiply alone, per SFace shape: how each int8 op form costs (one-op models)."""
    rng = np.random.default_rng(0)
    rows = []
    for s, c in SFACE_SHAPES:
        k = rng.uniform(-1.8, 0, c).astype(np.float32)
        forms = {
            "MUL [1,1,1,C]": lambda x: tf.nn.relu(x * k.reshape(1, 1, 1, c)),
            "MUL [1,1,W,C]": lambda x: tf.nn.relu(x * np.tile(k.reshape(1, 1, 1, c), (1, 1, s, 1))),
            "DEPTHWISE 1x1": lambda x: tf.nn.relu(tf.nn.depthwise_conv2d(x, k.reshape(1, 1, c, 1), [1] * 4, "VALID")),
            "MUL by scalar": lambda x: tf.nn.relu(x * np.float32(-1.0)),
        }
        x = rng.uniform(-3, 3, (1, s, s, c)).astype(np.float32)
        runners = {name: _Runner(_one_op(fn, s, c, rng), x, threads) for name, fn in forms.items()}
        ts: dict[str, list[float]] = {n: [] for n in runners}
        for _ in range(repeats):
            for n, r in runners.items():
                ts[n].append(r.median_ms(runs, clock))
        base = np.array(ts["MUL [1,1,1,C]"])
        row = {"shape": f"{s}x{s}x{c}"}
        for n, v in ts.items():
            row[n] = {"ms": float(np.median(v)), "ratio": float(np.median(np.array(v) / base))}
        rows.append(row)
        print(f"{row['shape']:>11s}: " + "  ".join(f"{n} {row[n]['ms']:.4f} ms (x{row[n]['ratio']:.2f})"
                                                 for n in forms), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", help="benchmark this ONNX model instead of the synthetic SFace-shaped one")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50, help="timed invokes per measurement")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved measurements per variant")
    ap.add_argument("--calib", type=int, default=16, help="random calibration samples")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="wall time, or CPU time of the invoking thread (use with --threads 1)")
    ap.add_argument("--per-shape", action="store_true",
                    help="also time the per-channel multiply alone at each SFace shape, per op form")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--device-id", default=None)
    args = ap.parse_args(argv)

    model = onnx.load(args.onnx) if args.onnx else sface_shaped_model()
    label = Path(args.onnx).stem if args.onnx else "sface_shaped"
    shapes = None
    if args.onnx:  # fix a dynamic batch to 1
        inp = model.graph.input[0]
        dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        shapes = {inp.name: dims}
    rng = np.random.default_rng(0)
    rewritten = import_onnx(model, input_shapes=shapes)
    shape = rewritten.tf_input_specs[0].shape.as_list()
    calib = [rng.uniform(0, 255, shape).astype(np.float32) for _ in range(args.calib)]
    x = rng.uniform(0, 255, shape).astype(np.float32)

    variants = {"float": to_tflite(rewritten, None),
                "int8 naive PRELU": to_tflite(import_onnx(model, input_shapes=shapes, prelu_rewrite=False), calib)}
    for name, form in ((BEFORE, _untiled_form), (CHOSEN, None), ("int8 MUL -> 1x1 depthwise", _dwconv_form),
                       ("int8 no PReLU (floor)", _no_prelu)):
        if form is None:
            variants[name] = to_tflite(rewritten, calib)
            continue
        with prelu_form(form):
            variants[name] = to_tflite(import_onnx(model, input_shapes=shapes), calib)

    runners = {k: _Runner(v, x, args.threads) for k, v in variants.items()}
    ref = runners[CHOSEN].output()
    rows = {}
    for name, content in variants.items():
        ops = op_counts(content)
        shown = {k: v for k, v in ops.items() if k in ("PRELU", "MUL", "ADD", "MAXIMUM", "DEPTHWISE_CONV_2D",
                                                     "RELU", "LEAKY_RELU", "TRANSPOSE")}
        diff = float(np.abs(runners[name].output() - ref).max() / max(float(np.abs(ref).max()), 1e-30))
        rows[name] = {"ops": shown, "size_bytes": len(content), "max_rel_diff_vs_chosen": diff}
        print(f"{name:30s} ops: {shown}  max|y - chosen|/max|chosen| {diff:.3g}")

    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):  # interleave so background load hits every variant alike
        for name, r in runners.items():
            times[name].append(r.median_ms(args.runs, clock))
    before = np.array(times[BEFORE])
    print(f"\nmedian latency ({args.clock} clock), num_threads={args.threads} ({args.repeats} x {args.runs} invokes):")
    for name, ts in times.items():
        rows[name].update(ms=float(np.median(ts)), ratio_to_before=float(np.median(np.array(ts) / before)))
        print(f"  {name:30s} {rows[name]['ms']:8.3f} ms   x{rows[name]['ratio_to_before']:.3f} vs before")

    shapes_rows = per_shape(args.threads, args.runs, args.repeats, clock) if args.per_shape else []

    sysrec = C.system_record()
    sysrec["device_id"] = args.device_id or C.device_id()
    rep = {"schema": C.SCHEMA, "kind": "prelu_forms", "system": sysrec, "model": label, "threads": args.threads,
           "clock": args.clock, "repeats": args.repeats, "runs": args.runs, "variants": rows,
           "per_shape": shapes_rows}
    out = C.results_dir(args.results_dir, args.device_id)
    stem = f"prelu_{label}_t{args.threads}_{args.clock}"
    C.write_json(out / f"{stem}.json", rep)
    table = C.md_table(["variant", "ms (median)", "vs before (median of per-round ratios)", "max abs diff / max abs of chosen",
                        "ops"], [[k, r["ms"], r["ratio_to_before"], r["max_rel_diff_vs_chosen"],
                                  ", ".join(f"{o} {n}" for o, n in r["ops"].items())] for k, r in rows.items()])
    if shapes_rows:
        names = [k for k in shapes_rows[0] if k != "shape"]
        table += ("\n\nThe per-channel multiply (fused RELU) alone, one-op int8 models, ms (ratio to "
                  "`MUL [1,1,1,C]`, median of per-round ratios):\n\n"
                  + C.md_table(["shape"] + names, [[r["shape"]] + [f"{r[n]['ms']:.4f} (x{r[n]['ratio']:.2f})"
                                                                   for n in names] for r in shapes_rows]))
    (out / f"{stem}.md").write_text(
        f"# int8 PReLU forms: {label}, {args.threads} thread(s), {args.clock} clock\n\n" + C.system_markdown(sysrec)
        + f"\n\n{args.repeats} interleaved rounds x {args.runs} invokes; random calibration ({args.calib} "
        "samples) and input - timing only, accuracy is measured by bench_ort_baseline.py.\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
