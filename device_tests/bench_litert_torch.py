#!/usr/bin/env python3
"""edgelite's PyTorch path (torch.onnx.export -> ONNX importer -> TF converter) vs litert-torch's
PT2E int8, on the same torch models, calibration samples and held-out inputs (issue 12, item 11).

The models are the four of ``tests/data/torch/make_torch_fixtures.py`` (MobileNetV3-Small-like,
ResNet18-like, EfficientNet-B0-like with random weights, a PReLU face embedder; same seeds,
BatchNorm statistics re-estimated). For each:

* **litert-torch**: ``to_channel_last_io`` (NHWC input, like edgelite's models),
  ``torch.export`` -> ``prepare_pt2e`` with litert-torch's ``PT2EQuantizer`` (its
  XNNPACKQuantizer-derived quantizer; static, per-channel symmetric int8 weights, int8
  activations with HistogramObserver) -> calibration -> ``convert_pt2e(fold_quantize=False)``
  -> ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))``, as its docs
  show. ``--quantizer xnnpack`` uses torchao's (deprecated, test-only) ``XNNPACKQuantizer``.
* **edgelite**: the committed ONNX fixture (what ``torch.onnx.export`` gave for the same model)
  converted exactly as ``tests/test_torch_fixtures.py`` does: ``convert(onnx,
  calibration=synthetic_nhwc(72, size, 1), options=ConvertOptions(holdout=12))``, i.e.
  calibrated on the first 60 samples. It runs in ``--edgelite-python`` (default: this
  interpreter), so the project's own venv can do it.

Both are calibrated on those same 60 samples and compared on 32 other held-out images
(``synthetic_nhwc(32, size, 2)``): cosine vs the float torch output (per sample: mean, min),
latency at ``--threads`` with ai-edge-litert + XNNPACK (median of per-round medians,
int8 models and edgelite's float32 TFLite interleaved round by round, order rotated),
op count, XNNPACK partitions (DELEGATE nodes) and delegated ops (``edgelite.inspect``),
fully integer or not (``edgelite.inspect``), and the I/O types.

Environment (litert-torch must NOT go into the project's .venv)::

    python3.11 -m venv /tmp/ltorch-venv
    /tmp/ltorch-venv/bin/pip install torch==2.13.0          # the CPU build; never a CUDA one
    /tmp/ltorch-venv/bin/pip install litert-torch==0.10.0 tensorflow-cpu==2.21.0 ai-edge-litert==2.3.0
    /tmp/ltorch-venv/bin/pip install onnx==1.23.2 onnxruntime==1.32.0 tqdm  # for --coexistence-check / --size

Run (from the repository root)::

    PYTHONPATH=sdk:converters /tmp/ltorch-venv/bin/python device_tests/bench_litert_torch.py \\
        --edgelite-python .venv/bin/python --coexistence-check

Add ``--size 224`` for the three backbones at a realistic resolution (edgelite then converts the
live module, so ``--edgelite-python`` must have torch: use the litert-torch venv itself, which
holds the same TensorFlow, onnx, onnxruntime and ai-edge-litert versions as the project's).
Without litert-torch it prints why and exits 0 (skipped). Writes
``results/<device-id>/litert_torch_<quantizer>_<size|fixture>.{json,md}``; the summary with the
install findings is ``results/vm-x86-64/litert_torch.md``. The committed results came from::

    B="PYTHONPATH=sdk:converters /tmp/ltorch-venv/bin/python device_tests/bench_litert_torch.py --device-id vm-x86-64"
    $B --coexistence-check --edgelite-python /work/main/.venv/bin/python --work-dir W --rounds 9
    $B --quantizer xnnpack --edgelite-python /work/main/.venv/bin/python --work-dir W --rounds 9 --reuse
    $B --size 224 --models mobilenet_v3_small,resnet18,efficientnet_b0 --rounds 21 --iters 40 --work-dir W224
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURES = ROOT / "tests" / "data" / "torch"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(FIXTURES))

N_CALIB, HOLDOUT, N_TEST = 72, 12, 32
NAMES = ["mobilenet_v3_small", "resnet18", "efficientnet_b0", "face_embedder_prelu"]


def synthetic_nhwc(n: int, size: int, seed: int) -> np.ndarray:
    """The calibration images of tests/test_torch_fixtures.py (same function, same seeds), (n, H, W, 3)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1.5, 1.5, (n, 4, 4, 3)).astype(np.float32)
    img = np.repeat(np.repeat(base, -(-size // 4), 1), -(-size // 4), 2)[:, :size, :size]
    return (img + rng.normal(0, 0.3, img.shape)).astype(np.float32)


def _size(name: str) -> int:
    return json.loads((FIXTURES / "fixtures.json").read_text())["models"][name]["input_shape"][2]


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


# -- edgelite (runs in --edgelite-python) ----------------------------------------------
def edgelite_worker(name: str, out: Path, size: int) -> int:
    """Convert the committed ONNX fixture as tests/test_torch_fixtures.py does (or, at another input
    size, the live module through edgelite's torch path: needs torch there); write models + summary."""
    from edgelite_convert import ConvertOptions, convert

    calib = [a[None] for a in synthetic_nhwc(N_CALIB, size, 1)]
    t0 = time.perf_counter()
    if size == _size(name):
        src, kw = FIXTURES / f"{name}.onnx", {}
    else:
        import make_torch_fixtures as fx
        import torch

        src, kw = fx.build(name)[0], {"example_inputs": (torch.zeros(1, 3, size, size),)}
    res = convert(src, calibration=calib, progress=False, options=ConvertOptions(holdout=HOLDOUT), **kw)
    dt = time.perf_counter() - t0
    (out / f"{name}_{size}.edgelite_int8.tflite").write_bytes(res.model)
    (out / f"{name}_{size}.edgelite_float32.tflite").write_bytes(res.float_model)
    rep = res.report
    (out / f"{name}_{size}.edgelite.json").write_text(json.dumps({
        "convert_s": round(dt, 1), "fully_integer": rep.get("fully_integer"),
        "validation": rep.get("validation"), "python": sys.executable,
        "versions": {d: _version(d) for d in ("tensorflow-cpu", "onnx", "ai-edge-litert", "numpy")}},
        default=str))
    return 0


def convert_edgelite(name: str, out: Path, python: str, size: int, reuse: bool) -> dict:
    if reuse and (out / f"{name}_{size}.edgelite.json").exists() and (out / f"{name}_{size}.edgelite_int8.tflite").exists():
        return json.loads((out / f"{name}_{size}.edgelite.json").read_text())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "sdk"), str(ROOT / "converters")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = subprocess.run([python, __file__, "--_edgelite-worker", name, str(out), str(size)], env=env,
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"edgelite conversion of {name} failed:\n{p.stderr[-3000:]}")
    return json.loads((out / f"{name}_{size}.edgelite.json").read_text())


# -- litert-torch ----------------------------------------------------------------------
def _quantizer(kind: str):
    if kind == "xnnpack":
        from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    else:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer as XNNPACKQuantizer
        from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config
    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))


