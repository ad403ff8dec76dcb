#!/usr/bin/env python3
"""What micro-batching buys per image: every zoo model at batch 1/2/4/8, 1 and 2 threads.

The zoo models are batch-polymorphic (their batch dimension is declared ``-1``
and proven at build time to give the outputs of N single runs), so
``edgelite.Model`` resizes its input to the batch it is given. This script
measures, per model, thread count and batch size, the median latency of one
``invoke`` and the resulting milliseconds per image, and the speed-up per image
over batch 1, all in one process, interleaving the batch sizes round by round so
that clock or thermal drift hits every batch size alike.

Inputs are random raw tensors (int8 codes for int8 models, N(0,1)·64+128 for
float ones): the figure is the interpreter's, without (de)quantization.

Usage::

    python3 device_tests/bench_model_batch.py                       # threads 1,2; batches 1,2,4,8
    python3 device_tests/bench_model_batch.py --threads 1,4 --batches 1,4,16 --seconds 3
    python3 device_tests/bench_model_batch.py --quick               # smoke run

Writes ``results/<device-id>/batch.{json,md,metrics.csv}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _inputs(model, batch: int, rng) -> list[np.ndarray]:
    out = []
    for s in model.inputs:
        shape = (batch,) + tuple(s.shape[1:])
        dt = np.dtype(s.dtype)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, info.max + 1, size=shape).astype(dt))
        else:
            out.append((rng.normal(0, 1, size=shape) * 64 + 128).astype(dt))
    return out


def bench_model(path: str, threads: int, batches: list[int], seconds: float, warmup: int = 2) -> dict:
    """Median latency per batch size, interleaved round by round."""
    import edgelite

    rng = np.random.default_rng(0)
    models = {}
    feeds = {}
    for b in batches:
        m = edgelite.Model(path, num_threads=threads)
        if b > 1 and m.inputs[0].shape_signature[0] != -1:
            return {"error": f"not batch-polymorphic (shape_signature {list(m.inputs[0].shape_signature)}); "
                             "rebuild the zoo with this edgelite"}
        feeds[b] = _inputs(m, b, rng)
        for _ in range(warmup):
            m.run(feeds[b], quantize=False, dequantize=False)
        models[b] = m
    times: dict[int, list[float]] = {b: [] for b in batches}
    t_end = time.perf_counter() + seconds * len(batches)
    rounds = 0
    while time.perf_counter() < t_end or rounds < 5:
        for b in batches:
            t0 = time.perf_counter()
            models[b].run(feeds[b], quantize=False, dequantize=False)
            times[b].append((time.perf_counter() - t0) * 1e3)
        rounds += 1
    res = {}
    base = None
    for b in batches:
        p50 = float(np.median(times[b]))
        per = p50 / b
        if b == batches[0]:
            base = per * (1 if batches[0] == 1 else 1)
        res[str(b)] = {"p50_ms": round(p50, 4), "per_image_ms": round(per, 4), "runs": len(times[b]),
                       "speedup_per_image_vs_first": round(base / per, 3) if base else None}
    return {"batches": res}


def to_markdown(rep: dict) -> str:
    batches = rep["config"]["batches"]
    header = ["model", "threads"] + [f"b{b} ms/img" for b in batches] + [f"b{b} gain" for b in batches[1:]]
    rows = []
    for r in rep["results"]:
        if "error" in r:
            rows.append([r["label"], r["threads"], r["error"]] + [""] * (len(header) - 3))
            continue
        bb = r["batches"]
        rows.append([r["label"], r["threads"]] + [f"{bb[str(b)]['per_image_ms']:.3f}" for b in batches]
                    + [f"{bb[str(b)]['speedup_per_image_vs_first']:.2f}x" for b in batches[1:]])
    return ("# Micro-batching: per-image latency by batch size\n\n" + C.system_markdown(rep["system"]) + "\n\n"
            + C.md_table(header, rows) + "\n\n`bN ms/img` = median latency of one batch-N invoke / N; "
            "`bN gain` = (batch-1 ms/img) / (batch-N ms/img). Raw random inputs, batch sizes interleaved.\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="extra .tflite files (batch-polymorphic)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per batch size")
    ap.add_argument("--zoo-models", default=None, help="comma-separated zoo names (default: all built)")
    ap.add_argument("--precisions", default=None)
    ap.add_argument("--no-zoo", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: 0.2 s per batch size, threads 1")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--device-id", default=None)
    args = ap.parse_args(argv)
    threads = [1] if args.quick else C.parse_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    seconds = 0.2 if args.quick else args.seconds
    models = []
    if not args.no_zoo:
        names = set(args.zoo_models.split(",")) if args.zoo_models else None
        precs = set(args.precisions.split(",")) if args.precisions else None
        models += [{"label": f"{e['name']}-{e['precision']}", **e} for e in C.zoo_entries(names, precs)]
    for f in args.models:
        models.append({"label": Path(f).stem, "name": Path(f).stem, "precision": "?", "path": str(Path(f).resolve())})
    if not models:
        print("no models: build the zoo (edgelite models build) or name .tflite files", file=sys.stderr)
        return 2
    results = []
    for m in models:
        for t in threads:
            r = bench_model(m["path"], t, batches, seconds)
            results.append({"label": m["label"], "name": m["name"], "precision": m["precision"], "threads": t, **r})
            if "error" in r:
                print(f"{m['label']} t{t}: {r['error']}", flush=True)
            else:
                print(f"{m['label']} t{t}: " + ", ".join(
                    f"b{b} {r['batches'][str(b)]['per_image_ms']:.3f} ms/img" for b in batches), flush=True)
    metrics = {}
    for r in results:
        for b, v in (r.get("batches") or {}).items():
            metrics[f"batch/{r['label']}/t{r['threads']}/b{b}/per_image_ms"] = C.metric(v["per_image_ms"])
    rep = {"schema": C.SCHEMA, "kind": "model_batch", "system": C.system_record(models), "results": results,
           "config": {"threads": threads, "batches": batches, "seconds": seconds}, "metrics": metrics}
    out = C.results_dir(args.results_dir, args.device_id)
    C.write_json(out / "model_batch.json", rep)
    (out / "model_batch.md").write_text(to_markdown(rep))
    C.write_metrics_csv(out / "model_batch.metrics.csv", metrics)
    print(f"wrote {out / 'batch.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
