#!/usr/bin/env python3
"""Benchmark every zoo model (int8 and float32) and any ``.tflite`` you name, at 1..N threads.

Per model and thread count: init time (parse + interpreter + XNNPACK delegate),
first inference (XNNPACK packs weights on the first call), then latency
mean/std/p50/p90/p99 and peak RSS -- all from ``edgelite.bench.benchmark``, with
random raw inputs (no (de)quantization), so the figure is the interpreter's.

Honest memory: peak RSS is a per-process high-water mark, so each
model/thread configuration runs in a **fresh subprocess** (this same script in
worker mode). The RSS reported includes Python + numpy + the LiteRT library
(``rss_before_mb`` is the peak before the interpreter is created, so the
model's own share is the difference). ``--in-process`` skips the subprocesses
(faster, for development) and then RSS is only an upper bound.

Usage (on the Pi, from a copy of ``device_tests/``)::

    python3 bench_models.py                      # zoo models, threads 1..min(cores, 4)
    python3 bench_models.py my_model.tflite --threads 1,4
    python3 bench_models.py --quick              # a smoke run: few runs, threads 1
    python3 bench_models.py --duration 30 --sustained sface-int8   # 30 min, thermal log

Writes ``results/<device-id>/models.{json,md,metrics.csv}`` and ``models_latency.png``
(``--results-dir`` to put them elsewhere, ``--json OUT`` for an extra copy).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _worker(path: str, threads: int, runs: int, min_seconds: float, warmup: int) -> dict:
    """Benchmark one configuration in this process and return a JSON-safe dict."""
    from edgelite.bench import benchmark

    before = C.peak_rss_mb()
    r = benchmark(path, num_threads=threads, runs=runs, min_seconds=min_seconds, warmup=warmup)
    d = r.to_dict()
    # benchmark() reports getrusage's ru_maxrss, inherited from the parent across
    # fork/exec on Linux; keep it for reference, report VmHWM (see _common.peak_rss_mb).
    d["ru_maxrss_mb"] = d["peak_rss_mb"]
    d["peak_rss_mb"] = C.peak_rss_mb()
    d["rss_before_mb"] = before
    return d


def _run_config(path: str, threads: int, args, in_process: bool) -> dict:
    if in_process:
        return _worker(path, threads, args.runs, args.min_seconds, args.warmup)
    cmd = [*C.python_cmd(), __file__, "--_worker", path, str(threads), str(args.runs), str(args.min_seconds),
           str(args.warmup)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if p.returncode != 0:
        raise RuntimeError(f"worker failed for {path} threads={threads}: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def collect_models(args) -> list[dict]:
    """Zoo models present (unless --no-zoo) + the files named on the command line."""
    out = []
    if not args.no_zoo:
        names = set(args.zoo_models.split(",")) if args.zoo_models else None
        precs = set(args.precisions.split(",")) if args.precisions else None
        for e in C.zoo_entries(names, precs):
            out.append({"label": f"{e['name']}-{e['precision']}", **e})
    for f in args.models:
        p = Path(f)
        if not p.is_file():
            raise SystemExit(f"no such model file: {f}")
        prec = "int8" if "int8" in p.stem else ("float32" if "float" in p.stem else "?")
        out.append({"label": p.stem, "name": p.stem, "precision": prec, "path": str(p.resolve())})
    return out


def build_report(models, results, sysrec, config, sustained=None) -> dict:
    metrics = {}
    for r in results:
        k = f"models/{r['label']}/t{r['num_threads']}"
        L = r["latency"]
        metrics[f"{k}/p50_ms"] = C.metric(L["p50"])
        metrics[f"{k}/p90_ms"] = C.metric(L["p90"])
        metrics[f"{k}/init_ms"] = C.metric(r["init_ms"])
        metrics[f"{k}/first_inference_ms"] = C.metric(r["first_inference_ms"])
        metrics[f"{k}/peak_rss_mb"] = C.metric(r["peak_rss_mb"], "MiB")
    # int8 speed-up over float32, same model, same threads, same run
    by = {(r["name"], r["precision"], r["num_threads"]): r for r in results}
    speedups = []
    for (name, prec, t), r in sorted(by.items()):
        f = by.get((name, "float32", t))
        if prec == "int8" and f:
            s = f["latency"]["p50"] / r["latency"]["p50"]
            speedups.append({"name": name, "threads": t, "int8_p50_ms": r["latency"]["p50"],
                             "float32_p50_ms": f["latency"]["p50"], "speedup": s})
            metrics[f"models/{name}/t{t}/int8_speedup_vs_float32"] = C.metric(s, "x", "higher")
    rep = {"schema": C.SCHEMA, "kind": "models", "system": sysrec, "config": config, "results": results,
           "int8_vs_float32": speedups, "metrics": metrics}
    if sustained:
        rep["sustained"] = sustained
        iv = sustained.get("intervals") or []
        if iv:
            metrics[f"sustained/{sustained['label']}/last_p50_ms"] = C.metric(iv[-1]["p50_ms"])
    return rep


def to_markdown(rep: dict, plots: list[str]) -> str:
    rows = []
    for r in rep["results"]:
        L = r["latency"]
        rows.append([r["label"], r["num_threads"], r["init_ms"], r["first_inference_ms"], L["mean"], L["std"],
                     L["p50"], L["p90"], L["p99"], L["count"], r["peak_rss_mb"], r.get("rss_before_mb")])
    parts = [
        f"# Model benchmarks -- {rep['system']['device_id']}",
        "",
        C.system_markdown(rep["system"]),
        "",
        "## Latency per model and thread count",
        "",
        "Random raw inputs, XNNPACK delegate, each configuration in a fresh process. Times in ms; "
        "RSS in MiB (peak of the whole process; `RSS before` = Python + numpy + edgelite before the "
        "interpreter exists).",
        "",
        C.md_table(["model", "threads", "init", "first", "mean", "std", "p50", "p90", "p99", "runs",
                    "peak RSS", "RSS before"], rows),
    ]
    if rep["int8_vs_float32"]:
        parts += ["", "## int8 vs float32 (p50, same run)", "",
                  C.md_table(["model", "threads", "int8 p50", "float32 p50", "float32 / int8"],
                             [[s["name"], s["threads"], s["int8_p50_ms"], s["float32_p50_ms"],
                               f"{s['speedup']:.2f}x"] for s in rep["int8_vs_float32"]])]
    if rep.get("sustained"):
        parts += ["", f"## Sustained run: {rep['sustained']['label']}", "",
                  C.sustained_markdown(rep["sustained"])]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    else:
        parts += ["", "_plots skipped: matplotlib is not installed (pip install matplotlib)_"]
    return "\n".join(parts) + "\n"


def plot_latency(plt, rep: dict, path: Path) -> Path | None:
    """One panel per model: p50 bars by thread count, int8 next to float32, p90 as whisker."""
    if plt is None or not rep["results"]:
        return None
    import numpy as np

    names = list(dict.fromkeys(r["name"] for r in rep["results"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names) + 0.6, 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        rs = [r for r in rep["results"] if r["name"] == name]
        threads = sorted({r["num_threads"] for r in rs})
        precs = list(dict.fromkeys(r["precision"] for r in rs))
        w = 0.8 / len(precs)
        x = np.arange(len(threads))
        for i, prec in enumerate(precs):
            vals, err = [], []
            for t in threads:
                r = next((r for r in rs if r["precision"] == prec and r["num_threads"] == t), None)
                vals.append(r["latency"]["p50"] if r else np.nan)
                err.append((r["latency"]["p90"] - r["latency"]["p50"]) if r else 0)
            bars = ax.bar(x + (i - (len(precs) - 1) / 2) * w, vals, w, yerr=[[0] * len(err), err], capsize=3,
                          label=prec)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, label_type="center", color="white")
        ax.set_xticks(x, [f"{t} thr" for t in threads])
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("p50 latency (ms), whisker = p90")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Model latency -- {rep['system']['device_id']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="extra .tflite files to benchmark")
    ap.add_argument("--threads", help="thread counts, e.g. 1,2,4 or 1-4 (default 1..min(cores, 4))")
    ap.add_argument("--quick", action="store_true", help="smoke run: 5 runs / 0.1 s, threads 1 unless --threads")
    ap.add_argument("--runs", type=int, default=50, help="minimum timed runs (default 50)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="minimum timed seconds (default 2)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-zoo", action="store_true", help="only the files given on the command line")
    ap.add_argument("--zoo-models", help="comma list of zoo names (default all present)")
    ap.add_argument("--precisions", help="comma list: int8,float32 (default both)")
    ap.add_argument("--in-process", action="store_true", help="no subprocess per configuration (RSS not isolated)")
    ap.add_argument("--duration", type=float, default=0.0, help="then run one model continuously for MIN minutes")
    ap.add_argument("--interval", type=float, default=10.0, help="sustained-mode log interval in seconds")
    ap.add_argument("--sustained", help="label of the model for --duration (default: first int8 model)")
    ap.add_argument("--json", help="also write the JSON result here")
    ap.add_argument("--results-dir", help="base directory (default device_tests/results)")
    ap.add_argument("--device-id", help="override the hostname-derived device id")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per configuration subprocess")
    ap.add_argument("--_worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        path, t, runs, mins, warm = args._worker
        print(json.dumps(_worker(path, int(t), int(runs), float(mins), int(warm))))
        return 0

    if args.quick:
        args.runs, args.min_seconds, args.warmup = 5, 0.1, 1
        if not args.threads:
            args.threads = "1"
    threads = C.parse_threads(args.threads)
    models = collect_models(args)
    if not models:
        print("no models: none of the zoo models is built here and no .tflite was given.\n"
              "Build them on a workstation (pip install 'edgelite[convert]' && edgelite models build) and copy "
              "~/.cache/edgelite/models here (or set EDGELITE_CACHE_DIR), or pass model files.", file=sys.stderr)
        return 2
    dev = args.device_id or C.device_id()
    sysrec = C.system_record(models, probe_model=models[0]["path"], num_threads=threads[-1])
    sysrec["device_id"] = dev
    out_dir = C.results_dir(args.results_dir, dev)

    results = []
    t0 = time.perf_counter()
    for m in models:
        for t in threads:
            r = _run_config(m["path"], t, args, args.in_process)
            r.update(label=m["label"], name=m["name"], precision=m["precision"])
            results.append(r)
            L = r["latency"]
            print(f"{m['label']:22s} t={t}  init {r['init_ms']:8.1f} ms  first {r['first_inference_ms']:8.1f} ms  "
                  f"p50 {L['p50']:8.2f}  p90 {L['p90']:8.2f}  p99 {L['p99']:8.2f} ms  RSS {r['peak_rss_mb']:.0f} MiB",
                  flush=True)

    sustained = None
    if args.duration > 0:
        import edgelite
        from edgelite.bench import random_inputs

        pick = next((m for m in models if m["label"] == args.sustained), None) if args.sustained else \
            next((m for m in models if m["precision"] == "int8"), models[0])
        if pick is None:
            raise SystemExit(f"--sustained {args.sustained!r} is not among {[m['label'] for m in models]}")
        model = edgelite.Model(pick["path"], num_threads=threads[-1])
        feed = random_inputs(model)

        def step():
            s = time.perf_counter()
            model.run(feed, quantize=False, dequantize=False)
            return (time.perf_counter() - s) * 1e3

        step()
        sustained = C.run_sustained(step, minutes=args.duration, interval_s=args.interval,
                                    label=f"{pick['label']}-t{threads[-1]}")

    config = {"threads": threads, "runs": args.runs, "min_seconds": args.min_seconds, "warmup": args.warmup,
              "quick": args.quick, "isolated_processes": not args.in_process, "duration_min": args.duration,
              "wall_s": round(time.perf_counter() - t0, 1), "argv": sys.argv[1:] if argv is None else list(argv)}
    rep = build_report(models, results, sysrec, config, sustained)
    plt = C.matplotlib_or_none()
    plots = []
    if plot_latency(plt, rep, out_dir / "models_latency.png"):
        plots.append("models_latency.png")
    if sustained and C.plot_sustained(plt, sustained, out_dir / "models_sustained.png",
                                      f"Sustained {sustained['label']} -- {dev}"):
        plots.append("models_sustained.png")
    rep["plots"] = plots
    C.write_json(out_dir / "models.json", rep)
    (out_dir / "models.md").write_text(to_markdown(rep, plots))
    C.write_metrics_csv(out_dir / "models.metrics.csv", rep["metrics"])
    if args.json:
        C.write_json(args.json, rep)
    print(f"wrote {out_dir}/models.json, models.md, models.metrics.csv" + (f", {', '.join(plots)}" if plots else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
