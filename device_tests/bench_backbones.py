#!/usr/bin/env python3
"""int8 vs float32 on the common mobile backbones, converted by edgelite, measured in one run.

For each Keras application (random weights; BatchNorm statistics re-estimated on
synthetic images so activations are not degenerate), this script converts the
model with :func:`edgelite_convert.convert` (int8 + the float32 reference), then
measures in the same process, interleaving int8 and float32 round by round:

* p50 latency of each at every thread count, and the int8/float32 ratio (< 1 means
  int8 is faster);
* XNNPACK partitions (delegate nodes) and the ops XNNPACK leaves to the builtin
  kernels in the int8 model;
* int8-vs-float cosine and SNR on held-out synthetic images (``report["validation"]``);
* the rewrites the converter applied.

onnxruntime int8 is a baseline only where an ONNX version of the model exists;
the Keras applications have none here (no tf2onnx), so that column says so.

Needs the ``convert`` extra (TensorFlow). Usage::

    python device_tests/bench_backbones.py                         # the default set, threads 1,2
    python device_tests/bench_backbones.py --models MobileNetV3Small,EfficientNetB0 --threads 2
    python device_tests/bench_backbones.py --quick                 # MobileNetV3Small at 96 px, threads 2

Writes ``results/<device-id>/backbones.{json,md,metrics.csv}``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

DEFAULT = ["MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "NASNetMobile",
           "ResNet50", "DenseNet121"]
# keras.applications module holding preprocess_input for each model
_PRE = {"MobileNetV2": "mobilenet_v2", "MobileNetV3Small": "mobilenet_v3", "MobileNetV3Large": "mobilenet_v3",
        "EfficientNetB0": "efficientnet", "NASNetMobile": "nasnet", "ResNet50": "resnet50",
        "DenseNet121": "densenet", "ConvNeXtTiny": "convnext"}


def synthetic_images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random 'photos' in 0..255: low-resolution colour fields upsampled, plus texture."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        g = int(rng.integers(3, 9))
        base = rng.uniform(0, 255, (g, g, 3)).astype(np.float32)
        img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, rng.uniform(2, 25), (size, size, 3)).astype(np.float32)
        out[i] = np.clip(img, 0, 255)
    return out


def build_backbone(name: str, size: int, seed: int = 0):
    """Random-weight Keras application with BatchNorm statistics re-estimated on synthetic images."""
    import importlib

    import keras

    keras.utils.set_random_seed(seed)
    cls = getattr(keras.applications, name)
    kw = dict(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    model = cls(**kw)
    pre = importlib.import_module(f"keras.applications.{_PRE[name]}").preprocess_input
    x = pre(synthetic_images(32, size, seed + 1).copy())
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for l in bns:
        l.momentum = 0.0  # the moving statistics become this batch's statistics
    model(x, training=True)
    for l in bns:
        l.momentum = 0.99
    return model, pre


def partitions(model_bytes: bytes, threads: int) -> tuple[int, list[str]]:
    """XNNPACK delegate partitions and the op types left to builtin kernels."""
    import edgelite
    from edgelite.inspect import inspect_model

    m = edgelite.Model(model_bytes, num_threads=threads)
    ops = m.interpreter._get_ops_details()
    n = sum(1 for o in ops if o.get("op_name") == "DELEGATE")
    left = sorted({o.op_name for o in inspect_model(model_bytes).xnnpack_ops if not o.delegated})
    return n, left


def interleaved_p50(models: dict, threads: int, seconds: float) -> dict[str, float]:
    ms, feeds = C.models_with_feeds(models, threads, warmup=3)
    times = {k: [] for k in ms}
    t_end = time.perf_counter() + seconds * len(ms)
    rounds = 0
    while time.perf_counter() < t_end or rounds < 10:
        for k, m in ms.items():
            t0 = time.perf_counter()
            m.run(feeds[k], quantize=False, dequantize=False)
            times[k].append((time.perf_counter() - t0) * 1e3)
        rounds += 1
    return {k: float(np.median(v)) for k, v in times.items()}


def run_one(name: str, size: int, threads: list[int], seconds: float, n_calib: int, n_val: int,
            legacy: bool = True) -> dict:
    from edgelite_convert import ConvertOptions, convert

    t0 = time.perf_counter()
    model, pre = build_backbone(name, size)
    calib = pre(synthetic_images(n_calib, size, 100))
    val = pre(synthetic_images(n_val, size, 200))
    common = dict(max_calibration_samples=n_calib, holdout=0, allow_float_fallback=True, allow_collapsed=True)
    res = convert(model, calibration=[c[None] for c in calib], validation=[v[None] for v in val],
                  options=ConvertOptions(**common), progress=False)
    conv_s = time.perf_counter() - t0
    before = None
    if legacy:  # the same conversion without the int8 rewrites and the static batch: what users got before
        before = convert(model, calibration=[c[None] for c in calib], validation=[v[None] for v in val],
                         options=ConvertOptions(**common, xnnpack_rewrites=False, static_batch=False), progress=False)
    rep = res.report
    v = rep.get("validation") or {}
    out0 = next(iter((v.get("outputs") or {}).values()), {})
    row = {"model": name, "size": size, "fully_integer": rep["fully_integer"],
           "int8_bytes": len(res.model), "float32_bytes": len(res.float_model),
           "cosine": out0.get("cosine_global"), "snr_db": out0.get("snr_db"),
           "rewrites": rep.get("rewrites", []), "float_ops": rep.get("float_ops", []),
           "convert_seconds": round(conv_s, 1), "onnxruntime_int8": "n/a: no ONNX version (no tf2onnx here)",
           "threads": {}}
    parts, left = partitions(res.model, threads[-1])
    fparts, fleft = partitions(res.float_model, threads[-1])
    row.update({"int8_partitions": parts, "int8_not_delegated": left,
                "float32_partitions": fparts, "float32_not_delegated": fleft})
    if before is not None:
        bv = ((before.report.get("validation") or {}).get("outputs") or {})
        b0 = next(iter(bv.values()), {})
        bparts, bleft = partitions(before.model, threads[-1])
        row["before"] = {"int8_partitions": bparts, "int8_not_delegated": bleft, "cosine": b0.get("cosine_global")}
    for t in threads:
        models = {"int8": res.model, "float32": res.float_model}
        if before is not None:
            models["int8_before"] = before.model
        p = interleaved_p50(models, t, seconds)
        row["threads"][str(t)] = {"int8_p50_ms": round(p["int8"], 3), "float32_p50_ms": round(p["float32"], 3),
                                  "int8_over_float32": round(p["int8"] / p["float32"], 3)}
        if before is not None:
            row["threads"][str(t)].update({"int8_before_p50_ms": round(p["int8_before"], 3),
                                           "int8_before_over_float32": round(p["int8_before"] / p["float32"], 3)})
    return row


def to_markdown(rep: dict) -> str:
    threads = rep["config"]["threads"]
    legacy = any("before" in r for r in rep["results"])
    header = ["model", "px"]
    for t in threads:
        header += [f"float32 ms ({t}t)", f"int8 ms ({t}t)", f"int8/float ({t}t)"]
        if legacy:
            header += [f"before: int8/float ({t}t)"]
    header += ["cosine", "SNR dB", "XNNPACK partitions int8 (float)", "left to builtin kernels (int8)"]
    if legacy:
        header += ["before: partitions", "before: left to builtin kernels", "before: cosine"]
    header += ["onnxruntime int8"]
    rows = []
    for r in rep["results"]:
        if "error" in r:
            rows.append([r["model"], r.get("size", ""), r["error"]] + [""] * (len(header) - 3))
            continue
        row = [r["model"], r["size"]]
        for t in threads:
            d = r["threads"][str(t)]
            row += [f"{d['float32_p50_ms']:.2f}", f"{d['int8_p50_ms']:.2f}", f"**{d['int8_over_float32']:.2f}**"]
            if legacy:
                row += [f"{d['int8_before_over_float32']:.2f}" if "int8_before_over_float32" in d else "-"]
        row += [f"{r['cosine']:.4f}" if r["cosine"] is not None else "-",
                f"{r['snr_db']:.1f}" if r["snr_db"] is not None else "-",
                f"{r['int8_partitions']} ({r['float32_partitions']})", ", ".join(r["int8_not_delegated"]) or "none"]
        if legacy:
            b = r.get("before") or {}
            row += [b.get("int8_partitions", "-"), ", ".join(b.get("int8_not_delegated", [])) or "none",
                    f"{b['cosine']:.4f}" if b.get("cosine") is not None else "-"]
        row += ["n/a"]
        rows.append(row)
    return ("# Backbones: int8 vs float32 after edgelite's conversion\n\n" + C.system_markdown(rep["system"])
            + "\n\n" + C.md_table(header, rows)
            + "\n\nint8/float < 1: int8 is faster. Random weights, BatchNorm statistics re-estimated on synthetic "
              "images; cosine/SNR: int8 vs float32 logits on held-out synthetic images. int8 and float32 are "
              "interleaved round by round in one process.\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per precision and thread count")
    ap.add_argument("--calibration", type=int, default=64)
    ap.add_argument("--validation", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="MobileNetV3Small at 96 px, threads 2, short runs")
    ap.add_argument("--no-before", action="store_true",
                    help="skip the 'before' conversion (no int8 rewrites, variable batch) measured alongside")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--device-id", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    names = ["MobileNetV3Small"] if args.quick else args.models.split(",")
    size = 96 if args.quick else args.size
    threads = [2] if args.quick else C.parse_threads(args.threads)
    seconds = 0.5 if args.quick else args.seconds
    results = []
    for name in names:
        try:
            r = run_one(name, size, threads, seconds, 24 if args.quick else args.calibration,
                        8 if args.quick else args.validation, legacy=not args.no_before)
        except Exception as e:  # noqa: BLE001 - one broken backbone must not hide the others
            r = {"model": name, "size": size, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        results.append(r)
        if "error" in r:
            print(f"{name}: {r['error']}", flush=True)
        else:
            print(f"{name}: " + ", ".join(f"{t}t int8/float {r['threads'][str(t)]['int8_over_float32']:.2f}"
                                          f" (before {r['threads'][str(t)].get('int8_before_over_float32', '-')})"
                                          for t in threads)
                  + f", cosine {r['cosine']:.4f}, partitions {r['int8_partitions']}, "
                    f"not delegated {r['int8_not_delegated']}", flush=True)
    metrics = {}
    for r in results:
        for t, d in (r.get("threads") or {}).items():
            metrics[f"backbones/{r['model']}/t{t}/int8_over_float32"] = C.metric(d["int8_over_float32"], "x")
            metrics[f"backbones/{r['model']}/t{t}/int8_p50_ms"] = C.metric(d["int8_p50_ms"])
        if r.get("cosine") is not None:
            metrics[f"backbones/{r['model']}/cosine"] = C.metric(r["cosine"], "", "higher")
    rep = {"schema": C.SCHEMA, "kind": "backbones", "system": C.system_record([]), "results": results,
           "config": {"models": names, "size": size, "threads": threads, "seconds": seconds}, "metrics": metrics}
    out = C.results_dir(args.results_dir, args.device_id)
    C.write_json(out / "backbones.json", rep)
    (out / "backbones.md").write_text(to_markdown(rep))
    C.write_metrics_csv(out / "backbones.metrics.csv", metrics)
    print(f"wrote {out / 'backbones.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
