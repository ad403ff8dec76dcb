#!/usr/bin/env python3
"""Per-op latency breakdown of a TFLite model on XNNPACK, by timing sub-graphs cut from it.

ai-edge-litert's Python API has no op profiler, so each operator is cut out into
a one-op model (its constant inputs kept, its activation inputs made graph
inputs) and timed with the same runtime, thread count and delegate. The sum over
ops is compared with the whole model: the difference is what the whole graph
saves (fusion across ops, no per-invoke overhead) or pays (partition boundaries).

Per op type and per "role" (e.g. SFace's PReLU rewrite: the MUL with fused RELU
and the ADD that follow each convolution) the share of the total is reported.

Usage::

    python device_tests/profile_ops.py                   # zoo sface-int8, 2 threads
    python device_tests/profile_ops.py model.tflite --threads 1 --top 15
    python device_tests/profile_ops.py --threads 1 --clock thread   # CPU time: steadier on a shared VM

Writes ``results/<device-id>/profile_<model>.{json,md}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _schema():
    from ai_edge_litert import schema_py_generated as s

    return s


def cut_op(model_bytes: bytes, index: int) -> bytes:
    """A model with only operator ``index`` of subgraph 0 (constants kept, activations as inputs)."""
    import copy

    import flatbuffers

    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    g = m.subgraphs[0]
    op = g.operators[index]
    keep = [int(i) for i in op.inputs if i >= 0] + [int(o) for o in op.outputs]
    remap = {}
    tensors = []
    for t in keep:
        if t in remap:
            continue
        remap[t] = len(tensors)
        tensors.append(copy.copy(g.tensors[t]))
    new_op = copy.copy(op)
    new_op.inputs = [remap[int(i)] if i >= 0 else -1 for i in op.inputs]
    new_op.outputs = [remap[int(o)] for o in op.outputs]
    is_const = {t: bool(m.buffers[g.tensors[t].buffer].data is not None
                        and len(m.buffers[g.tensors[t].buffer].data)) for t in keep}
    g.inputs = [remap[int(i)] for i in op.inputs if i >= 0 and not is_const[int(i)]]
    g.outputs = [remap[int(o)] for o in op.outputs]
    g.tensors = tensors
    g.operators = [new_op]
    m.subgraphs = [g]
    m.signatureDefs = []
    m.metadata = []
    b = flatbuffers.Builder(len(model_bytes) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _time(model_bytes: bytes, threads: int, runs: int, clock=time.perf_counter) -> float:
    import edgelite

    m = edgelite.Model(model_bytes, num_threads=threads)
    rng = np.random.default_rng(0)
    feeds = []
    for sp in m.inputs:
        dt = np.dtype(sp.dtype)
        feeds.append(rng.integers(-128, 128, sp.shape).astype(dt) if dt.kind in "iu"
                     else rng.normal(0, 1, sp.shape).astype(dt))
    itp = m.interpreter
    for sp, f in zip(m.inputs, feeds):
        itp.set_tensor(sp.index, f)
    for _ in range(3):
        itp.invoke()
    ts = []
    for _ in range(runs):
        t0 = clock()
        itp.invoke()
        ts.append(clock() - t0)
    return float(np.median(ts) * 1e3)


def _role(info, sg, op) -> str:
    """A finer label than the op type: conv kernel size, and the PReLU rewrite's MUL/ADD."""
    name = op.op_name
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = sg.tensors[op.inputs[1]]
        kh, kw = (w.shape[1], w.shape[2])
        return f"{name} {kh}x{kw}"
    if name in ("MUL", "ADD"):
        consts = [i for i in op.inputs if i >= 0 and sg.tensors[i].is_constant]
        if name == "MUL" and consts and len(sg.tensors[consts[0]].shape) >= 1 \
                and int(np.prod(sg.tensors[consts[0]].shape)) > 1:
            return "MUL by per-channel constant (PReLU rewrite: relu((a-1)x))"
        if name == "ADD" and not consts:
            return "ADD of two tensors (residual, or PReLU rewrite: x + ...)"
    return name


