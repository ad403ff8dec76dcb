#!/usr/bin/env python3
"""Activation range methods (minmax / percentile / mse) and the precision suggestion, measured.

For each model, the same calibration samples and the same held-out samples:

* edgelite int8 with ``calibration_ranges`` = minmax, percentile, mse: cosine of the int8
  model vs the float TFLite model on the held-out samples (``cosine_min_over_outputs``:
  cosine over all samples at once, the worst output) and the per-sample mean of the worst
  output;
* onnxruntime static int8 (QDQ, per-channel, MinMax) vs onnxruntime float, same data;
* the precision suggestion on the minmax model (``suggest_precision=True``): the layers it
  keeps float, the held-out cosine with them float, and the latency ratio measured during
  the conversion.

Models: the torch-exported ONNX fixtures of ``tests/data/torch`` (random weights, synthetic
inputs: blocky images plus noise, 120 calibration / 32 held-out) and the zoo's SFace and
YuNet 320 sources (the zoo's own calibration data; held-out: ORL s21..s40 crops for SFace,
other synthetic scenes for YuNet, as ``bench_ort_baseline.py``).

Needs the ``convert`` extra; the zoo models need the sources (``edgelite zoo build`` or
``--source-dir``) and the float YuNet for SFace's crops.

Usage::

    python device_tests/bench_calibration_ranges.py                      # all models
    python device_tests/bench_calibration_ranges.py --models mobilenet_v3_small,sface

Writes ``results/<device-id>/calibration_ranges.{json,md,metrics.csv}``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TORCH = ROOT / "tests" / "data" / "torch"
METHODS = ("minmax", "percentile", "mse")


def _synthetic(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1.5, 1.5, (n, 4, 4, 3)).astype(np.float32)
    img = np.repeat(np.repeat(base, -(-size // 4), 1), -(-size // 4), 2)[:, :size, :size]
    return (img + rng.normal(0, 0.3, img.shape)).astype(np.float32)


def _model(name: str, source_dir: str | None):
    """(onnx path, input_shapes, calibration NHWC, held-out NHWC)."""
    if name == "sface":
        from bench_ort_baseline import _data

        from edgelite_convert.sources import fetch_sources

        calib, held = _data(name)
        return fetch_sources(source_dir)["sface"], {"data": [1, 3, 112, 112]}, calib, held
    if name.startswith("yunet_"):
        from edgelite.preprocess import PreprocessSpec
        from edgelite_convert import zoo as czoo
        from edgelite_convert.sources import fetch_sources

        size = int(name.split("_")[1])
        spec = PreprocessSpec(size=(size, size), resize="letterbox", color="BGR", mean=0.0, std=1.0)
        calib = np.concatenate([spec.apply(s) for s in czoo.detector_calibration(size, n=140, seed=0)])
        held = np.concatenate([spec.apply(s) for s in czoo.detector_calibration(size, n=24, seed=7)])
        return fetch_sources(source_dir)["yunet"], {"input": [1, 3, size, size]}, calib, held
    info = json.loads((TORCH / "fixtures.json").read_text())["models"][name]
    size = info["input_shape"][2]
    return TORCH / info["file"], None, _synthetic(120, size, 1), _synthetic(32, size, 5)


def _cos(v: dict) -> dict:
    outs = v["outputs"]
    worst = min(outs, key=lambda k: outs[k]["cosine_global"])
    return {"cosine_global_min": round(v["cosine_min_over_outputs"], 5),
            "cosine_mean_worst_output": round(outs[worst]["cosine_mean"], 5), "worst_output": worst}


def run_model(name: str, source_dir: str | None, methods=METHODS) -> dict:
    from edgelite_convert import ConvertOptions, convert

    src, shapes, calib, held = _model(name, source_dir)
    row: dict = {"model": name, "calibration_samples": len(calib), "held_out_samples": len(held), "methods": {}}
    for method in methods:
        t0 = time.perf_counter()
        opts = ConvertOptions(calibration_ranges=method, holdout=0, max_calibration_samples=len(calib),
                              onnxruntime_baseline=method == "minmax", suggest_precision=method == "minmax",
                              allow_collapsed=True)
        res = convert(src, calibration=[c[None] for c in calib], validation=[h[None] for h in held],
                      input_shapes=shapes, options=opts, progress=False)
        r = res.report
        row["methods"][method] = {**_cos(r["validation"]), "seconds": round(time.perf_counter() - t0, 1),
                                  "ranges": r.get("calibration_ranges")}
        if method == "minmax":
            b = r.get("onnxruntime_int8_baseline") or {}
            if "outputs" in b:
                outs = b["outputs"]
                worst = min(outs, key=lambda k: outs[k]["cosine_global"])
                row["onnxruntime_int8"] = {"cosine_global_min": round(b["cosine_min_over_outputs"], 5),
                                           "cosine_mean_worst_output": round(outs[worst]["cosine_mean"], 5),
                                           "worst_output": worst}
            else:
                row["onnxruntime_int8"] = b
            s = r.get("precision_suggestion") or {}
            row["suggestion"] = {k: s.get(k) for k in ("keep_float", "cosine_with_keep_float", "int8_cosine",
                                                       "validation_cosine_with_keep_float", "validation_cosine_int8",
                                                       "improves_held_out", "extra_quantizations",
                                                       "candidates_measured", "seconds", "measured")}
            row["suggestion"]["latency_ratio"] = (s.get("latency") or {}).get("slowdown")
        print(name, method, row["methods"][method], flush=True)
    return row


def to_markdown(rep: dict) -> str:
    rows, srows = [], []
    for r in rep["results"]:
        if "error" in r:
            rows.append([r["model"], r["error"], "", "", "", ""])
            continue
        m = r["methods"]
        o = r.get("onnxruntime_int8") or {}
        f = lambda d: f"{d['cosine_global_min']:.4f} / {d['cosine_mean_worst_output']:.4f}" if "cosine_global_min" in d \
            else str(d.get("skipped", "-"))[:40]  # noqa: E731
        g = lambda k: f(m[k]) if k in m else "-"  # noqa: E731
        rows.append([r["model"], g("minmax"), g("percentile"), g("mse"), f(o),
                     f"{r['calibration_samples']} / {r['held_out_samples']}"])
        s = r.get("suggestion") or {}
        srows.append([r["model"], ", ".join(s.get("keep_float") or []) or "none",
                      f"{s.get('validation_cosine_int8') or m.get('minmax', {}).get('cosine_global_min', 0):.4f}",
                      f"{s['validation_cosine_with_keep_float']:.4f}" if s.get("validation_cosine_with_keep_float")
                      else "-", s.get("latency_ratio") or "-", s.get("candidates_measured"), s.get("seconds")])
    return ("# int8 activation range methods vs onnxruntime static int8 (same calibration, same held-out data)\n\n"
            + C.system_markdown(rep["system"]) + "\n\n"
            + C.md_table(["model", "minmax", "percentile (99.99th of abs)", "mse", "onnxruntime int8 (QDQ, MinMax)",
                          "calibration / held-out"], rows)
            + "\n\nEach cell: cosine vs the model's own float on the held-out samples, over all samples at once "
              "for the worst output / per-sample mean of that output.\n\n"
            + C.md_table(["model", "suggested --keep-float", "int8 cosine", "cosine with them float",
                          "latency ratio", "layers measured", "search s"], srows)
            + "\n\nSuggestion searched on calibration samples, cosine measured on the held-out samples; latency "
              "ratio: p50 with the layers float / fully int8, measured during the conversion.\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mobilenet_v3_small,efficientnet_b0,resnet18,face_embedder_prelu,"
                                        "sface,yunet_320")
    ap.add_argument("--source-dir", default=None, help="directory with the zoo's two ONNX sources")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--device-id", default=None)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--merge", action="store_true",
                    help="update an existing result file (other models, and other methods of these models, kept)")
    args = ap.parse_args(argv)
    results = []
    for name in args.models.split(","):
        try:
            r = run_model(name, args.source_dir, tuple(args.methods.split(",")))
        except Exception as e:  # noqa: BLE001
            r = {"model": name, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            print(name, r["error"], flush=True)
        results.append(r)
    out = C.results_dir(args.results_dir, args.device_id)
    if args.merge and (out / "calibration_ranges.json").exists():
        old = json.loads((out / "calibration_ranges.json").read_text())["results"]
        new = {r["model"]: r for r in results}
        for r in old:
            if r["model"] in new and "methods" in r and "methods" in new[r["model"]]:
                new[r["model"]] = {**r, **new[r["model"]], "methods": {**r["methods"], **new[r["model"]]["methods"]}}
        results = [new.pop(r["model"], r) for r in old] + list(new.values())
    metrics = {}
    for r in results:
        for m, v in (r.get("methods") or {}).items():
            metrics[f"calibration_ranges/{r['model']}/{m}/cosine"] = C.metric(v["cosine_global_min"], "", "higher")
    rep = {"schema": C.SCHEMA, "kind": "calibration_ranges", "system": C.system_record([]), "results": results,
           "config": {"models": ",".join(r["model"] for r in results)}, "metrics": metrics}
    C.write_json(out / "calibration_ranges.json", rep)
    (out / "calibration_ranges.md").write_text(to_markdown(rep))
    C.write_metrics_csv(out / "calibration_ranges.metrics.csv", metrics)
    print(f"wrote {out / 'calibration_ranges.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