def convert_litert(name: str, out: Path, quantizer: str, size: int) -> dict:
    import litert_torch
    import make_torch_fixtures as fx
    import torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    m, _ = fx.build(name)
    nhwc = litert_torch.to_channel_last_io(m, args=[0]).eval()
    calib = synthetic_nhwc(N_CALIB, size, 1)[: N_CALIB - HOLDOUT]  # edgelite's split: first 60
    sample = (torch.from_numpy(calib[:1]),)
    t0 = time.perf_counter()
    q = _quantizer(quantizer)
    pm = prepare_pt2e(torch.export.export(nhwc, sample).module(), q)
    with torch.no_grad():
        for a in calib:
            pm(torch.from_numpy(a[None]))
    pm = move_exported_model_to_eval(convert_pt2e(pm, fold_quantize=False))
    # QuantConfig only tells the converter the Q/DQ pairs are static (qdq_conversion_mode STATIC); it
    # reads ``global_config.is_dynamic``, which torchao's QuantizationConfig lacks, so the xnnpack
    # variant passes litert-torch's (same static config) for that flag only.
    flag = q if quantizer == "litert" else _quantizer("litert")
    edge = litert_torch.convert(pm, sample, quant_config=QuantConfig(pt2e_quantizer=flag))
    dt = time.perf_counter() - t0
    path = out / f"{name}_{size}.litert_{quantizer}_int8.tflite"
    edge.export(str(path))
    info = {"convert_s": round(dt, 1), "quantizer": quantizer}
    (out / f"{name}_{size}.litert_{quantizer}.json").write_text(json.dumps(info))
    return info


