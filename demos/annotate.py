"""Batch annotation: a folder (or list) of images -> annotated copies + CSV + JSON of detections.

    python demos/annotate.py data/faces/demo --out out/annotate [--db gallery.sqlite] [--workers 2]
    python demos/annotate.py photos/a.jpg photos/b.png --out out/annotate --precision float32

For every image: faces with their box, detector score and five landmarks (right
eye, left eye, nose tip, right/left mouth corner), plus a name and cosine score
when ``--db`` names a gallery (e.g. one made with ``face_unlock.py --enroll`` or
``edgelite enroll``). Writes:

* ``OUT/images/<relative path>.jpg``: annotated copies (green = known,
  red = unknown or no gallery, landmarks as coloured dots);
* ``OUT/detections.csv``: one row per face (an image without faces gets one
  row with an empty face index, a bad file one row with its error);
* ``OUT/detections.json``: the same per image, with timings and a summary.

Folders are scanned (``--recursive`` for sub-folders) for image extensions;
files given by name are always tried. A bad file (not an image, empty,
truncated) is reported in the CSV/JSON with the error and in the summary line,
and skipped: it never stops the run.

Parallelism: ``--workers N`` runs N processes (``concurrent.futures``,
``spawn`` start method), each with its **own** detector/recognizer created by the
pool initializer. A TFLite interpreter is not re-entrant, so interpreters are
never shared across workers; ``spawn`` also means no native state (thread
pools, open interpreters) is inherited through ``fork``. With several workers
each interpreter gets one thread by default (throughput), with one worker
``min(cores, 4)`` (latency).

Uses only edgelite's public API. Photos: public-domain NASA imagery (see
data/faces/README.md).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
LANDMARK_COLORS = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255)]  # BGR, per landmark

CSV_FIELDS = ["file", "status", "error", "width", "height", "face", "name", "match_score", "det_score",
              "x_min", "y_min", "x_max", "y_max",
              "right_eye_x", "right_eye_y", "left_eye_x", "left_eye_y", "nose_tip_x", "nose_tip_y",
              "right_mouth_x", "right_mouth_y", "left_mouth_x", "left_mouth_y", "annotated"]

# ----------------------------------------------------------------------------- worker side
# One recognizer (or detector) per worker process, created by the pool initializer.
_WORKER: dict = {}


def init_worker(precision: str, threads: int | None, db: str | None, threshold: float | None) -> None:
    """Pool initializer: build this process's own models (loaded lazily on the first image)."""
    from edgelite.face import FaceDetector, FaceDetectorOptions, FaceGallery, FaceRecognizer, FaceRecognizerOptions

    if db:
        # Each process opens its own SQLite connection: WAL lets them all read at once.
        gallery = FaceGallery(db, create=False, threshold=threshold)
        _WORKER["rec"] = FaceRecognizer(gallery, FaceRecognizerOptions(precision=precision, threshold=threshold,
                                                                        num_threads=threads))
    else:
        _WORKER["det"] = FaceDetector(FaceDetectorOptions(precision=precision, num_threads=threads))


def process_image(path: str, out_path: str | None) -> dict:
    """Detect (and identify) the faces of one file; write the annotated copy. Never raises."""
    import edgelite

    rec = {"file": path, "status": "ok"}
    t0 = time.perf_counter()
    try:
        img = edgelite.load_image(path)
    except (edgelite.EdgeliteError, OSError) as e:
        return {**rec, "status": "error", "error": str(e)}
    t1 = time.perf_counter()
    try:
        if "rec" in _WORKER:
            res = _WORKER["rec"].recognize(img)
            faces = [{**_face_dict(f.face), "name": f.name, "match_score": round(float(f.score), 4)}
                     for f in res.faces]
        else:
            res = _WORKER["det"].detect(img)
            faces = [{**_face_dict(f), "name": None, "match_score": None} for f in res.faces]
        t2 = time.perf_counter()
        if out_path:
            draw(img, faces, Path(out_path), with_names="rec" in _WORKER)
        t3 = time.perf_counter()
    except edgelite.EdgeliteError as e:
        return {**rec, "status": "error", "error": str(e)}
    return {**rec, "width": int(img.shape[1]), "height": int(img.shape[0]), "faces": faces,
            "annotated": out_path,
            "timings_ms": {"decode": round((t1 - t0) * 1e3, 2), "faces": round((t2 - t1) * 1e3, 2),
                           "draw_and_save": round((t3 - t2) * 1e3, 2)}}


