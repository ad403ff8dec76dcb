#!/usr/bin/env python3
"""Benchmark the whole face pipeline, stage by stage, against baselines in the same run.

Stages (per frame): **decode** (image file -> RGB array), **detect** (for
edgelite split into letterbox+quantize, inference, decode+NMS), **align**
(5-point similarity warp to 112x112), **embed** (SFace), **match** (1:N cosine
search in a gallery of 43 people). ``e2e`` = detect + align + embed + match
(what a camera loop pays per frame once the frame is in memory).

Pipelines, all on the same frames, the same thread count, interleaved frame by
frame in a rotating order (A/B/C/A/B/C...) so that machine noise (other
processes, frequency changes) hits every pipeline alike; medians are reported:

* ``int8``: edgelite ``FaceDetector`` / ``align_faces`` / ``FaceEmbedder`` /
  ``FaceGallery`` with the int8 zoo models;
* ``float32``: the same with edgelite's float32 zoo models (when built);
* ``opencv``: ``cv2.FaceDetectorYN`` + ``cv2.FaceRecognizerSF`` on the *same*
  ONNX weights the zoo was converted from (when OpenCV is installed):
  ``alignCrop``, ``feature``, and ``match`` (cosine) against each gallery
  template. ``FaceDetectorYN`` gets ``setInputSize`` = the frame's size, as its
  documentation tells users to do (frames larger than 1280 px are first resized
  to a 640 px long side: nobody runs YuNet on 20 MP);
* ``opencv_res``: the same, but the frame is first resized (``cv2.resize``,
  timed) to the detector resolution edgelite picks itself (320 px long side for
  frames up to 1280 px, else 640). This separates "faster runtime" from "smaller
  detector input": edgelite letterboxes a 640x480 frame into YuNet 320x320,
  while ``opencv`` runs YuNet on all 640x480 pixels.

Each OpenCV detector size gets its own warmed-up ``FaceDetectorYN`` (changing the
input size re-allocates the network; we do not charge that to OpenCV).

Frame sets: ``photos`` (the demo photos as they are, every face), ``vga``
(640x480 crops around each demo face), ``orl`` (640x480 frames with an ORL face,
x2, grey padding), ``sq320`` (320x320 squares from the vga and orl frames, for
"YuNet at 320x320" vs OpenCV at 320x320). In the one-face sets only the best
face is aligned/embedded/matched, by every pipeline.

Targets reported explicitly (ratios from this run): embedding int8 vs OpenCV
SFace (>= 3x), YuNet int8 at 320x320 vs OpenCV YuNet at 320x320 (>= 1.5x), whole
640x480 one-face frame vs OpenCV detect+alignCrop+feature+match (>= 2x).

Usage::

    python3 bench_pipeline.py                    # threads = min(cores, 4)
    python3 bench_pipeline.py --threads 1,4 --iterations 20
    python3 bench_pipeline.py --quick
    python3 bench_pipeline.py --duration 30      # then 30 min of int8 e2e with a thermal log
    python3 bench_pipeline.py --onnx-dir ~/onnx  # where the two source .onnx files are (on a Pi)

Writes ``results/<device-id>/pipeline.{json,md,metrics.csv}`` and PNG plots.
"""
from __future__ import annotations

import argparse
import json
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO / "data" / "faces"
ONNX_NAMES = {"yunet": "face_detection_yunet_2023mar.onnx", "sface": "face_recognition_sface_2021dec.onnx"}
STAGES = ("decode", "detect", "align", "embed", "match")
DETECT_PARTS = ("detect.preprocess", "detect.inference", "detect.decode_nms")
TARGETS = {
    "embed_int8_vs_opencv": ("Embedding (SFace) int8 vs OpenCV FaceRecognizerSF.feature", 3.0),
    "yunet320_int8_vs_opencv": ("YuNet int8 at 320x320 vs OpenCV FaceDetectorYN at 320x320", 1.5),
    "e2e_vga_int8_vs_opencv": ("640x480 one-face frame, detect+align+embed+match vs OpenCV", 2.0),
}
AUTO_SMALL_MAX_SIDE = 1280  # edgelite FaceDetector's "auto": 320 up to this long side, else 640
THRESHOLD = 0.363  # OpenCV's published SFace cosine threshold; the same for every pipeline


# -- frames -----------------------------------------------------------------------------
class Frame:
    """One benchmark frame: a file on disk (for the decode stage) and its RGB pixels."""

    def __init__(self, fset: str, name: str, path: Path, rgb: np.ndarray, expected, one_face: bool):
        self.set, self.name, self.path, self.rgb = fset, name, path, rgb
        self.expected, self.one_face = expected, one_face

    @property
    def hw(self):
        return self.rgb.shape[:2]


def _cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _save(rgb: np.ndarray, path: Path) -> bool:
    """Write a frame as JPEG (quality 95) with OpenCV or Pillow; False if neither exists."""
    cv2 = _cv2()
    if cv2 is not None:
        return bool(cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95]))
    try:
        from PIL import Image
    except ImportError:
        return False
    Image.fromarray(rgb).save(path, quality=95)
    return True


def _resize(rgb: np.ndarray, hw) -> np.ndarray:
    from edgelite.face import resize_image

    return resize_image(rgb, hw)


