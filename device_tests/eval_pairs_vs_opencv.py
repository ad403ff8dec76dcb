"""Verification accuracy of edgelite's int8 / float32 pipelines vs OpenCV's fp32
FaceDetectorYN + FaceRecognizerSF on the same LFW-format pairs, same 10-fold protocol.

    python device_tests/eval_pairs_vs_opencv.py                 # ORL s21..s40, 600 pairs
    python device_tests/eval_pairs_vs_opencv.py --pairs pairs.txt --root lfw/ --json out.json

Without --pairs, ORL subjects s21..s40 (never used for calibration) are written in
LFW layout (each tight 92x112 crop padded by half its size with black) and 10 folds
x (90 same + 90 different) pairs are drawn with a fixed seed (all 900 genuine
pairs of those subjects: 1,800 pairs, so one error is 0.056 points).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def opencv_embedder(onnx_dir: Path, threads: int):
    import cv2

    cv2.setNumThreads(threads)
    det = cv2.FaceDetectorYN.create(str(onnx_dir / "face_detection_yunet_2023mar.onnx"), "", (320, 320),
                                    0.6, 0.3, 5000)
    rec = cv2.FaceRecognizerSF.create(str(onnx_dir / "face_recognition_sface_2021dec.onnx"), "")

    def embed(path):
        img = cv2.imread(str(path))
        if img is None:
            return None
        det.setInputSize((img.shape[1], img.shape[0]))
        _, rows = det.detect(img)
        if rows is None or len(rows) == 0:
            return None
        row = max(rows, key=lambda r: r[2] * r[3])
        f = rec.feature(rec.alignCrop(img, row))[0]
        return f / np.linalg.norm(f)
    return embed


def edgelite_embedder(precision: str, threads: int):
    import edgelite
    from edgelite.face import FaceDetector, FaceEmbedder

    det = FaceDetector.from_zoo(precision, num_threads=threads)
    emb = FaceEmbedder.from_zoo(precision, num_threads=threads)

    def embed(path):
        try:
            img = edgelite.load_image(path)
        except edgelite.EdgeliteError:
            return None
        f = det.detect(img).largest()
        return None if f is None else emb.embed_faces(img, [f])[0]
    return embed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--pairs", help="LFW-format pairs file (default: ORL s21..s40)")
    ap.add_argument("--root", help="image root for --pairs")
    ap.add_argument("--onnx-dir", help="folder with the two source ONNX files (default: fetch/cache)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-fold", type=int, default=90,
                    help="ORL default set: same (and different) pairs per fold; 90 uses all 900 genuine pairs")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    from edgelite.face.pairs import evaluate_pairs, make_pairs, parse_pairs, write_lfw_layout

    tmp = None
    if a.pairs:
        pairs_file, root = Path(a.pairs), Path(a.root)
    else:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
        counts = write_lfw_layout(ROOT / "data/faces/orl", root, [f"s{i}" for i in range(21, 41)])
        pairs_file = root / "pairs.txt"
        pairs_file.write_text("\n".join(make_pairs(counts, per_fold=a.per_fold)) + "\n")
    if a.onnx_dir:
        onnx_dir = Path(a.onnx_dir)
    else:
        from edgelite_convert.sources import fetch_sources
        onnx_dir = fetch_sources()["yunet"].parent
    pairs = parse_pairs(pairs_file, root)
    results = {}
    for name, fn in (("opencv_fp32", opencv_embedder(onnx_dir, a.threads)),
                     ("edgelite_float32", edgelite_embedder("float32", a.threads)),
                     ("edgelite_int8", edgelite_embedder("int8", a.threads))):
        r = evaluate_pairs(pairs, fn)
        results[name] = {k: r[k] for k in ("accuracy", "std", "threshold", "pairs", "failed_detections")}
        print(f"{name:18s} accuracy {r['accuracy'] * 100:6.2f}% ± {r['std'] * 100:.2f}  threshold {r['threshold']:.3f}"
              f"  failed detections {r['failed_detections']}  ({r['pairs']} pairs)")
    d = (results["edgelite_int8"]["accuracy"] - results["opencv_fp32"]["accuracy"]) * 100
    print(f"int8 - OpenCV fp32: {d:+.2f} points (target: no worse than -0.15)")
    results["int8_minus_opencv_points"] = d
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
