"""Face commands of the ``edgelite`` CLI: enroll, identify, verify, eval-pairs."""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ..errors import EdgeliteError, InputError


def _dump(obj):
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _largest_face_embedding(rec, path, select: str = "largest"):
    """(embedding, face) of the selected face of an image file, or (None, None)."""
    from ..image import load_image
    got = rec.embed_face(load_image(path), select=select)
    return (None, None) if got is None else (got[1], got[0])


def _recognizer(a, gallery=None):
    from .recognizer import FaceRecognizer, FaceRecognizerOptions
    return FaceRecognizer(gallery, FaceRecognizerOptions(precision=a.precision, num_threads=a.threads,
                                                         threshold=getattr(a, "threshold", None)))


def _text(s: str) -> str:
    """A path/message as printable text: undecodable bytes of a file name become ``\\xff``."""
    return os.fsencode(s).decode("utf-8", "backslashreplace")


def cmd_enroll(a) -> int:
    from .gallery import FaceGallery, validate_name
    validate_name(a.name)  # before any work: a name that is not UTF-8 is an InputError, not a traceback
    rec = _recognizer(a)
    embs, used, skipped = [], [], []
    for p in a.images:
        try:
            e, _ = _largest_face_embedding(rec, p)
        except EdgeliteError as err:
            skipped.append({"image": _text(p), "reason": _text(str(err))})
            continue
        if e is None:
            skipped.append({"image": _text(p), "reason": "no face detected"})
            continue
        embs.append(e)
        used.append(_text(p))
    if not embs:
        raise InputError(f"no face found in any of the {len(a.images)} image(s); nothing enrolled for {a.name!r}")
    with FaceGallery(a.db) as g:
        ids = g.enroll(a.name, np.stack(embs), model_id=rec.embedder.model_id, source=",".join(used)[:1000])
    out = {"name": a.name, "templates": len(ids), "images": used, "skipped": skipped, "db": a.db}
    if a.json:
        _dump(out)
    else:
        print(f"enrolled {a.name!r}: {len(ids)} template(s) in {a.db}")
        for s in skipped:
            print(f"  skipped {s['image']}: {s['reason']}")
    return 0


def cmd_identify(a) -> int:
    from ..image import load_image
    from .gallery import FaceGallery
    with FaceGallery(a.db, create=False) as g:
        rec = _recognizer(a, g)
        results = []
        for p in a.images:
            try:
                r = rec.recognize(load_image(p))
                results.append({"image": p, **r.to_dict()})
            except EdgeliteError as err:
                results.append({"image": p, "error": str(err)})
    if a.json:
        _dump(results)
    else:
        for r in results:
            if "error" in r:
                print(f"{r['image']}: error: {r['error']}")
                continue
            print(f"{r['image']}: {len(r['faces'])} face(s)")
            for f in r["faces"]:
                box = ", ".join(f"{v:.0f}" for v in f["box"])
                print(f"  {f['name'] or 'unknown':20s} score {f['score']:.3f}  box [{box}]")
            print("  timings ms: " + "  ".join(f"{k} {v:.1f}" for k, v in r["timings_ms"].items()))
    return 0


def cmd_verify(a) -> int:
    from .gallery import DEFAULT_THRESHOLD
    rec = _recognizer(a)
    ea, fa = _largest_face_embedding(rec, a.image_a)
    eb, fb = _largest_face_embedding(rec, a.image_b)
    thr = a.threshold if a.threshold is not None else DEFAULT_THRESHOLD
    missing = [p for p, e in ((a.image_a, ea), (a.image_b, eb)) if e is None]
    score = None if missing else float(np.dot(ea, eb))
    out = {"image_a": a.image_a, "image_b": a.image_b, "score": score, "threshold": thr,
           "same_person": bool(score is not None and score >= thr), "no_face": missing,
           "model_id": rec.embedder.model_id}
    if a.json:
        _dump(out)
    else:
        if missing:
            print(f"no face found in: {', '.join(missing)} -> not the same person")
        else:
            print(f"cosine {score:.4f} (threshold {thr:.3f}): {'SAME person' if out['same_person'] else 'different people'}")
    return 0


def cmd_eval_pairs(a) -> int:
    from .pairs import evaluate_pairs, parse_pairs
    rec = _recognizer(a)
    pairs = parse_pairs(a.pairs, a.root)

    def embed(path):
        try:
            e, _ = _largest_face_embedding(rec, path, a.select)
        except EdgeliteError:
            return None
        return e

    res = evaluate_pairs(pairs, embed, progress=not a.json)
    res["precision"] = a.precision
    res["model_id"] = rec.embedder.model_id
    if a.json:
        _dump(res)
    else:
        print(f"accuracy {res['accuracy'] * 100:.2f}% ± {res['std'] * 100:.2f} over {res['pairs']} pairs "
              f"(10-fold), threshold {res['threshold']:.3f}, failed detections {res['failed_detections']}")
    return 0


def add_commands(sub) -> None:
    def common(p):
        p.add_argument("--precision", default="int8", choices=["int8", "float32"])
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--json", action="store_true")

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("enroll", help="enrol a person from images into a gallery", formatter_class=fmt)
    p.add_argument("name")
    p.add_argument("images", nargs="+")
    p.add_argument("--db", required=True, help="SQLite gallery file (created if missing)")
    common(p)
    p.set_defaults(fn=cmd_enroll)

    p = sub.add_parser("identify", help="name every face in images against a gallery", formatter_class=fmt)
    p.add_argument("images", nargs="+")
    p.add_argument("--db", required=True)
    p.add_argument("--threshold", type=float, default=None, help="cosine threshold (default: the gallery's)")
    common(p)
    p.set_defaults(fn=cmd_identify)

    p = sub.add_parser("verify", help="are the largest faces of two images the same person?", formatter_class=fmt)
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--threshold", type=float, default=None)
    common(p)
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("eval-pairs", help="10-fold verification accuracy on an LFW-format pairs file",
                       formatter_class=fmt)
    p.add_argument("--pairs", required=True)
    p.add_argument("--root", required=True, help="images at ROOT/name/name_%%04d.jpg")
    p.add_argument("--select", default="center", choices=["center", "largest", "score"],
                   help="which face of an image is compared: LFW-format sets centre each image on the "
                        "labelled person, so 'center' is right for them (a bystander can be larger)")
    common(p)
    p.set_defaults(fn=cmd_eval_pairs)
