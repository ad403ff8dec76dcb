#!/usr/bin/env python3
"""Liveness (MiniFASNet): int8 vs the ONNX reference on real face crops, and the cost per face.

    python device_tests/liveness_agreement.py [--repeats 30] [--json out.json]

Faces (all real, none used for calibration):

* ``photos``: every face YuNet finds in the NASA photos of ``data/faces/demo``
  (6 faces in 5 photos), cropped from the whole photo;
* ``orl``: ORL subjects s21..s40 (the zoo calibrates liveness on s1..s20), one
  image each, pasted at 110 px onto a NASA background so the 2.7x/4x crops have
  context (grey faces on colour backgrounds: a synthetic, not a camera, scene);
* ``video``: every 3rd frame of ``demos/make_demo_video.py``'s video.

Reference: onnxruntime on the original ONNX files with the *same* crops
(``edgelite.face.liveness.liveness_crop``), so only the runtime and int8 differ.
Reported: mean/max |p_real(int8) - p_real(onnx)|, decision agreement at the
0.5 threshold, how many faces each judges real, and the median time per face
of ``FaceLivenessChecker.check`` (crop + both models) for int8 and float32,
interleaved, in this run. There is no spoof data here: this measures agreement
and cost, not attack detection.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "faces"


def _faces(det):
    import cv2

    import edgelite

    sets: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"photos": [], "orl": [], "video": []}
    photos = [edgelite.load_image(p) for p in sorted((DATA / "demo").glob("*")) if p.suffix in (".jpg", ".png")]
    for img in photos:
        for f in det.detect(img).faces:
            sets["photos"].append((img, f.box))
    rng = np.random.default_rng(1)
    for k in range(21, 41):
        src = photos[rng.integers(len(photos))]
        h, w = src.shape[:2]
        side = int(min(h, w) * 0.4)
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        canvas = cv2.resize(src[y:y + side, x:x + side], (320, 320), interpolation=cv2.INTER_AREA)
        face = cv2.resize(edgelite.load_image(DATA / "orl" / f"s{k}" / "1.pgm"), (110, 134))
        canvas[100:234, 105:215] = face
        r = det.detect(canvas)
        if len(r):
            sets["orl"].append((canvas, r.largest().box))
    try:
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "v.mp4"
            subprocess.run([sys.executable, str(ROOT / "demos" / "make_demo_video.py"), "--out", str(out)],
                           check=True, capture_output=True)
            cap = cv2.VideoCapture(str(out))
            i = 0
            while True:
                ok, fr = cap.read()
                if not ok:
                    break
                if i % 3 == 0:
                    rgb = cv2.cvtColor(fr, cv2.COLOR_BGR2RGB)
                    r = det.detect(rgb)
                    if len(r):
                        sets["video"].append((rgb, r.largest().box))
                i += 1
    except Exception as e:  # noqa: BLE001 - the video set is optional
        print(f"video set skipped: {e}", file=sys.stderr)
    return sets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30, help="timed passes over 10 faces per precision")
    ap.add_argument("--json", help="write the report here too")
    a = ap.parse_args(argv)

    import onnxruntime as ort

    from edgelite.face import FaceDetector, FaceLivenessChecker
    from edgelite.face.liveness import LIVENESS_MODELS, REAL_CLASS, liveness_crop
    from edgelite_convert.sources import liveness_sources

    det = FaceDetector.from_zoo()
    sets = _faces(det)
    checkers = {p: FaceLivenessChecker.from_zoo(p, num_threads=1) for p in ("int8", "float32")}
    srcs = liveness_sources()
    sess = {n: ort.InferenceSession(str(srcs[n]), providers=["CPUExecutionProvider"]) for n in LIVENESS_MODELS}

    def onnx_real(img, box) -> float:
        total = np.zeros(3)
        for n, scale in LIVENESS_MODELS.items():
            x = liveness_crop(img, box, scale)[..., ::-1].astype(np.float32).transpose(2, 0, 1)[None]
            logits = sess[n].run(None, {sess[n].get_inputs()[0].name: x})[0][0].astype(np.float64)
            e = np.exp(logits - logits.max())
            total += e / e.sum()
        return float(total[REAL_CLASS] / len(LIVENESS_MODELS))

    report: dict = {"sets": {}}
    for name, faces in sets.items():
        if not faces:
            continue
        ref = np.array([onnx_real(img, box) for img, box in faces])
        row = {"faces": len(faces), "onnx_real": int((ref >= 0.5).sum()),
               "onnx_p_real_min": round(float(ref.min()), 3)}
        for p, chk in checkers.items():
            got = np.array([chk.check(img, [box])[0].score for img, box in faces])
            d = np.abs(got - ref)
            row[p] = {"mean_abs_diff": round(float(d.mean()), 4), "max_abs_diff": round(float(d.max()), 4),
                      "decision_agreement": round(float(((got >= 0.5) == (ref >= 0.5)).mean()), 4),
                      "real": int((got >= 0.5).sum())}
        report["sets"][name] = row

    # cost per face: crop + both models, interleaved int8/float32, medians
    sample = (sets["photos"] + sets["orl"])[:10]
    times: dict[str, list[float]] = {p: [] for p in checkers}
    for chk in checkers.values():
        for img, box in sample[:2]:
            chk.check(img, [box])  # warm-up (XNNPACK weight packing)
    for _ in range(a.repeats):
        for p, chk in checkers.items():
            for img, box in sample:
                t0 = time.perf_counter()
                chk.check(img, [box])
                times[p].append((time.perf_counter() - t0) * 1e3)
    med = {p: statistics.median(v) for p, v in times.items()}
    report["ms_per_face_median"] = {p: round(v, 3) for p, v in med.items()}
    report["int8_speedup_vs_float32"] = round(med["float32"] / med["int8"], 2)
    report["note"] = ("1 thread; shared noisy 2-vCPU x86_64 VM; medians over "
                      f"{a.repeats} x {len(sample)} faces; crop + both MiniFASNets per face")
    print(json.dumps(report, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