def _face_dict(face) -> dict:
    """Box/landmarks to 0.01 px and score to 1e-4: float32 noise would only bloat the JSON."""
    d = face.to_dict()
    return {"box": [round(v, 2) for v in d["box"]],
            "landmarks": [[round(x, 2), round(y, 2)] for x, y in d["landmarks"]], "score": round(d["score"], 4)}


def draw(image_rgb, faces: list[dict], dest: Path, with_names: bool) -> None:
    """Boxes, 5 landmarks and labels on a copy of the image, saved as JPEG."""
    import cv2
    import numpy as np

    img = np.ascontiguousarray(image_rgb[:, :, ::-1])  # RGB -> BGR: OpenCV draws and writes BGR
    s = max(1, round(max(img.shape[:2]) / 800))  # line width/font grow with the image
    for f in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in f["box"])
        color = (0, 200, 0) if f["name"] else (0, 0, 230)
        cv2.rectangle(img, (x0, y0), (x1, y1), color, 2 * s)
        for (x, y), c in zip(f["landmarks"], LANDMARK_COLORS):
            cv2.circle(img, (int(round(x)), int(round(y))), 2 * s, c, -1)
        label = f"{f['score']:.2f}"
        if with_names:
            label = f"{f['name'] or 'unknown'} {f['match_score']:.2f}"
        # Text sized by the face, not the photo: small faces in a big photo keep readable, non-overlapping labels.
        fs = max(0.4, min(0.5 * s, (x1 - x0) / 160))
        th = max(1, round(fs * 1.5))
        cv2.putText(img, label, (x0, max(int(12 * fs), y0 - 4 * th)), cv2.FONT_HERSHEY_SIMPLEX, fs, color, th,
                    cv2.LINE_AA)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dest), img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        import edgelite
        raise edgelite.ImageError(f"could not write {dest}")


# ----------------------------------------------------------------------------- main side


def collect(inputs: list[str], recursive: bool) -> tuple[list[tuple[Path, Path]], int]:
    """(file, output-relative path) pairs, and how many non-image files folders held."""
    items, ignored = [], 0
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            files = sorted(p.rglob("*") if recursive else p.iterdir())
            for f in files:
                if not f.is_file() or f.name.startswith("."):
                    continue
                if f.suffix.lower() in IMAGE_EXTS:
                    items.append((f, f.relative_to(p)))
                else:
                    ignored += 1
        else:
            items.append((p, Path(p.name)))  # a named file is always tried, whatever it holds
    return items, ignored


def output_names(items: list[tuple[Path, Path]], images_dir: Path) -> list[Path]:
    """``images/<relative path>.jpg``, made unique (a.png and a.jpg would collide)."""
    used, out = set(), []
    for _, rel in items:
        base = images_dir / rel.with_suffix("")
        cand, k = base.with_suffix(".jpg"), 1
        while cand in used:
            cand = base.with_name(f"{base.name}-{k}").with_suffix(".jpg")
            k += 1
        used.add(cand)
        out.append(cand)
    return out


def progress(total: int, disable: bool):
    """tqdm when installed; else a plain counter on stderr."""
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit="img", disable=disable, file=sys.stderr)
    except ImportError:
        class _Plain:
            def __init__(self):
                self.n = 0

            def update(self, k=1):
                self.n += k
                if not disable and (self.n == total or self.n % 10 == 0):
                    print(f"  {self.n}/{total} images", file=sys.stderr, flush=True)

            def close(self):
                pass
        return _Plain()


def run_pool(jobs: list[tuple[str, str]], workers: int, initargs: tuple, bar) -> dict[str, dict]:
    """Process ``jobs`` in ``workers`` processes; a dead worker never aborts the run.

    If a worker process dies (a native crash in a decoder, the OOM killer), the pool
    is broken and every pending job fails with BrokenProcessPool. Those are retried
    once in a fresh pool; what fails again is reported as an error.
    """
    results: dict[str, dict] = {}
    pending = list(jobs)
    for attempt in range(2):
        if not pending:
            break
        broken = []
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                                    initargs=initargs) as pool:
            futs = {pool.submit(process_image, src, dst): (src, dst) for src, dst in pending}
            for fut in cf.as_completed(futs):
                src, dst = futs[fut]
                try:
                    results[src] = fut.result()
                except cf.process.BrokenProcessPool:
                    broken.append((src, dst))
                    continue
                except Exception as e:  # noqa: BLE001 - e.g. the initializer failed: report, keep going
                    results[src] = {"file": src, "status": "error", "error": f"{type(e).__name__}: {e}"}
                bar.update(1)
        pending = broken
    for src, _ in pending:
        results[src] = {"file": src, "status": "error", "error": "a worker process died while processing it"}
        bar.update(1)
    return results


