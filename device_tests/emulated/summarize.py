#!/usr/bin/env python3
"""Turn the emulated parity run's per-case JSON lines into ``parity.json`` + ``parity.md``.

Called by ``run.sh`` on the host after the tests ran in the arm64 rootfs. Only
agreement statistics are reported -- never timings: under qemu every
instruction is translated, so speed says nothing about a Raspberry Pi.

Usage: summarize.py OUT_DIR META_JSON REPORT_JSONL...   (one JSONL per emulated CPU model,
named ``report-<cpu>.jsonl``)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    out_dir, meta = Path(argv[0]), json.loads(Path(argv[1]).read_text())
    cases = []
    for f in argv[2:]:
        cpu = Path(f).stem.removeprefix("report-")
        for line in Path(f).read_text().splitlines():
            if line.strip():
                cases.append({"cpu": cpu, **json.loads(line)})
    rep = {"schema": "edgelite-emulated-parity/1", **meta, "cases": cases}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "parity.json").write_text(json.dumps(rep, indent=1) + "\n")

    rows = []
    for c in cases:
        outs = c["outputs"].values()
        if all("within_1" in o for o in outs):  # integer outputs: steps
            n = sum(o["n"] for o in outs)
            exact = sum(o["exact"] * o["n"] for o in outs) / n
            w1 = sum(o["within_1"] * o["n"] for o in outs) / n
            agree = f"{exact:.4%} exact, {w1:.4%} within ±1 step, max {max(o['max_steps'] for o in outs)} steps"
        else:
            n = sum(o["n"] for o in outs)
            exact = sum(o.get("exact", 0) * o["n"] for o in outs) / n
            worst = max(o["max_abs"] / o["scale"] if o["scale"] else 0 for o in outs)
            agree = f"{exact:.2%} bit-identical, max abs diff = {worst:.2e} x output scale"
        rows.append(f"| {c['cpu']} | {c['model']} | {c['threads']} | {n} | {agree} | "
                    f"{'pass' if c.get('ok') else 'FAIL'} |")
    md = [
        "# Emulated Raspberry Pi parity (qemu-user, arm64 Debian)",
        "",
        f"- date (UTC): {meta.get('timestamp')}",
        f"- host: {meta.get('host')}",
        f"- rootfs: Debian {meta.get('suite')} arm64, Python {meta.get('python')}, "
        f"runtime-only install: {meta.get('runtime')}",
        f"- emulator: {meta.get('qemu')}; CPU models: {', '.join(meta.get('cpus', []))}",
        f"- result: **{meta.get('result')}**; wall time of the whole script: {meta.get('total_s')} s "
        f"(rootfs {'reused from cache' if meta.get('rootfs_cached') else 'built in this run'})",
        "",
        "Raw outputs of each zoo model on the golden input, compared with the outputs the x86_64 "
        "workstation recorded at build time (tolerances in `device_tests/test_parity.py`). "
        "No timings: emulation speed says nothing about a Pi.",
        "",
        "| emulated CPU | model | threads | elements | agreement with the x86_64 golden | |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    (out_dir / "parity.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out_dir / 'parity.json'} and parity.md ({len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