def _crop_43(img: np.ndarray, face, frac: float) -> np.ndarray:
    """A 4:3 crop centred on ``face`` whose width is ``face.width / frac``, kept inside the image."""
    H, W = img.shape[:2]
    cx, cy = face.center
    cw = min(face.width / frac, W, H * 4 / 3)
    ch = cw * 3 / 4
    x0 = int(round(min(max(cx - cw / 2, 0), W - cw)))
    y0 = int(round(min(max(cy - ch / 2, 0), H - ch)))
    return img[y0:y0 + int(round(ch)), x0:x0 + int(round(cw))]


def _pad_640x480(face_img: np.ndarray, scale: float = 2.0, pad: int = 127) -> np.ndarray:
    h, w = face_img.shape[:2]
    big = _resize(face_img, (int(h * scale), int(w * scale)))
    fr = np.full((480, 640, 3), pad, np.uint8)
    y, x = (480 - big.shape[0]) // 2, (640 - big.shape[1]) // 2
    fr[y:y + big.shape[0], x:x + big.shape[1]] = big
    return fr


def _demo_expected(photo: str, faces) -> list:
    """Who each face of a demo photo is (faces ordered left to right in the photo)."""
    if photo.startswith("Morgan_and_Hague"):
        return ["Andrew_Morgan", "Nick_Hague"][:len(faces)] + [None] * max(0, len(faces) - 2)
    who = {"Andrew_Morgan": "Andrew_Morgan", "Nick_Hague": "Nick_Hague", "Eileen_Collins": "Eileen_Collins"}
    key = next((v for k, v in who.items() if photo.startswith(k)), None)
    return [key] * len(faces)


def make_frames(data: Path, work: Path, maker, n_orl: int, photos: bool, n_vga: int = 0,
                log=print) -> tuple[list, list, dict]:
    """Build the frame sets and the gallery enrolment images.

    ``maker`` is an edgelite ``FaceDetector`` used once, untimed, to find the faces to
    crop around. Returns ``(frames, enrol, notes)``; ``enrol`` is ``[(name, rgb)]``.
    """
    import edgelite

    demo = sorted((data / "demo").glob("*.*"))
    frames, notes = [], {}
    can_write = True
    vga_imgs = []
    for p in demo:
        img = edgelite.load_image(p)
        faces = sorted(maker.detect(img).faces, key=lambda f: f.center[0])
        exp = _demo_expected(p.stem, faces)
        if photos:
            frames.append(Frame("photos", p.name, p, img, exp, one_face=False))
        for i, (f, e) in enumerate(zip(faces, exp)):
            crop = _crop_43(img, f, frac=0.3)
            vga_imgs.append((f"{p.stem}#{i}", _resize(crop, (480, 640)), e))
    if n_vga:
        vga_imgs = vga_imgs[:n_vga]
    orl_imgs = []
    for k in range(1, n_orl + 1):
        g = edgelite.load_image(data / "orl" / f"s{k}" / "2.pgm")
        orl_imgs.append((f"orl_s{k}_2", _pad_640x480(g), f"s{k}"))
    sq = [(f"{n}@320", _resize(im[:, 80:560], (320, 320)), e) for n, im, e in vga_imgs + orl_imgs]
    for fset, items in (("vga", vga_imgs), ("orl", orl_imgs), ("sq320", sq)):
        for n, im, e in items:
            path = work / f"{fset}_{n.replace('#', '_').replace('@', '_')}.jpg"
            if can_write and not _save(im, path):
                can_write = False
                notes["decode"] = "neither OpenCV nor Pillow can write JPEG here: decode stage not measured"
            frames.append(Frame(fset, n, path if can_write else None, im, e, one_face=True))
    enrol = []
    for k in range(1, 41):
        p = data / "orl" / f"s{k}" / "1.pgm"
        if p.is_file():
            enrol.append((f"s{k}", _pad_640x480(edgelite.load_image(p))))
    for who in ("Andrew_Morgan.jpg", "Nick_Hague.jpg", "Eileen_Collins.png"):
        if (data / "demo" / who).is_file():
            enrol.append((Path(who).stem, edgelite.load_image(data / "demo" / who)))
    return frames, enrol, notes


