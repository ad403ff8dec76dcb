"""The main job (``make demo``): recognise astronauts on the ISS with int8 models.

    python demos/recognize_astronauts.py [--precision int8] [--out out/demo] [--threads 2]

1. builds the int8 face models (YuNet + SFace) into the cache if they are missing
   (fetches the two hash-pinned source models once, converts them);
2. enrols Andrew Morgan and Nick Hague from their NASA portraits into a fresh
   SQLite gallery;
3. identifies every face in the two ISS photos (5568x3712) and prints each face's
   name (or ``unknown``) with its score, and the per-stage latency;
4. writes annotated copies of the photos.

Photos: public-domain NASA imagery (see data/faces/README.md).
Uses only edgelite's public API.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "faces" / "demo"
ENROL = {"Andrew Morgan": "Andrew_Morgan.jpg", "Nick Hague": "Nick_Hague.jpg"}
SCENES = ["Morgan_and_Hague_ISS.jpg", "Andrew_Morgan_ISS.jpg"]


def ensure_models(precision: str) -> None:
    from edgelite import zoo

    # A model without its SHA-256 sidecar (built before integrity checks) counts as missing.
    missing = [n for n in zoo.ZOO_MODELS if not zoo.model_path(n, precision).is_file()
               or not zoo.sha256_sidecar(zoo.model_path(n, precision)).is_file()]
    if not missing:
        return
    print(f"building zoo models {missing} (first run only) ...", flush=True)
    try:
        from edgelite_convert.zoo import build_zoo
    except ImportError:
        sys.exit("the zoo models are missing and the converter is not installed: "
                 "pip install 'edgelite[convert]' && edgelite models build")
    build_zoo(progress=True, names=("yunet_320", "yunet_640", "sface"))


def annotate(image: np.ndarray, result, path: Path) -> None:
    import cv2

    img = np.ascontiguousarray(image[:, :, ::-1])  # RGB -> BGR for OpenCV drawing
    scale = max(1, round(max(img.shape[:2]) / 1000))
    for f in result.faces:
        x0, y0, x1, y1 = (int(round(v)) for v in f.face.box)
        color = (0, 200, 0) if f.is_known else (0, 0, 230)
        cv2.rectangle(img, (x0, y0), (x1, y1), color, 2 * scale)
        for (x, y) in f.face.landmarks:
            cv2.circle(img, (int(x), int(y)), 2 * scale, (255, 200, 0), -1)
        label = f"{f.name or 'unknown'} {f.score:.2f}"
        cv2.putText(img, label, (x0, max(0, y0 - 8 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, color,
                    2 * scale, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--precision", default="int8", choices=["int8", "float32"])
    ap.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder")
    ap.add_argument("--threads", type=int, default=None, help="interpreter threads (default min(cores, 4))")
    args = ap.parse_args(argv)

    import edgelite
    from edgelite.face.gallery import FaceGallery
    from edgelite.face.recognizer import FaceRecognizer, FaceRecognizerOptions

    ensure_models(args.precision)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "gallery.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)

    opts = FaceRecognizerOptions(precision=args.precision, num_threads=args.threads)
    with FaceGallery(db) as gallery, FaceRecognizer(gallery, opts) as rec:
        for name, file in ENROL.items():
            img = edgelite.load_image(DEMO / file)
            det = rec.detector.detect(img)
            face = det.largest()
            if face is None:
                print(f"no face found in {file}; cannot enrol {name}")
                return 1
            emb = rec.embedder.embed_faces(img, [face])
            gallery.enroll(name, emb, model_id=rec.embedder.model_id, source=file)
            print(f"enrolled {name:14s} from {file} (face {face.width:.0f}px, score {face.score:.2f})")
        print(f"gallery: {db} ({len(gallery)} people), threshold {gallery.threshold:.3f}, "
              f"embedder {rec.embedder.model_id}")
        for file in SCENES:
            t0 = time.perf_counter()
            img = edgelite.load_image(DEMO / file)
            t_decode = (time.perf_counter() - t0) * 1e3
            rec.recognize(img)  # warm-up: first call pays XNNPACK weight packing
            res = rec.recognize(img)
            print(f"\n{file} ({img.shape[1]}x{img.shape[0]}): {len(res)} face(s)")
            for f in sorted(res.faces, key=lambda f: f.face.box[0]):
                x0, y0, x1, y1 = f.face.box
                print(f"  {f.name or 'unknown':14s} score {f.score:.3f}   box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f})")
            t = res.timings
            print(f"  latency ms: decode {t_decode:.1f} | detect {t['detect']:.1f} | align {t['align']:.1f} | "
                  f"embed {t['embed']:.1f} | match {t['match']:.2f} | total (excl. decode) {t['total']:.1f}")
            dest = out / (Path(file).stem + "_annotated.jpg")
            annotate(img, res, dest)
            print(f"  annotated: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