def profile(model_bytes: bytes, threads: int, runs: int, clock: str = "wall") -> dict:
    from edgelite._tflite import read_model_info

    clk = time.thread_time if clock == "thread" else time.perf_counter
    info = read_model_info(model_bytes)
    sg = info.subgraphs[0]
    rows = []
    for op in sg.operators:
        try:
            ms = _time(cut_op(model_bytes, op.index), threads, runs, clk)
        except Exception as e:  # noqa: BLE001 - an op that cannot run alone is reported, not fatal
            rows.append({"index": op.index, "op": op.op_name, "role": _role(info, sg, op), "error": str(e)[:200]})
            continue
        out = sg.tensors[op.outputs[0]]
        rows.append({"index": op.index, "op": op.op_name, "role": _role(info, sg, op), "ms": round(ms, 4),
                     "output": out.name, "output_shape": list(out.shape)})
    whole = _time(model_bytes, threads, runs, clk)
    ok = [r for r in rows if "ms" in r]
    total = sum(r["ms"] for r in ok)
    by_role: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for r in ok:
        by_role[r["role"]][0] += 1
        by_role[r["role"]][1] += r["ms"]
    return {"threads": threads, "clock": clock, "whole_model_ms": round(whole, 4), "sum_of_ops_ms": round(total, 4),
            "ops": rows, "by_role": {k: {"count": v[0], "ms": round(v[1], 4), "share": round(v[1] / total, 4)}
                                     for k, v in sorted(by_role.items(), key=lambda kv: -kv[1][1])}}


def to_markdown(label: str, rep: dict, sysrec: dict, top: int) -> str:
    rows = [[k, v["count"], f"{v['ms']:.3f}", f"{100 * v['share']:.1f} %"] for k, v in rep["by_role"].items()]
    ops = sorted([r for r in rep["ops"] if "ms" in r], key=lambda r: -r["ms"])[:top]
    rows2 = [[r["index"], r["role"], "x".join(map(str, r["output_shape"])), f"{r['ms']:.3f}"] for r in ops]
    clock = "" if rep.get("clock", "wall") == "wall" else ", CPU time of the invoking thread"
    return (f"# Per-op profile: {label}, {rep['threads']} thread(s){clock}\n\n" + C.system_markdown(sysrec) + "\n\n"
            f"Whole model {rep['whole_model_ms']:.3f} ms; sum of the ops timed one by one "
            f"{rep['sum_of_ops_ms']:.3f} ms.\n\n" + C.md_table(["op (role)", "count", "ms", "share"], rows)
            + f"\n\nTop {top} ops:\n\n" + C.md_table(["#", "op", "output", "ms"], rows2) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help=".tflite (default: the zoo's sface-int8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="wall time, or CPU time of the invoking thread: far less noisy on a shared machine, "
                         "meaningful with --threads 1 only")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--device-id", default=None)
    args = ap.parse_args(argv)
    if args.model:
        path = Path(args.model)
    else:
        from edgelite import zoo

        path = zoo.model_path("sface", "int8")
    if not path.is_file():
        print(f"no model {path}: build the zoo (edgelite models build) or name a .tflite", file=sys.stderr)
        return 2
    rep = profile(path.read_bytes(), args.threads, args.runs, args.clock)
    label = path.stem + ("" if args.clock == "wall" else f"_t{args.threads}_cpu")
    sysrec = C.system_record([{"label": label, "name": label, "precision": "", "path": str(path)}])
    out = C.results_dir(args.results_dir, args.device_id)
    C.write_json(out / f"profile_{label}.json", {"schema": C.SCHEMA, "kind": "profile", "system": sysrec,
                                                 "model": label, **rep})
    md = to_markdown(label, rep, sysrec, args.top)
    (out / f"profile_{label}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