# -- pipelines --------------------------------------------------------------------------
class EdgelitePipeline:
    """detect -> align -> embed -> match with edgelite's task classes (public API only)."""

    def __init__(self, precision: str, threads: int):
        from edgelite.face import FaceDetector, FaceEmbedder, FaceGallery

        self.name = precision
        self.det = FaceDetector.from_zoo(precision, num_threads=threads)
        self.emb = FaceEmbedder.from_zoo(precision, num_threads=threads)
        self.gallery = FaceGallery(":memory:", threshold=THRESHOLD)

    def detector_input(self, hw) -> str:
        s = self.det.choose_size(hw)
        return f"{s}x{s}"

    def decode(self, path) -> np.ndarray:
        import edgelite

        return edgelite.load_image(path)

    def embed_only(self, rgb, one_face):
        from edgelite.face import align_faces

        faces = self.det.detect(rgb).faces
        faces = faces[:1] if one_face else faces
        if not faces:
            return np.zeros((0, 128), np.float32)
        return self.emb.embed(align_faces(rgb, np.stack([f.landmarks for f in faces])))

    def enrol(self, items) -> list:
        from edgelite.face import FaceRecognizer

        rec = FaceRecognizer(detector=self.det, embedder=self.emb)  # the one "face -> embedding" call
        missed = []
        for name, rgb in items:
            got = rec.embed_face(rgb, select="score")
            if got is not None:
                self.gallery.enroll(name, got.embedding[None], model_id=self.emb.model_id)
            else:
                missed.append(name)
        return missed

    def process(self, frame: Frame, with_decode: bool) -> tuple[dict, list]:
        """Run one frame; return ``(stage -> ms, [matched name or None per face])``."""
        from edgelite.face import align_faces

        t = {}
        if with_decode:
            s = time.perf_counter()
            rgb = self.decode(frame.path)
            t["decode"] = (time.perf_counter() - s) * 1e3
        else:
            rgb = frame.rgb
        t0 = time.perf_counter()
        det = self.det.detect(rgb)
        faces = det.faces
        t1 = time.perf_counter()
        lt = det.timings
        t["detect.preprocess"], t["detect.inference"], t["detect.decode_nms"] = \
            lt["preprocess"], lt["inference"], lt["decode"]
        if frame.one_face:
            faces = faces[:1]
        names = []
        if faces:
            crops = align_faces(rgb, np.stack([f.landmarks for f in faces]))
            t2 = time.perf_counter()
            emb = self.emb.embed(crops)
            t3 = time.perf_counter()
            res = self.gallery.identify(emb, model_id=self.emb.model_id, top_k=1)
            t4 = time.perf_counter()
            names = [m[0].name for m in res]
        else:
            t2 = t3 = t4 = t1
        t.update(detect=(t1 - t0) * 1e3, align=(t2 - t1) * 1e3, embed=(t3 - t2) * 1e3, match=(t4 - t3) * 1e3,
                 e2e=(t4 - t0) * 1e3)
        return t, names

    def close(self):
        self.det.close()
        self.emb.close()
        self.gallery.close()


class OpenCVPipeline:
    """``cv2.FaceDetectorYN`` + ``cv2.FaceRecognizerSF`` on the zoo's source ONNX files.

    Images cross into OpenCV as BGR (``cv2.imread`` gives BGR; in-memory RGB frames
    are converted once, untimed, at construction).
    """

    def __init__(self, onnx: dict, threads: int, matched_res: bool, recognizer=None):
        import cv2

        self.cv2 = cv2
        cv2.setNumThreads(threads)
        self.name = "opencv_res" if matched_res else "opencv"
        self.matched = matched_res
        self.onnx = onnx
        # FaceRecognizerSF keeps no per-call state here; the two OpenCV variants share
        # one to avoid loading the 38 MB ONNX twice.
        self.rec = recognizer or cv2.FaceRecognizerSF.create(str(onnx["sface"]), "")
        self.dets: dict = {}
        self.gallery: list[tuple[str, np.ndarray]] = []
        self._bgr: dict = {}

    def det_size(self, hw) -> tuple[int, int]:
        """(width, height) given to FaceDetectorYN for a frame of ``hw``."""
        h, w = hw
        if self.matched:
            long_side = 320 if max(h, w) <= AUTO_SMALL_MAX_SIDE else 640
        elif max(h, w) > AUTO_SMALL_MAX_SIDE:
            long_side = 640
        else:
            return (w, h)
        s = long_side / max(h, w)
        return (max(1, int(round(w * s))), max(1, int(round(h * s))))

    def detector_input(self, hw) -> str:
        w, h = self.det_size(hw)
        return f"{w}x{h}"

    def _det(self, size):
        d = self.dets.get(size)
        if d is None:
            d = self.cv2.FaceDetectorYN.create(str(self.onnx["yunet"]), "", size, 0.6, 0.3, 5000)
            d.detect(np.zeros((size[1], size[0], 3), np.uint8))  # warm: allocate the network at this size
            self.dets[size] = d
        return d

    def bgr(self, frame: Frame) -> np.ndarray:
        b = self._bgr.get(id(frame))
        if b is None:
            b = self._bgr[id(frame)] = np.ascontiguousarray(frame.rgb[:, :, ::-1])
        return b

    def _detect(self, bgr):
        h, w = bgr.shape[:2]
        size = self.det_size((h, w))
        det = self._det(size)
        img = bgr if size == (w, h) else self.cv2.resize(bgr, size, interpolation=self.cv2.INTER_AREA)
        _, faces = det.detect(img)
        if faces is None:
            return np.zeros((0, 15), np.float32)
        if size != (w, h):
            # rows: x, y, w, h, 5 landmark (x, y) pairs, score -> back to frame pixels
            faces = faces.copy()
            faces[:, 0:14:2] *= w / size[0]
            faces[:, 1:14:2] *= h / size[1]
        return faces

    def embed_only(self, bgr, one_face):
        faces = self._detect(bgr)
        faces = faces[:1] if one_face else faces
        return [self.rec.feature(self.rec.alignCrop(bgr, row)).copy() for row in faces]

    def enrol(self, items) -> list:
        missed = []
        for name, rgb in items:
            f = self.embed_only(np.ascontiguousarray(rgb[:, :, ::-1]), True)
            if f:
                self.gallery.append((name, f[0]))
            else:
                missed.append(name)
        return missed

    def process(self, frame: Frame, with_decode: bool) -> tuple[dict, list]:
        cv2 = self.cv2
        t = {}
        if with_decode:
            s = time.perf_counter()
            bgr = cv2.imread(str(frame.path), cv2.IMREAD_COLOR)
            t["decode"] = (time.perf_counter() - s) * 1e3
        else:
            bgr = self.bgr(frame)
        t0 = time.perf_counter()
        faces = self._detect(bgr)
        t1 = time.perf_counter()
        if frame.one_face:
            faces = faces[:1]
        crops = [self.rec.alignCrop(bgr, row) for row in faces]
        t2 = time.perf_counter()
        feats = [self.rec.feature(c) for c in crops]
        t3 = time.perf_counter()
        names = []
        for f in feats:
            best, who = -2.0, None
            for name, g in self.gallery:
                s = self.rec.match(f, g, cv2.FaceRecognizerSF_FR_COSINE)
                if s > best:
                    best, who = s, name
            names.append(who if best >= THRESHOLD else None)
        t4 = time.perf_counter()
        t.update(detect=(t1 - t0) * 1e3, align=(t2 - t1) * 1e3, embed=(t3 - t2) * 1e3, match=(t4 - t3) * 1e3,
                 e2e=(t4 - t0) * 1e3)
        return t, names

    def close(self):
        self.dets.clear()


