#!/usr/bin/env python3
"""Compare two benchmark result sets metric by metric and flag regressions.

``A`` is the reference (e.g. a board's committed result or its
``*.metrics.csv``), ``B`` the new run. Each argument is a result JSON written by
``bench_models.py`` / ``bench_pipeline.py``, a ``*.metrics.csv``, or a results
directory (all of its ``*.json``; a ``.metrics.csv`` is read only when no JSON
of the same name is there).

Every metric carries its direction: latencies and memory are ``better: lower``,
speed-up ratios ``better: higher``. A metric regresses when it moves the wrong
way by more than ``--tolerance`` (relative, default 0.15 = 15 %). Latencies
below ``--min-abs-ms`` of change are never flagged: a 0.02 ms stage moving to
0.03 ms is +50 % and means nothing.

Why 15 %: run-to-run noise of medians on an idle Pi is a few percent; thermal
throttling or a different governor moves them by 20-50 %, and that is exactly
what should be flagged. On a shared VM use a looser tolerance.

Exit code: 0 no regression, 1 at least one regression, 2 nothing comparable.

Example::

    python3 compare.py results/raspberrypi-aarch64/pipeline.json /tmp/new/pipeline.json
    python3 compare.py reference/pi5/ results/raspberrypi-aarch64/ --tolerance 0.10 --only pipeline/t4
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import sys
from pathlib import Path


def load(path: str | Path) -> tuple[dict, list[dict]]:
    """``(metrics, systems)`` from a JSON result, a metrics CSV or a directory of them."""
    p = Path(path)
    if p.is_dir():
        metrics, systems = {}, []
        jsons = sorted(p.glob("*.json"))
        stems = {j.stem for j in jsons}
        csvs = [c for c in sorted(p.glob("*.metrics.csv")) if c.name[: -len(".metrics.csv")] not in stems]
        for f in jsons + csvs:
            try:
                m, s = load(f)
            except ValueError:
                continue  # not a result file (e.g. some other JSON in the folder)
            metrics.update(m)
            systems += s
        if not metrics:
            raise ValueError(f"{p}: no result JSON / metrics CSV with metrics in this directory")
        return metrics, systems
    if not p.is_file():
        raise ValueError(f"{p}: no such file or directory")
    if p.suffix == ".csv":
        metrics = {}
        with open(p, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    metrics[row["metric"]] = {"value": float(row["value"]), "unit": row.get("unit", ""),
                                              "better": row.get("better") or "lower"}
                except (KeyError, ValueError) as e:
                    raise ValueError(f"{p}: bad row {row} ({e}); expected columns metric,value,unit,better") from e
        return metrics, []
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError(f"{p}: no 'metrics' table (not a device_tests result file)")
    return data["metrics"], [data.get("system") or {}]


def compare(a: dict, b: dict, tolerance: float, min_abs_ms: float) -> list[dict]:
    """One row per metric present in both: values, relative change and a status."""
    rows = []
    for k in sorted(set(a) & set(b)):
        va, vb = float(a[k]["value"]), float(b[k]["value"])
        better = b[k].get("better") or a[k].get("better") or "lower"
        unit = b[k].get("unit") or a[k].get("unit") or ""
        rel = (vb - va) / abs(va) if va else (0.0 if vb == va else float("inf"))
        worse = rel > tolerance if better == "lower" else rel < -tolerance
        better_now = rel < -tolerance if better == "lower" else rel > tolerance
        small = unit == "ms" and abs(vb - va) < min_abs_ms
        status = "ok"
        if worse and not small:
            status = "REGRESSION"
        elif better_now and not small:
            status = "improved"
        rows.append({"metric": k, "a": va, "b": vb, "unit": unit, "better": better, "change": rel, "status": status})
    return rows


def _describe(systems: list[dict]) -> str:
    s = next((x for x in systems if x), {})
    return f"{s.get('device_id', '?')} ({s.get('cpu_model', '?')}, {s.get('backend', '?')} " \
           f"{s.get('backend_version') or ''}, {s.get('timestamp', '?')})" if s else "(metrics file: no system record)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="reference: result JSON, metrics CSV or results directory")
    ap.add_argument("b", help="new run: result JSON, metrics CSV or results directory")
    ap.add_argument("--tolerance", type=float, default=0.15, help="relative change allowed (default 0.15)")
    ap.add_argument("--min-abs-ms", type=float, default=0.05,
                    help="ignore latency changes smaller than this many ms (default 0.05)")
    ap.add_argument("--only", action="append", help="glob on metric names (repeatable), e.g. 'pipeline/t4/*'")
    ap.add_argument("--all", action="store_true", help="print every metric, not only the flagged ones")
    ap.add_argument("--markdown", help="write the comparison table here as Markdown")
    args = ap.parse_args(argv)
    if args.tolerance < 0:
        ap.error("--tolerance must be >= 0")
    try:
        ma, sa = load(args.a)
        mb, sb = load(args.b)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.only:
        keep = lambda d: {k: v for k, v in d.items() if any(fnmatch.fnmatch(k, g) for g in args.only)}  # noqa: E731
        ma, mb = keep(ma), keep(mb)
    rows = compare(ma, mb, args.tolerance, args.min_abs_ms)
    print(f"A: {args.a} -- {_describe(sa)}")
    print(f"B: {args.b} -- {_describe(sb)}")
    if sa and sb and sa[0].get("device_id") != sb[0].get("device_id"):
        print("note: A and B come from different devices; differences are not regressions of the code alone")
    if not rows:
        print("error: no metric in common", file=sys.stderr)
        return 2
    only_a, only_b = sorted(set(ma) - set(mb)), sorted(set(mb) - set(ma))
    shown = rows if args.all else [r for r in rows if r["status"] != "ok"]
    w = max([len(r["metric"]) for r in shown] + [6])
    for r in shown:
        print(f"{r['metric']:<{w}}  {r['a']:10.3f} -> {r['b']:10.3f} {r['unit']:3s} {r['change']:+8.1%}  "
              f"{r['status']}")
    reg = [r for r in rows if r["status"] == "REGRESSION"]
    imp = [r for r in rows if r["status"] == "improved"]
    print(f"{len(rows)} metrics compared (tolerance {args.tolerance:.0%}): {len(reg)} regression(s), "
          f"{len(imp)} improvement(s); {len(only_a)} only in A, {len(only_b)} only in B")
    if args.markdown:
        lines = ["| metric | A | B | change | status |", "|---|---|---|---|---|"]
        lines += [f"| {r['metric']} | {r['a']:.3f} {r['unit']} | {r['b']:.3f} {r['unit']} | {r['change']:+.1%} | "
                  f"{r['status']} |" for r in (rows if args.all else shown)]
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 1 if reg else 0


if __name__ == "__main__":
    sys.exit(main())