def torch_reference(name: str, x_nhwc: np.ndarray) -> np.ndarray:
    import make_torch_fixtures as fx
    import torch

    m, _ = fx.build(name)
    with torch.no_grad():
        return m(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


# -- measurements (ai-edge-litert + edgelite's public API) ------------------------------
def describe(model: bytes, threads: int) -> dict:
    import edgelite
    from edgelite.inspect import inspect_model

    rep = inspect_model(model)
    sg = rep.subgraphs[0]
    xo = rep.xnnpack_ops
    ops = edgelite.Model(model, num_threads=threads).interpreter._get_ops_details()
    hist = dict(sg.op_histogram)
    return {"ops": sg.num_operators, "op_histogram": hist,
            "partitions": sum(1 for o in ops if o.get("op_name") == "DELEGATE"),
            "delegated": sum(1 for o in xo if o.delegated), "xnnpack_ops_total": len(xo),
            "left_to_builtin": sorted({o.op_name for o in xo if not o.delegated}),
            "fully_integer": rep.fully_integer,
            "float_ops": len(rep.float_ops),
            "float_op_types": sorted({f.op_name for f in rep.float_ops}),
            "inner_quantize_dequantize": sum(1 for f in rep.float_ops if f.op_name in ("QUANTIZE", "DEQUANTIZE")),
            "io": {"inputs": [(t.dtype, list(t.shape)) for t in sg.inputs],
                   "outputs": [(t.dtype, list(t.shape)) for t in sg.outputs]},
            "bytes": rep.size_bytes}


def cosines(model: bytes, x: np.ndarray, ref: np.ndarray) -> dict:
    import edgelite

    m = edgelite.Model(model, num_threads=2)
    got = np.concatenate([next(iter(m.run(a[None]).values())).reshape(1, -1) for a in x])
    r = ref.reshape(len(ref), -1).astype(np.float64)
    g = got.astype(np.float64)
    c = (r * g).sum(1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1) + 1e-12)
    return {"cos_mean": round(float(c.mean()), 4), "cos_min": round(float(c.min()), 4)}


def interleaved(models: dict[str, bytes], threads: int, rounds: int, iters: int) -> dict:
    """Median over rounds of each model's per-round median latency (ms), rotating the order."""
    import _common as C

    ms, feeds = C.models_with_feeds(models, threads, warmup=5)
    keys = list(ms)
    per = {k: [] for k in keys}
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            t = []
            for _ in range(iters):
                t0 = time.perf_counter()
                ms[k].run(feeds[k], quantize=False, dequantize=False)
                t.append((time.perf_counter() - t0) * 1e3)
            per[k].append(float(np.median(t)))
    res = {k: {"p50_ms": round(float(np.median(v)), 3), "round_min_ms": round(min(v), 3),
               "round_max_ms": round(max(v), 3)} for k, v in per.items()}
    if "edgelite" in per:  # same-round ratios: robust to load that changes between rounds
        for k, v in per.items():
            if k != "edgelite":
                res[k]["over_edgelite_int8"] = round(float(np.median(np.array(v) / np.array(per["edgelite"]))), 2)
    return res


# -- environment ---------------------------------------------------------------------------
def environment() -> dict:
    import platform

    reqs = md.requires("litert-torch") or []
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "versions": {d: _version(d) for d in ("litert-torch", "litert-converter", "ai-edge-quantizer",
                                                   "ai-edge-litert", "torch", "torchao", "tensorflow-cpu",
                                                   "tensorflow", "tf-nightly", "numpy", "protobuf", "jax")},
            "litert_torch_requires": [r for r in reqs if any(k in r for k in ("torch", "litert", "tensorflow", "tf-",
                                                                               "quantizer", "jax"))]}