def csv_rows(r: dict) -> list[dict]:
    base = {"file": r["file"], "status": r["status"], "error": r.get("error", ""), "width": r.get("width", ""),
            "height": r.get("height", ""), "annotated": r.get("annotated") or ""}
    if r["status"] != "ok" or not r["faces"]:
        return [base]
    rows = []
    for i, f in enumerate(r["faces"]):
        lm = [round(v, 1) for xy in f["landmarks"] for v in xy]
        row = {**base, "face": i, "name": f["name"] or "", "match_score": "" if f["match_score"] is None
               else f["match_score"], "det_score": round(f["score"], 4),
               **dict(zip(CSV_FIELDS[9:13], (round(v, 1) for v in f["box"]))), **dict(zip(CSV_FIELDS[13:23], lm))}
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="image files and/or folders")
    ap.add_argument("--out", default=str(ROOT / "out" / "annotate"), help="output folder")
    ap.add_argument("--db", help="gallery (SQLite) to name the faces; without it faces are only detected")
    ap.add_argument("--threshold", type=float, default=None, help="cosine threshold; None = the gallery's")
    ap.add_argument("--precision", default="int8", choices=["int8", "float32"], help="zoo model precision")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (each with its own interpreters)")
    ap.add_argument("--threads", type=int, default=None,
                    help="interpreter threads per worker; None = 1 with several workers, else min(cores, 4)")
    ap.add_argument("--recursive", action="store_true", help="scan folders recursively")
    ap.add_argument("--no-images", action="store_true", help="write only the CSV/JSON, no annotated copies")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")

    import edgelite
    from edgelite import zoo

    try:
        import cv2  # noqa: F401 - drawing and JPEG writing
    except ImportError:
        if not args.no_images:
            print("error: drawing needs OpenCV: pip install 'edgelite[vision]' (or pass --no-images)", file=sys.stderr)
            return 2
    # Check the cheap things here, once, instead of in every worker.
    try:
        for name in ("yunet_320", "yunet_640") + (("sface",) if args.db else ()):
            zoo.require_model(name, args.precision)
        if args.db and not Path(args.db).is_file():
            raise edgelite.GalleryError(f"gallery {args.db} does not exist")
    except edgelite.EdgeliteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    items, ignored = collect(args.inputs, args.recursive)
    if not items:
        print("error: no images found in " + ", ".join(args.inputs), file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dests = output_names(items, out / "images")
    jobs = [(str(src), None if args.no_images else str(dst)) for (src, _), dst in zip(items, dests)]
    threads = args.threads if args.threads is not None else (1 if args.workers > 1 else None)
    initargs = (args.precision, threads, str(Path(args.db).resolve()) if args.db else None, args.threshold)

    t0 = time.perf_counter()
    bar = progress(len(jobs), args.quiet)
    if args.workers == 1:
        init_worker(*initargs)  # same code path, in this process: easier to debug
        results = {}
        for src, dst in jobs:
            results[src] = process_image(src, dst)
            bar.update(1)
    else:
        results = run_pool(jobs, args.workers, initargs, bar)
    bar.close()
    wall = time.perf_counter() - t0

    ordered = [results[src] for src, _ in jobs]
    ok = [r for r in ordered if r["status"] == "ok"]
    bad = [r for r in ordered if r["status"] != "ok"]
    n_faces = sum(len(r["faces"]) for r in ok)
    n_named = sum(1 for r in ok for f in r["faces"] if f["name"])
    with open(out / "detections.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in ordered:
            w.writerows(csv_rows(r))
    summary = {"images": len(ordered), "ok": len(ok), "errors": len(bad), "faces": n_faces, "named": n_named,
               "ignored_non_image_files": ignored, "workers": args.workers, "threads_per_worker": threads,
               "precision": args.precision, "db": args.db, "wall_s": round(wall, 2),
               "images_per_s": round(len(ordered) / wall, 2) if wall > 0 else None}
    with open(out / "detections.json", "w", encoding="utf-8") as fh:
        json.dump({"summary": summary, "images": ordered}, fh, indent=1)

    for r in bad:
        print(f"skipped: {r['error']}", file=sys.stderr)
    print(f"{len(ordered)} images: {len(ok)} annotated, {len(bad)} skipped (bad files), {n_faces} faces"
          + (f" ({n_named} named)" if args.db else "")
          + (f"; ignored {ignored} non-image file(s)" if ignored else "")
          + f"; {wall:.1f} s with {args.workers} worker(s)")
    print(f"outputs: {out / 'detections.csv'}, {out / 'detections.json'}"
          + ("" if args.no_images else f", {out / 'images'}/"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
