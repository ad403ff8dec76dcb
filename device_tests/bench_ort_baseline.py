#!/usr/bin/env python3
"""edgelite int8 vs onnxruntime's own static int8, on the zoo's SFace and YuNet, same data.

What a user would otherwise do with an ONNX model: ``onnxruntime.quantization.
quantize_static`` (QDQ, per-channel int8 weights, int8 activations, MinMax) and run
it with onnxruntime. This script does exactly that with the zoo's *own* calibration
samples (aligned face crops from the float pipeline for SFace; synthetic scenes for
YuNet) and compares, on held-out samples (ORL subjects s21..s40 for SFace, other
scenes for YuNet), against onnxruntime float:

* accuracy: cosine (per sample, mean and min; and over all samples) of onnxruntime
  int8 and of edgelite's zoo int8 model;
* latency: p50 of one inference, onnxruntime int8 / float and edgelite int8 / float,
  at each thread count, interleaved.

Needs the ``convert`` extra (onnxruntime, the zoo helpers) and the built zoo.

Usage::

    python device_tests/bench_ort_baseline.py                    # sface and yunet_320, threads 1,2
    python device_tests/bench_ort_baseline.py --models sface --threads 2

Writes ``results/<device-id>/ort_baseline.{json,md,metrics.csv}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _data(name: str):
    """(calibration, held-out) float32 NHWC arrays, as the zoo build makes them."""
    from edgelite import zoo
    from edgelite.face.detector import FaceDetector
    from edgelite.preprocess import PreprocessSpec
    from edgelite_convert import zoo as czoo

    if name == "sface":
        det = FaceDetector.from_model(zoo.require_model("yunet_320", "float32"))
        crops, _ = czoo.embedder_calibration(det, subjects=czoo.CALIB_SUBJECTS, flip=True, demo=False)
        held, _ = czoo.embedder_calibration(det, subjects=[f"s{i}" for i in range(21, 41)], flip=False, demo=False)
        f = lambda cs: np.stack([c.astype(np.float32) for c in cs])  # noqa: E731
        return f(crops), f(held)
    size = int(name.split("_")[1])
    spec = PreprocessSpec(size=(size, size), resize="letterbox", color="BGR", mean=0.0, std=1.0)
    calib = np.concatenate([spec.apply(s) for s in czoo.detector_calibration(size, n=140, seed=0)])
    held = np.concatenate([spec.apply(s) for s in czoo.detector_calibration(size, n=24, seed=7)])
    return calib, held


def _cos_rows(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    r = ref.reshape(len(ref), -1).astype(np.float64)
    g = got.reshape(len(got), -1).astype(np.float64)
    return (r * g).sum(1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1), 1e-30)


def run_model(name: str, threads: list[int], seconds: float) -> dict:
    import onnxruntime as ort

    import edgelite
    from edgelite import zoo
    from edgelite_convert.convert import _onnx_with_shapes_bytes
    from edgelite_convert.ort_baseline import onnxruntime_int8_baseline
    from edgelite_convert.sources import SOURCE_MODELS, fetch_sources

    calib, held = _data(name)
    src_key = "sface" if name == "sface" else "yunet"
    src = fetch_sources()[src_key]
    in_name = "data" if name == "sface" else "input"
    shape = [1, 3, calib.shape[1], calib.shape[2]]
    onnx_bytes = _onnx_with_shapes_bytes(Path(src), {in_name: shape})
    base = onnxruntime_int8_baseline(onnx_bytes, {in_name: calib}, {in_name: held}, {in_name: "NHWC"})
    # edgelite int8 vs onnxruntime float on the same held-out samples (per output, by name)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    fsess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
    q = edgelite.Model(zoo.model_path(name, "int8"), num_threads=1)
    ours: dict[str, list] = {}
    refs: dict[str, list] = {}
    for i in range(len(held)):
        x = held[i:i + 1]
        r = dict(zip([o.name for o in fsess.get_outputs()], fsess.run(None, {in_name: x.transpose(0, 3, 1, 2)})))
        g = q.run(x)
        for k, v in r.items():
            refs.setdefault(k, []).append(v)
            ours.setdefault(k, []).append(g[k].reshape(v.shape))
    edge = {}
    for k in refs:
        rr, gg = np.concatenate(refs[k]), np.concatenate(ours[k])
        cr = _cos_rows(rr, gg)
        edge[k] = {"cosine_mean": float(cr.mean()), "cosine_min": float(cr.min()),
                   "cosine_global": float((rr * gg).sum() / (np.linalg.norm(rr) * np.linalg.norm(gg)))}
    row = {"model": name, "calibration_samples": len(calib), "held_out_samples": len(held),
           "onnxruntime_int8": {k: {m: v[m] for m in ("cosine_mean", "cosine_min", "cosine_global", "snr_db")}
                                for k, v in base.get("outputs", {}).items()} if "outputs" in base else base,
           "edgelite_int8": edge, "latency": {}}
    # latency, interleaved: onnxruntime float / int8 vs edgelite float / int8
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class R(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(calib):
                    return None
                self.i += 1
                return {in_name: calib[self.i - 1:self.i].transpose(0, 3, 1, 2)}

        import onnx
        from onnx import version_converter

        fp, qp = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        fm = onnx.load_from_string(onnx_bytes)
        if next((o.version for o in fm.opset_import if o.domain in ("", "ai.onnx")), 0) < 13:
            fm = version_converter.convert_version(fm, 13)  # per-channel QDQ needs opset 13
        onnx.save(fm, str(fp))
        quantize_static(str(fp), str(qp), R(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        x = held[:1]
        for t in threads:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.intra_op_num_threads = t
            runners = {
                "onnxruntime_float32": (ort.InferenceSession(str(fp), so, providers=["CPUExecutionProvider"]), None),
                "onnxruntime_int8": (ort.InferenceSession(str(qp), so, providers=["CPUExecutionProvider"]), None),
                "edgelite_float32": (None, edgelite.Model(zoo.model_path(name, "float32"), num_threads=t)),
                "edgelite_int8": (None, edgelite.Model(zoo.model_path(name, "int8"), num_threads=t)),
            }
            xo = x.transpose(0, 3, 1, 2)
            feeds = {k: (xo if s is not None else m._prepare(m.inputs[0], x, True)) for k, (s, m) in runners.items()}
            times = {k: [] for k in runners}
            for k, (s, m) in runners.items():
                for _ in range(3):
                    s.run(None, {in_name: feeds[k]}) if s is not None else m.run(feeds[k], dequantize=False)
            t_end = time.perf_counter() + seconds * len(runners)
            rounds = 0
            while time.perf_counter() < t_end or rounds < 10:
                for k, (s, m) in runners.items():
                    t0 = time.perf_counter()
                    s.run(None, {in_name: feeds[k]}) if s is not None else m.run(feeds[k], dequantize=False)
                    times[k].append((time.perf_counter() - t0) * 1e3)
                rounds += 1
            row["latency"][str(t)] = {k: round(float(np.median(v)), 3) for k, v in times.items()}
    return row


def to_markdown(rep: dict) -> str:
    rows = []
    for r in rep["results"]:
        if "error" in r:
            rows.append([r["model"], r["error"], "", "", "", ""])
            continue
        o, e = r["onnxruntime_int8"], r["edgelite_int8"]
        outs = list(e)
        def fmt(d, k):
            v = d.get(k, {})
            return f"{v.get('cosine_mean', float('nan')):.4f} / {v.get('cosine_min', float('nan')):.4f}"
        for k in outs:
            rows.append([r["model"], k, fmt(o, k) if isinstance(o, dict) and k in o else str(o)[:60], fmt(e, k),
                         r["held_out_samples"], r["calibration_samples"]])
    lat = []
    for r in rep["results"]:
        for t, d in (r.get("latency") or {}).items():
            lat.append([r["model"], t, d["onnxruntime_float32"], d["onnxruntime_int8"], d["edgelite_float32"],
                        d["edgelite_int8"]])
    return ("# edgelite int8 vs onnxruntime static int8 (same calibration, same held-out data)\n\n"
            + C.system_markdown(rep["system"]) + "\n\n"
            + C.md_table(["model", "output", "onnxruntime int8 cosine mean / min", "edgelite int8 cosine mean / min",
                          "held-out", "calibration"], rows)
            + "\n\nCosine of each int8 model against onnxruntime float, per sample.\n\n"
            + C.md_table(["model", "threads", "ORT float32 ms", "ORT int8 ms", "edgelite float32 ms",
                          "edgelite int8 ms"], lat) + "\n\np50 of one inference, the four interleaved.\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="sface,yunet_320")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--device-id", default=None)
    args = ap.parse_args(argv)
    threads = C.parse_threads(args.threads)
    results = []
    for name in args.models.split(","):
        try:
            r = run_model(name, threads, args.seconds)
        except Exception as e:  # noqa: BLE001
            r = {"model": name, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        results.append(r)
        print(name, {k: v for k, v in r.items() if k in ("onnxruntime_int8", "edgelite_int8", "latency", "error")},
              flush=True)
    metrics = {}
    for r in results:
        for k, v in (r.get("edgelite_int8") or {}).items():
            metrics[f"ort_baseline/{r['model']}/{k}/edgelite_cosine_mean"] = C.metric(v["cosine_mean"], "", "higher")
        o = r.get("onnxruntime_int8")
        if isinstance(o, dict):
            for k, v in o.items():
                if isinstance(v, dict) and "cosine_mean" in v:
                    metrics[f"ort_baseline/{r['model']}/{k}/ort_cosine_mean"] = C.metric(v["cosine_mean"], "", "higher")
    rep = {"schema": C.SCHEMA, "kind": "ort_baseline", "system": C.system_record([]), "results": results,
           "config": {"models": args.models, "threads": threads}, "metrics": metrics}
    out = C.results_dir(args.results_dir, args.device_id)
    C.write_json(out / "ort_baseline.json", rep)
    (out / "ort_baseline.md").write_text(to_markdown(rep))
    C.write_metrics_csv(out / "ort_baseline.metrics.csv", metrics)
    print(f"wrote {out / 'ort_baseline.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