def coexistence_check(out: Path) -> dict:
    """tensorflow (pinned) + litert_torch + edgelite_convert in one process; edgelite converts a live module."""
    res = {}
    try:
        import tensorflow as tf

        import litert_torch  # noqa: F401

        res["tensorflow"] = tf.__version__
        res["import_both"] = "ok"
    except Exception as e:  # noqa: BLE001
        return {"import_both": f"failed: {type(e).__name__}: {e}"}
    try:
        import make_torch_fixtures as fx
        import torch
        from edgelite_convert import ConvertOptions, convert

        m, size = fx.build("face_embedder_prelu")
        calib = [a[None] for a in synthetic_nhwc(N_CALIB, size, 1)]
        r = convert(m, calibration=calib, example_inputs=(torch.zeros(1, 3, size, size),), progress=False,
                    options=ConvertOptions(holdout=HOLDOUT))
        res["edgelite_live_module_same_process"] = {"fully_integer": r.report["fully_integer"],
                                                    "cos_min_holdout": r.report["validation"].get(
                                                        "cosine_min_over_outputs")}
    except Exception as e:  # noqa: BLE001
        res["edgelite_live_module_same_process"] = f"failed: {type(e).__name__}: {e}"
    return res


# -- report ----------------------------------------------------------------------------------
def _io(d: dict) -> str:
    i, o = d["io"]["inputs"][0][0], d["io"]["outputs"][0][0]
    inner = d["inner_quantize_dequantize"]
    return f"{i} in / {o} out" + (f", {inner} inner Q/DQ" if inner else "")