def find_onnx(onnx_dir: str | None) -> dict | None:
    """The two source ONNX files: ``--onnx-dir``, else the converter's verified cache."""
    cands = []
    if onnx_dir:
        cands.append(Path(onnx_dir).expanduser())
    else:
        try:
            from edgelite_convert.sources import fetch_sources  # only on a workstation with the converter

            p = fetch_sources()
            return {"yunet": Path(p["yunet"]), "sface": Path(p["sface"])}
        except Exception:  # noqa: BLE001 - no converter on a Pi: fall back to the cache folder
            pass
        from edgelite import zoo

        cands.append(zoo.sources_dir())
    for d in cands:
        paths = {k: d / v for k, v in ONNX_NAMES.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None


# -- the run ------------------------------------------------------------------------------
def _cosines(a_list, b_list) -> list[float]:
    out = []
    for a, b in zip(a_list, b_list):
        if a is None or b is None:
            continue
        a = np.asarray(a, np.float64).ravel()
        b = np.asarray(b, np.float64).ravel()
        out.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return out


def run_threads(threads: int, frames, enrol, pipes_wanted, onnx, args, log=print) -> dict:
    """All pipelines at one thread count: enrol, check, warm up, then interleaved timing."""
    pipes = []
    for name in pipes_wanted:
        if name in ("int8", "float32"):
            pipes.append(EdgelitePipeline(name, threads))
        elif name in ("opencv", "opencv_res"):
            shared = next((p.rec for p in pipes if isinstance(p, OpenCVPipeline)), None)
            pipes.append(OpenCVPipeline(onnx, threads, matched_res=name == "opencv_res", recognizer=shared))
    out: dict = {"threads": threads, "enrol_missed": {}, "frames_dropped": {}, "embedding_agreement": {}}
    for p in pipes:
        out["enrol_missed"][p.name] = p.enrol(enrol)

    # Untimed pass: every pipeline must find a face in every frame it will be timed on
    # (else stage timings would compare different work); it also warms every model.
    keep, found = [], {}
    for fr in frames:
        ok = True
        for p in pipes:
            _, names = p.process(fr, with_decode=False)
            found.setdefault(p.name, {})[fr.name + "|" + fr.set] = names
            ok &= len(names) > 0
        if ok:
            keep.append(fr)
        else:
            out["frames_dropped"][f"{fr.set}/{fr.name}"] = {p.name: len(found[p.name][fr.name + "|" + fr.set])
                                                           for p in pipes}
    # Do the embedders agree? Cosine between their embeddings of the *same* aligned crops
    # (made by the int8 pipeline), so detector/landmark differences do not enter.
    crops = []
    int8 = next(p for p in pipes if p.name == "int8")
    from edgelite.face import align_faces

    for fr in keep:
        if fr.one_face:
            faces = int8.det.detect(fr.rgb).faces[:1]
            crops.append(align_faces(fr.rgb, np.stack([f.landmarks for f in faces]))[0])
    embs = {}
    for p in pipes:
        if isinstance(p, EdgelitePipeline):
            embs[p.name] = list(p.emb.embed(np.stack(crops))) if crops else []
        elif p.name == "opencv":
            embs[p.name] = [p.rec.feature(np.ascontiguousarray(c[:, :, ::-1])).copy() for c in crops]
    for a in ("int8", "float32"):
        for b in ("float32", "opencv"):
            if a != b and a in embs and b in embs:
                c = _cosines(embs[a], embs[b])
                if c:
                    out["embedding_agreement"][f"{a}_vs_{b}"] = {"median": float(np.median(c)), "min": float(min(c)),
                                                                 "n": len(c)}

    # Timed, interleaved: frame by frame, pipelines in a rotating order.
    samples: dict = {p.name: {} for p in pipes}
    correct: dict = {p.name: {} for p in pipes}
    with_decode = all(fr.path is not None for fr in keep) and not args.no_decode
    sets = list(dict.fromkeys(fr.set for fr in keep))
    t_start = time.perf_counter()
    for fset in sets:
        fs = [fr for fr in keep if fr.set == fset]
        iters = args.photo_iterations if fset == "photos" else args.iterations
        for it in range(iters):
            gc.collect()
            gc.disable()  # a collection inside a timed stage is noise, not the pipeline's cost
            try:
                for fi, fr in enumerate(fs):
                    k = (it + fi) % len(pipes)
                    for p in pipes[k:] + pipes[:k]:
                        t, names = p.process(fr, with_decode)
                        d = samples[p.name].setdefault(fset, {})
                        for st, v in t.items():
                            d.setdefault(st, []).append(v)
                        if fr.one_face:
                            c = correct[p.name].setdefault(fset, [0, 0])
                            c[0] += int(bool(names) and names[0] == fr.expected)
                            c[1] += 1
            finally:
                gc.enable()
        log(f"  threads={threads} {fset}: {len(fs)} frames x {iters} iterations done "
            f"({time.perf_counter() - t_start:.0f}s)")
    out["samples"] = samples
    # multi-face frames: how many faces each pipeline aligned/embedded/matched per frame
    out["faces_found"] = {fr.name: {p: len(found[p][fr.name + "|" + fr.set]) for p in found}
                          for fr in keep if not fr.one_face}
    out["correct"] = {p: {s: {"correct": c[0], "total": c[1]} for s, c in d.items()} for p, d in correct.items()}
    out["detector_input"] = {p.name: {fset: sorted({p.detector_input(fr.hw) for fr in keep if fr.set == fset})
                                      for fset in sets} for p in pipes}
    out["pipelines"] = [p.name for p in pipes]
    for p in pipes:
        p.close()
    return out


def summarise(run: dict) -> dict:
    """Medians per pipeline / frame set / stage, and baseline / int8 ratios."""
    med: dict = {}
    for p, sets in run["samples"].items():
        for fset, stages in sets.items():
            med.setdefault(fset, {})[p] = {st: float(np.median(v)) for st, v in stages.items()}
            med[fset][p]["_n"] = len(stages["e2e"])
    ratios: dict = {}
    for fset, by in med.items():
        if "int8" not in by:
            continue
        for p, st in by.items():
            if p == "int8":
                continue
            ratios.setdefault(fset, {})[p] = {s: st[s] / by["int8"][s] for s in st
                                              if not s.startswith("_") and s in by["int8"] and by["int8"][s] > 0}
    return {"medians": med, "ratios": ratios}


def pooled_ratio(run: dict, base: str, fsets, stage: str) -> dict | None:
    """Median of ``stage`` over several frame sets, baseline / int8."""
    def pool(p):
        v = []
        for fs in fsets:
            v += run["samples"].get(p, {}).get(fs, {}).get(stage, [])
        return v

    a, b = pool("int8"), pool(base)
    if not a or not b:
        return None
    ma, mb = float(np.median(a)), float(np.median(b))
    return {"int8_ms": ma, f"{base}_ms": mb, "ratio": mb / ma, "frame_sets": list(fsets), "stage": stage,
            "n": min(len(a), len(b))}


def targets(run: dict) -> dict:
    out = {}
    one_face = [s for s in ("vga", "orl", "sq320") if s in run["samples"].get("int8", {})]
    for base in ("opencv", "opencv_res"):
        if base not in run["pipelines"]:
            continue
        sfx = "" if base == "opencv" else "_res"
        r = pooled_ratio(run, base, one_face, "embed")
        if r and base == "opencv":  # embedding does not depend on the detector resolution
            out["embed_int8_vs_opencv"] = r
        r = pooled_ratio(run, base, ["sq320"], "detect")
        if r and base == "opencv":  # at 320x320 both variants give OpenCV the same input
            out["yunet320_int8_vs_opencv"] = r
        r = pooled_ratio(run, base, [s for s in ("vga", "orl") if s in one_face], "e2e")
        if r:
            out["e2e_vga_int8_vs_opencv" + sfx] = r
    for k, v in out.items():
        base_key = k[:-4] if k.endswith("_res") else k
        v["title"], v["target"] = TARGETS[base_key]
        if k.endswith("_res"):
            v["title"] += " (OpenCV given the frame resized to edgelite's detector resolution)"
        v["meets_target"] = v["ratio"] >= v["target"]
    return out


# -- report ---------------------------------------------------------------------------------
PIPE_TITLES = {"int8": "edgelite int8", "float32": "edgelite float32", "opencv": "OpenCV",
               "opencv_res": "OpenCV, edgelite's det. res."}


def to_markdown(rep: dict, plots: list[str]) -> str:
    parts = [f"# Face pipeline benchmark -- {rep['system']['device_id']}", "", C.system_markdown(rep["system"]), ""]
    cfg = rep["config"]
    parts += [f"Threads {cfg['threads']}; {cfg['iterations']} iterations over the one-face frame sets, "
              f"{cfg['photo_iterations']} over the photos; pipelines interleaved frame by frame in a rotating "
              f"order; medians in ms. Ratio = baseline median / edgelite int8 median (> 1: edgelite int8 is "
              "faster). `e2e` = detect + align + embed + match (frame already decoded).", ""]
    for note in rep.get("notes", {}).values():
        parts += [f"> {note}", ""]
    for run in rep["runs"]:
        t = run["threads"]
        parts += [f"## {t} thread{'s' if t > 1 else ''}", ""]
        tg = run["targets"]
        if tg:
            rows = [[v["title"], v["int8_ms"], next(x for k, x in v.items() if k.endswith("_ms") and k != "int8_ms"),
                     f"**{v['ratio']:.2f}x**", f">= {v['target']:.1f}x", "yes" if v["meets_target"] else "NO"]
                    for v in tg.values()]
            parts += ["### Targets", "", C.md_table(["comparison", "int8 ms", "baseline ms", "ratio", "target",
                                                       "met"], rows), ""]
        for fset, by in run["summary"]["medians"].items():
            pipes = [p for p in ("int8", "float32", "opencv", "opencv_res") if p in by]
            rat = run["summary"]["ratios"].get(fset, {})
            inputs = "; ".join(f"{PIPE_TITLES[p]} {', '.join(run['detector_input'][p].get(fset, []))}" for p in pipes)
            parts += [f"### {fset} ({by['int8']['_n'] // max(1, cfg['photo_iterations' if fset == 'photos' else 'iterations'])}"
                      f" frames) -- detector input (W x H): {inputs}", ""]
            header = ["stage"] + [PIPE_TITLES[p] for p in pipes] + [f"{PIPE_TITLES[p]} / int8" for p in pipes
                                                                    if p != "int8"]
            rows = []
            for st in (*STAGES[:2], *DETECT_PARTS, *STAGES[2:], "e2e"):
                if not any(st in by[p] for p in pipes):
                    continue
                row = [("  " if st.startswith("detect.") else "") + st]
                row += [by[p].get(st, float("nan")) for p in pipes]
                row += [f"{rat[p][st]:.2f}x" if st in rat.get(p, {}) else "-" for p in pipes if p != "int8"]
                rows.append(row)
            parts += [C.md_table(header, rows), ""]
        if run.get("faces_found"):
            pipes = list(next(iter(run["faces_found"].values())))
            parts += ["### Faces found per photo (all of them go through align/embed/match)", "",
                      C.md_table(["photo"] + [PIPE_TITLES[p] for p in pipes],
                                 [[n] + [v[p] for p in pipes] for n, v in run["faces_found"].items()]), ""]
        acc = []
        for p, sets in run["correct"].items():
            for fset, c in sets.items():
                acc.append([PIPE_TITLES[p], fset, f"{c['correct']}/{c['total']}"])
        if acc:
            parts += ["### Identity check (top-1 name = expected, one-face sets, all timed runs)", "",
                      C.md_table(["pipeline", "frames", "correct"], acc), ""]
        if run["embedding_agreement"]:
            parts += ["### Embedding agreement (cosine between pipelines' embeddings of the same face)", "",
                      C.md_table(["pair", "median", "min", "faces"],
                                 [[k.replace("_vs_", " vs "), v["median"], v["min"], v["n"]]
                                  for k, v in run["embedding_agreement"].items()]), ""]
        if run["frames_dropped"]:
            parts += ["Frames dropped (a pipeline found no face; faces found per pipeline): " +
                      "; ".join(f"{k} {v}" for k, v in run["frames_dropped"].items()), ""]
        if any(run["enrol_missed"].values()):
            parts += ["Gallery images without a detected face: " +
                      "; ".join(f"{p}: {', '.join(v)}" for p, v in run["enrol_missed"].items() if v), ""]
    if rep.get("overhead"):
        import bench_overhead

        parts += ["## Overhead beyond the model invokes (int8, 640x480, one face)", "",
                  "End-to-end `FaceRecognizer.recognize` minus the raw YuNet-320 and SFace invokes, interleaved "
                  "in the same run (`bench_overhead.py`).", "", *bench_overhead.markdown(rep["overhead"]), ""]
    if rep.get("sustained"):
        parts += [f"## Sustained run: {rep['sustained']['label']}", "", C.sustained_markdown(rep["sustained"]), ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{p}]({p})" for p in plots]
    else:
        parts += ["_plots skipped: matplotlib is not installed (pip install matplotlib)_"]
    return "\n".join(parts) + "\n"


def plot_stages(plt, rep: dict, out_dir: Path) -> list[str]:
    """Per-stage median bars per pipeline (one panel per frame set), at the highest thread count."""
    if plt is None or not rep["runs"]:
        return []
    run = rep["runs"][-1]
    med = run["summary"]["medians"]
    sets = list(med)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets) + 0.5, 4.2), squeeze=False)
    for ax, fset in zip(axes[0], sets):
        by = med[fset]
        pipes = [p for p in ("int8", "float32", "opencv", "opencv_res") if p in by]
        stages = [s for s in (*STAGES, "e2e") if any(s in by[p] for p in pipes)]
        x = np.arange(len(stages))
        w = 0.8 / len(pipes)
        for i, p in enumerate(pipes):
            vals = [by[p].get(s, np.nan) for s in stages]
            ax.bar(x + (i - (len(pipes) - 1) / 2) * w, vals, w, label=PIPE_TITLES[p])
        ax.set_xticks(x, stages, rotation=30)
        ax.set_yscale("log")
        ax.set_ylabel("median ms (log scale)")
        ax.set_title(fset, fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle(f"Face pipeline per stage, {run['threads']} threads -- {rep['system']['device_id']}", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out_dir / "pipeline_stages.png", dpi=110)
    plt.close(fig)
    names = ["pipeline_stages.png"]

    # Ratios vs baseline: the three targets (and e2e at matched resolution) per thread count.
    keys = [k for k in ("embed_int8_vs_opencv", "yunet320_int8_vs_opencv", "e2e_vga_int8_vs_opencv",
                        "e2e_vga_int8_vs_opencv_res") if any(k in r["targets"] for r in rep["runs"])]
    if keys:
        labels = {"embed_int8_vs_opencv": "embed\nvs OpenCV", "yunet320_int8_vs_opencv": "YuNet 320x320\nvs OpenCV",
                  "e2e_vga_int8_vs_opencv": "640x480 e2e\nvs OpenCV",
                  "e2e_vga_int8_vs_opencv_res": "640x480 e2e vs OpenCV\nat edgelite's det. res."}
        fig, ax = plt.subplots(figsize=(2.2 * len(keys) + 2, 4))
        x = np.arange(len(keys))
        w = 0.8 / len(rep["runs"])
        for i, r in enumerate(rep["runs"]):
            vals = [r["targets"].get(k, {}).get("ratio", np.nan) for k in keys]
            bars = ax.bar(x + (i - (len(rep["runs"]) - 1) / 2) * w, vals, w, label=f"{r['threads']} thr")
            ax.bar_label(bars, fmt="%.2fx", fontsize=8, padding=2)
        for j, k in enumerate(keys):
            tgt = TARGETS[k[:-4] if k.endswith("_res") else k][1]
            ax.hlines(tgt, j - 0.45, j + 0.45, colors="k", linestyles="dashed", lw=1)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks(x, [labels[k] for k in keys], fontsize=8)
        ax.set_ylabel("baseline / edgelite int8 (higher = int8 faster)")
        ax.set_title(f"Speed-up vs OpenCV (dashed: target) -- {rep['system']['device_id']}", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "pipeline_ratios.png", dpi=110)
        plt.close(fig)
        names.append("pipeline_ratios.png")
    return names


def build_metrics(rep: dict) -> dict:
    m = {}
    for run in rep["runs"]:
        t = run["threads"]
        for fset, by in run["summary"]["medians"].items():
            for p, st in by.items():
                for s, v in st.items():
                    if not s.startswith("_"):
                        m[f"pipeline/t{t}/{fset}/{p}/{s}_ms"] = C.metric(v)
        for k, v in run["targets"].items():
            m[f"pipeline/t{t}/ratio/{k}"] = C.metric(v["ratio"], "x", "higher")
    if rep.get("overhead"):
        o = rep["overhead"]
        m[f"pipeline/t{o['threads']}/overhead_ms"] = C.metric(o["medians"]["overhead_ms"])
    if rep.get("sustained") and rep["sustained"].get("intervals"):
        m[f"sustained/{rep['sustained']['label']}/last_p50_ms"] = C.metric(rep["sustained"]["intervals"][-1]["p50_ms"])
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", help="thread counts, e.g. 4 or 1,4 (default min(cores, 4))")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 iteration, 3 demo crops, 2 ORL frames, no full-size photos")
    ap.add_argument("--iterations", type=int, default=10, help="passes over the one-face frame sets (default 10)")
    ap.add_argument("--photo-iterations", type=int, default=3, help="passes over the demo photos (default 3)")
    ap.add_argument("--orl-frames", type=int, default=8, help="ORL people made into 640x480 frames (default 8)")
    ap.add_argument("--vga-frames", type=int, default=0, help="use only the first N demo-face 640x480 crops")
    ap.add_argument("--no-photos", action="store_true", help="skip the full-size demo photos (slow to decode)")
    ap.add_argument("--no-decode", action="store_true", help="do not time the decode stage")
    ap.add_argument("--no-float32", action="store_true", help="skip edgelite's float32 pipeline")
    ap.add_argument("--no-opencv", action="store_true", help="skip the OpenCV baselines")
    ap.add_argument("--onnx-dir", help="folder with the two source ONNX files (default: the converter's cache)")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA), help="the repo's data/faces (demo/ and orl/)")
    ap.add_argument("--duration", type=float, default=0.0, help="then run int8 e2e for MIN minutes, logging")
    ap.add_argument("--interval", type=float, default=10.0, help="sustained log interval, seconds")
    ap.add_argument("--overhead-rounds", type=int, default=300,
                    help="rounds of the overhead figure (end-to-end minus the raw invokes; bench_overhead.py); "
                         "0: skip")
    ap.add_argument("--json", help="also write the JSON result here")
    ap.add_argument("--results-dir", help="base directory (default device_tests/results)")
    ap.add_argument("--device-id", help="override the hostname-derived device id")
    args = ap.parse_args(argv)
    if args.quick:
        args.iterations, args.photo_iterations, args.orl_frames, args.no_photos = 1, 1, 2, True
        args.overhead_rounds = min(args.overhead_rounds, 10)
        args.vga_frames = args.vga_frames or 3
    threads = C.parse_threads(args.threads) if args.threads else [C.default_threads()[-1]]

    from edgelite import zoo

    missing = ["yunet_320-int8", "sface-int8"]
    missing = [m for m in missing if not zoo.model_path(*m.split("-")).is_file()]
    if missing:
        print(f"zoo model(s) {', '.join(missing)} not built in {zoo.models_dir()}: build them on a workstation "
              "(pip install 'edgelite[convert]' && edgelite models build) and copy the folder here, or set "
              "EDGELITE_CACHE_DIR.", file=sys.stderr)
        return 2
    if _cv2() is None:
        import importlib.util

        if importlib.util.find_spec("PIL") is None:
            print("bench_pipeline needs an image decoder to read the demo photos and ORL faces: "
                  "pip install pillow (or opencv-python-headless, which also enables the OpenCV baseline).",
                  file=sys.stderr)
            return 2
    notes = {}
    pipes = ["int8"]
    if not args.no_float32:
        if all(zoo.model_path(n, "float32").is_file() for n in ("yunet_320", "sface")):
            pipes.append("float32")
        else:
            notes["float32"] = "float32 zoo models not built: float32 baseline skipped"
    onnx = None
    if not args.no_opencv:
        if _cv2() is None:
            notes["opencv"] = "OpenCV not installed (pip install opencv-python-headless): OpenCV baselines skipped"
        else:
            onnx = find_onnx(args.onnx_dir)
            if onnx is None:
                notes["opencv"] = ("source ONNX files not found (pass --onnx-dir with "
                                   f"{' and '.join(ONNX_NAMES.values())}): OpenCV baselines skipped")
            else:
                pipes += ["opencv", "opencv_res"]
    if not args.no_photos and not zoo.model_path("yunet_640", "int8").is_file():
        args.no_photos = True
        notes["photos"] = "yunet_640-int8 not built: the full-size photo set (detected at 640) is skipped"
    for n in notes.values():
        print("note:", n, file=sys.stderr)

    dev = args.device_id or C.device_id()
    used = [e for e in C.zoo_entries() if e["name"] in ("yunet_320", "yunet_640", "sface")
            and e["precision"] in pipes]
    models = [{k: e[k] for k in ("name", "precision", "path")} for e in used]
    if onnx:
        models += [{"name": k, "precision": "onnx", "path": str(v)} for k, v in onnx.items()]
    sysrec = C.system_record(models, probe_model=str(zoo.model_path("sface", "int8")), num_threads=threads[-1])
    sysrec["device_id"] = dev
    cv2 = _cv2()
    if cv2 is not None:
        sysrec["opencv_build_threads"] = cv2.getNumThreads()
    out_dir = C.results_dir(args.results_dir, dev)

    from edgelite.face import FaceDetector

    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="edgelite_frames_") as tmp:
        with FaceDetector.from_zoo("int8", num_threads=threads[-1]) as maker:
            frames, enrol, fnotes = make_frames(Path(args.data_dir), Path(tmp), maker, args.orl_frames,
                                                not args.no_photos, args.vga_frames)
        notes.update(fnotes)
        counts = {s: sum(fr.set == s for fr in frames) for s in dict.fromkeys(fr.set for fr in frames)}
        print(f"frames: {counts}; gallery: {len(enrol)} people; pipelines: {pipes}", flush=True)
        for t in threads:
            run = run_threads(t, frames, enrol, pipes, onnx, args)
            run["summary"] = summarise(run)
            run["targets"] = targets(run)
            for k, v in run["targets"].items():
                print(f"  t={t} {k}: {v['ratio']:.2f}x (int8 {v['int8_ms']:.2f} ms; target {v['target']}x)", flush=True)
            runs.append(run)

        overhead = None
        if args.overhead_rounds > 0:  # in a fresh process, as bench_overhead.py alone: not after this one's work
            import subprocess

            p = subprocess.run([sys.executable, str(HERE / "bench_overhead.py"), "--threads", str(threads[-1]),
                                "--rounds", str(args.overhead_rounds), "--results-dir", tmp, "--device-id", "o"],
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"bench_overhead.py failed: {p.stderr[-2000:]}")
            overhead = {k: v for k, v in json.loads((Path(tmp) / "o" / "overhead.json").read_text()).items()
                        if k not in ("schema", "kind", "system", "config")}
            m = overhead["medians"]
            print(f"  t={threads[-1]} overhead beyond the invokes: {m['overhead_ms']:.2f} ms (end-to-end "
                  f"{m['end_to_end_ms']:.2f} - YuNet {m['yunet_invoke_ms']:.2f} - SFace {m['sface_invoke_ms']:.2f}; "
                  f"target <= {overhead['target_overhead_ms']})", flush=True)

        sustained = None
        if args.duration > 0:
            pipe = EdgelitePipeline("int8", threads[-1])
            pipe.enrol(enrol)
            loop = [fr for fr in frames if fr.set in ("vga", "orl")]
            state = {"i": 0}

            def step():
                fr = loop[state["i"] % len(loop)]
                state["i"] += 1
                return pipe.process(fr, with_decode=False)[0]["e2e"]

            step()
            sustained = C.run_sustained(step, minutes=args.duration, interval_s=args.interval,
                                        label=f"int8-e2e-vga-t{threads[-1]}")
            pipe.close()

    config = {"threads": threads, "iterations": args.iterations, "photo_iterations": args.photo_iterations,
              "orl_frames": args.orl_frames, "photos": not args.no_photos, "decode": not args.no_decode,
              "pipelines": pipes, "quick": args.quick, "gallery_people": len(enrol), "threshold": THRESHOLD,
              "duration_min": args.duration, "frame_counts": counts, "wall_s": round(time.perf_counter() - t0, 1),
              "argv": sys.argv[1:] if argv is None else list(argv)}
    rep = {"schema": C.SCHEMA, "kind": "pipeline", "system": sysrec, "config": config, "notes": notes,
           "runs": [{k: v for k, v in r.items() if k != "samples"} for r in runs]}
    if overhead:
        rep["overhead"] = overhead
    if sustained:
        rep["sustained"] = sustained
    rep["metrics"] = build_metrics(rep)
    plt = C.matplotlib_or_none()
    plots = plot_stages(plt, rep, out_dir)
    if sustained and C.plot_sustained(plt, sustained, out_dir / "pipeline_sustained.png",
                                      f"Sustained {sustained['label']} -- {dev}"):
        plots.append("pipeline_sustained.png")
    rep["plots"] = plots
    C.write_json(out_dir / "pipeline.json", rep)
    (out_dir / "pipeline.md").write_text(to_markdown(rep, plots))
    C.write_metrics_csv(out_dir / "pipeline.metrics.csv", rep["metrics"])
    if args.json:
        C.write_json(args.json, rep)
    print(f"wrote {out_dir}/pipeline.json, pipeline.md, pipeline.metrics.csv" +
          (f", {', '.join(plots)}" if plots else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