def to_markdown(rep: dict) -> str:
    t = rep["config"]["threads"]
    env = rep["environment"]
    lines = [f"# litert-torch vs edgelite's torch path (int8), {rep['device']}", "",
             f"{rep['timestamp']}. Shared, noisy {env['cpus']}-core {env['machine']} VM; latency is the median of "
             f"{rep['config']['rounds']} interleaved rounds (each the median of {rep['config']['iters']} runs) at "
             f"{t} threads, ai-edge-litert {env['versions']['ai-edge-litert']} + XNNPACK; in brackets the range of "
             "the round medians; '÷ edgelite int8' is the median over rounds of the same-round ratio. "
             f"Cosine: int8 output vs the float torch model on {N_TEST} held-out images (mean / min per sample); both calibrated on the same "
             f"{N_CALIB - HOLDOUT} samples. litert-torch quantizer: `{rep['config']['quantizer']}`.", "",
             "| model | path | cos mean / min | p50 ms | ÷ edgelite int8 | ops | XNNPACK partitions | delegated ops | fully int8 | I/O | float op types |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["results"]:
        for key, label in (("edgelite", "edgelite (ONNX)"), ("litert", "litert-torch PT2E")):
            d = r.get(key)
            if not d or "error" in d:
                lines.append(f"| {r['name']} ({r['input'][1]} px) | {label} | failed: {(d or {}).get('error', '?')[:200]} | | | | | | | | |")
                continue
            lat = d["latency"]
            lines.append(f"| {r['name']} ({r['input'][1]} px) | {label} | {d['cos_mean']:.4f} / {d['cos_min']:.4f} | "
                         f"{lat['p50_ms']:.3f} [{lat['round_min_ms']:.3f}–{lat['round_max_ms']:.3f}] | "
                         f"{lat.get('over_edgelite_int8', 1.0):.2f} | {d['ops']} | "
                         f"{d['partitions']} | {d['delegated']}/{d['xnnpack_ops_total']} | "
                         f"{'yes' if d['fully_integer'] else 'no'} | {_io(d)} | "
                         f"{', '.join(d['float_op_types']) or '-'} |")
        if r.get("edgelite_float32"):
            f = r["edgelite_float32"]["latency"]
            lines.append(f"| {r['name']} ({r['input'][1]} px) | edgelite float32 (reference) | | {f['p50_ms']:.3f} "
                         f"[{f['round_min_ms']:.3f}–{f['round_max_ms']:.3f}] | {f.get('over_edgelite_int8', 0):.2f} "
                         "| | | | | | |")
    lines += ["", "Conversion wall time (s, same noisy machine): " + "; ".join(
        f"{r['name']} edgelite {r.get('edgelite', {}).get('convert_s', '-')}, litert-torch "
        f"{r.get('litert', {}).get('convert_s', '-')}" for r in rep["results"]), "",
              "## Environment", "",
              "```", json.dumps(env, indent=1), "```"]
    if rep.get("edgelite_env"):
        lines += ["", "edgelite conversions ran in: `" + json.dumps(rep["edgelite_env"]) + "`"]
    if rep.get("coexistence"):
        lines += ["", "## Coexistence with the pinned TensorFlow (one process)", "", "```",
                  json.dumps(rep["coexistence"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--_edgelite-worker", nargs=3, metavar=("NAME", "OUT", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--models", default=",".join(NAMES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--quantizer", choices=["litert", "xnnpack"], default="litert")
    ap.add_argument("--edgelite-python", default=sys.executable,
                    help="interpreter with edgelite_convert + tensorflow + onnx (the project's .venv)")
    ap.add_argument("--coexistence-check", action="store_true",
                    help="also import tensorflow + litert_torch + edgelite_convert in this process and convert "
                         "the PReLU net with edgelite's live torch path (needs onnx + onnxruntime here)")
    ap.add_argument("--size", type=int, default=None,
                    help="input size for the three backbones (default: the fixture's; the face embedder keeps 56). "
                         "Another size converts the live module with edgelite's torch path, so --edgelite-python "
                         "needs torch (the litert-torch venv, with onnx + onnxruntime, does)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the converted models already in --work-dir (to re-measure only)")
    ap.add_argument("--work-dir", default=None, help="where the .tflite files go (default: a temp dir)")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--device-id", default=None)
    args = ap.parse_args(argv)

    if args._edgelite_worker:
        w = args._edgelite_worker
        return edgelite_worker(w[0], Path(w[1]), int(w[2]))

    try:
        import litert_torch  # noqa: F401
        import torch  # noqa: F401
    except Exception as e:  # noqa: BLE001
        print(f"SKIPPED: litert-torch is not importable here ({type(e).__name__}: {e}). Create its own venv "
              "as the docstring of this script says (never in the project's .venv), then run it from there.")
        return 0
    import _common as C

    names = [n for n in args.models.split(",") if n]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="ltorch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rep = {"schema": C.SCHEMA, "device": args.device_id or C.device_id(),
           "timestamp": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "config": {"models": names, "threads": args.threads, "rounds": args.rounds, "iters": args.iters,
                      "quantizer": args.quantizer, "size": args.size, "edgelite_python": args.edgelite_python},
           "environment": environment(), "results": []}
    if args.coexistence_check:
        rep["coexistence"] = coexistence_check(work)
        print("coexistence:", rep["coexistence"], flush=True)
    for name in names:
        size = _size(name) if (args.size is None or name == "face_embedder_prelu") else args.size
        row = {"name": name, "input": [1, size, size, 3]}
        try:
            row["edgelite"] = convert_edgelite(name, work, args.edgelite_python, size, args.reuse)
            rep["edgelite_env"] = {"python": row["edgelite"].pop("python", None), **row["edgelite"].pop("versions", {})}
        except Exception as e:  # noqa: BLE001
            row["edgelite"] = {"error": str(e)}
        try:
            done = work / f"{name}_{size}.litert_{args.quantizer}.json"
            if args.reuse and done.exists() and (work / f"{name}_{size}.litert_{args.quantizer}_int8.tflite").exists():
                row["litert"] = json.loads(done.read_text())
            else:
                row["litert"] = convert_litert(name, work, args.quantizer, size)
        except Exception as e:  # noqa: BLE001
            row["litert"] = {"error": f"{type(e).__name__}: {e}"}
        x = synthetic_nhwc(N_TEST, size, 2)
        ref = torch_reference(name, x)
        models = {}
        for key, fname in (("edgelite", "edgelite_int8"), ("litert", f"litert_{args.quantizer}_int8")):
            p = work / f"{name}_{size}.{fname}.tflite"
            if "error" in row[key] or not p.exists():
                continue
            b = p.read_bytes()
            models[key] = b
            row[key].update(describe(b, args.threads))
            row[key].update(cosines(b, x, ref))
        fp = work / f"{name}_{size}.edgelite_float32.tflite"
        if fp.exists():
            models["edgelite_float32"] = fp.read_bytes()
            row["edgelite_float32"] = {}
        lat = interleaved(models, args.threads, args.rounds, args.iters)
        for k, v in lat.items():
            row[k]["latency"] = v
        rep["results"].append(row)
        print(name, {k: (row[k].get("latency"), row[k].get("cos_mean"), row[k].get("partitions"),
                         row[k].get("fully_integer")) for k in models}, flush=True)
    out = C.results_dir(args.results_dir, rep["device"])
    stem = f"litert_torch_{args.quantizer}_{args.size or 'fixture'}"
    (out / f"{stem}.json").write_text(json.dumps(rep, indent=1, default=str) + "\n")
    (out / f"{stem}.md").write_text(to_markdown(rep))
    print(f"wrote {out / stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
