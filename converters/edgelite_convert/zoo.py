"""Build the model zoo: YuNet (face detector, 320 and 640 px) and SFace (face
embedder), int8 and float32, with embedded metadata, into the cache.

Calibration data comes from the project's ``data/faces`` (ORL faces and
public-domain NASA photos, attribution in ``data/faces/README.md``):

* detector: synthetic scenes with faces at many scales — ORL faces pasted at
  12..S/2 px onto backgrounds cut from the NASA photos, plus letterboxed crops of
  the photos themselves — so every stride head (8/16/32) sees activations;
* embedder: aligned 112x112 crops produced by *our float pipeline* (float YuNet →
  5-point alignment), the exact distribution the int8 embedder sees at run time.
  ORL subjects s1..s20, each crop also mirrored (400 crops); s21..s40 stay out
  of calibration so accuracy checks on them are not flattered (s21, s22 give the
  conversion report's held-out int8-vs-float figures).

  Measured here (mean cosine of int8 vs OpenCV fp32 features on 86 held-out crops,
  one conversion each): s1..s20 0.978; + mirrored 0.984 (chosen); + the 7 colour
  faces of the NASA photos 0.977; s1..s18 + photos + mirrored 0.967. Min/max
  calibration is sensitive to a few unusual crops (the photos' faces widen some
  ranges); mirroring adds variety without outliers.

Writes are atomic; each model gets a ``.json`` sidecar (build report) and a
``.golden.npz`` (input + outputs computed here) for on-device parity tests.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from edgelite import zoo as rzoo
from edgelite.image import load_image
from edgelite.preprocess import PreprocessSpec
from edgelite.fileio import atomic_write_bytes

from .convert import ConvertOptions, convert
from .report import ConversionReport
from .sources import LIVENESS_SOURCES, SOURCE_MODELS, fetch_sources, liveness_sources

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2] / "data" / "faces"
DETECTOR_SIZES = (320, 640)
CALIB_SUBJECTS = [f"s{i}" for i in range(1, 21)]
#: Held-out crops for the conversion report's int8-vs-float figures. Measuring on
#: them does not change the model, so they may come from the evaluation subjects.
VALIDATION_SUBJECTS = ["s21", "s22"]


def _cv2():
    import cv2
    return cv2


def detector_calibration(size: int, n: int = 140, seed: int = 0, data: Path = DATA) -> list[np.ndarray]:
    """Deterministic calibration scenes (uint8 RGB, ``size``x``size``) with faces at many scales."""
    cv2 = _cv2()
    from edgelite.face.geometry import plan_resize
    rng = np.random.default_rng(seed)
    photos = [load_image(p) for p in sorted((data / "demo").glob("*")) if p.suffix.lower() in (".jpg", ".png")]
    orl = [load_image(p) for p in sorted((data / "orl").rglob("*.pgm"))]
    out = []
    for i in range(n):
        src = photos[rng.integers(len(photos))]
        h, w = src.shape[:2]
        if i % 3 == 0:
            # letterboxed crop of a real photo (zoom from whole photo to a quarter of it)
            f = rng.uniform(0.35, 1.0)
            ch, cw = int(h * f), int(w * f)
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            crop = src[y:y + ch, x:x + cw]
            plan = plan_resize(crop.shape[:2], (size, size), "letterbox")
            out.append(plan.apply(crop, pad_value=0))
            continue
        # mosaic: background from a photo, ORL faces pasted at random scales
        f = rng.uniform(0.15, 0.6)
        ch = cw = int(min(h, w) * f)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        canvas = cv2.resize(src[y:y + ch, x:x + cw], (size, size), interpolation=cv2.INTER_AREA)
        for _ in range(rng.integers(1, 7)):
            face = orl[rng.integers(len(orl))]
            fw = int(rng.uniform(12, size / 2))
            fh = int(fw * 112 / 92)
            if fh >= size:
                continue
            face = cv2.resize(face, (fw, fh), interpolation=cv2.INTER_AREA if fw < 92 else cv2.INTER_LINEAR)
            if face.ndim == 2:
                face = face[..., None]
            if face.shape[2] == 1:
                face = np.repeat(face, 3, axis=2)
            py, px = rng.integers(0, size - fh), rng.integers(0, size - fw)
            canvas[py:py + fh, px:px + fw] = face
        out.append(canvas)
    return out


def embedder_calibration(detector, data: Path = DATA, subjects=CALIB_SUBJECTS,
                         flip: bool = True, demo: bool = True) -> tuple[list[np.ndarray], dict]:
    """Aligned 112x112 RGB crops from the float pipeline (detector → align)."""
    from edgelite.face.align import align_face
    crops, failed, total = [], 0, 0
    files = [p for s in subjects for p in sorted((data / "orl" / s).glob("*.pgm"))]
    if demo:
        files += [p for p in sorted((data / "demo").glob("*")) if p.suffix.lower() in (".jpg", ".png")]
    for p in files:
        img = load_image(p)
        if "orl" in p.parts:
            img = pad_tight_crop(img)
        total += 1
        res = detector.detect(img)
        if not len(res):
            failed += 1
            continue
        for face in (res.faces if "demo" in p.parts else res.faces[:1]):
            crop = align_face(img, face.landmarks)
            crops.append(crop)
            if flip:
                # mirrored crops are equally valid aligned faces (the template is nearly
                # symmetric); they double the variety of activation statistics for free
                crops.append(np.ascontiguousarray(crop[:, ::-1]))
    return crops, {"images": total, "no_face": failed, "crops": len(crops), "mirrored": flip}


def pad_tight_crop(img: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """ORL images are tight face crops; YuNet needs context around a face, so pad
    each side by ``factor`` of the size with black."""
    h, w = img.shape[:2]
    py, px = int(h * factor), int(w * factor)
    out = np.zeros((h + 2 * py, w + 2 * px, img.shape[2]), img.dtype)
    out[py:py + h, px:px + w] = img
    return out


def _write(cache, name: str, precision: str, data: bytes, report, golden: dict) -> Path:
    path = rzoo.model_path(name, precision, cache)
    atomic_write_bytes(path, data)
    # The runtime verifies every zoo model against this before loading it.
    rzoo.write_sha256_sidecar(path, hashlib.sha256(data).hexdigest())
    if not isinstance(report, ConversionReport):  # the float32 twin's short record
        report = json.dumps(report, indent=2, default=str)
    else:
        report = report.to_json()
    atomic_write_bytes(path.with_suffix(".json"), report.encode())
    import io
    buf = io.BytesIO()
    np.savez(buf, **golden)
    atomic_write_bytes(path.with_suffix(".golden.npz"), buf.getvalue())
    return path


def _golden(model_bytes: bytes, raw_input: np.ndarray, spec: PreprocessSpec | None = None) -> dict:
    """Raw (quantized where the model is) input and outputs computed here, for device parity.
    ``raw_input`` was made with ``spec``; a model converted to take the other channel order
    (``fold_channel_order``) gets it reversed, so the golden is the same image."""
    from edgelite.model import Model
    m = Model(model_bytes, num_threads=1)
    if spec is not None and m.preprocessing is not None and m.preprocessing.color != spec.color:
        raw_input = np.ascontiguousarray(raw_input[..., ::-1])
    outs = m.run(raw_input, quantize=True, dequantize=False)
    g = {"input": m._prepare(m.inputs[0], raw_input, True)}
    for k, v in outs.items():
        g[f"out:{k}"] = v
    return g


def liveness_calibration(detector, subjects=CALIB_SUBJECTS, data: Path = DATA, size: int = 320,
                         seed: int = 0, flip: bool = True) -> tuple[dict[str, list[np.ndarray]], dict]:
    """Liveness crops (RGB 80x80, one list per MiniFASNet) from ORL faces on NASA backgrounds.

    MiniFASNet looks at the face *with context* (2.7x and 4x the face box), so
    each ORL face (a tight crop) is pasted at 70-130 px onto a background cut
    from the NASA photos, found by our float YuNet, and cropped by
    :func:`edgelite.face.liveness.liveness_crop`, the function inference uses.
    The photos' own faces are not used, so they stay a held-out check.
    """
    cv2 = _cv2()
    from edgelite.face.liveness import LIVENESS_MODELS, liveness_crop
    rng = np.random.default_rng(seed)
    photos = [load_image(p) for p in sorted((data / "demo").glob("*")) if p.suffix.lower() in (".jpg", ".png")]
    files = [p for s in subjects for p in sorted((data / "orl" / s).glob("*.pgm"))]
    out: dict[str, list[np.ndarray]] = {n: [] for n in LIVENESS_MODELS}
    failed = 0
    for p in files:
        src = photos[rng.integers(len(photos))]
        h, w = src.shape[:2]
        side = int(min(h, w) * rng.uniform(0.2, 0.6))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        canvas = cv2.resize(src[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        face = load_image(p)
        fw = int(rng.uniform(70, 130))
        fh = int(fw * 112 / 92)
        face = cv2.resize(face, (fw, fh), interpolation=cv2.INTER_LINEAR)
        py = rng.integers(size // 4 - fh // 4, size - fh - size // 8)
        px = rng.integers(size // 8, size - fw - size // 8)
        canvas[py:py + fh, px:px + fw] = face
        res = detector.detect(canvas)
        if not len(res):
            failed += 1
            continue
        f = res.largest()
        variants = [canvas]
        if flip:
            variants.append(np.ascontiguousarray(canvas[:, ::-1]))
        for k, img in enumerate(variants):
            box = f.box if k == 0 else np.array([size - f.box[2], f.box[1], size - f.box[0], f.box[3]], np.float32)
            for name, scale in LIVENESS_MODELS.items():
                out[name].append(liveness_crop(img, box, scale))
    return out, {"images": len(files), "no_face": failed, "crops": len(out["minifasnet_v2"]), "mirrored": flip}


def build_liveness(cache=None, *, progress: bool = True, say=print) -> dict:
    """Convert the two MiniFASNet liveness models (int8 + float32) into the zoo."""
    from edgelite.face.detector import FaceDetector
    srcs = liveness_sources()
    det = FaceDetector.from_model(rzoo.require_model("yunet_320", "float32", cache))
    crops, stats = liveness_calibration(det)
    spec = PreprocessSpec(size=(80, 80), resize="none", color="BGR", mean=0.0, std=1.0)
    report = {}
    for name, src in srcs.items():
        meta = LIVENESS_SOURCES[name]
        say(f"[zoo] building {name} (int8 + float32) from {src.name} ...")
        t0 = time.perf_counter()
        calib = [spec.apply(c) for c in crops[name]]
        res = convert(src, calibration=calib, preprocess=spec, task="face_liveness", name=name,
                      input_shapes={"input": [1, 3, 80, 80]},
                      options=ConvertOptions(max_calibration_samples=len(calib), holdout=16,
                                             fold_channel_order=True),
                      progress=progress, extra_metadata={"source_license": meta.license, "origin": meta.origin,
                                                         "calibration_crops": stats})
        rep = res.report.with_extra(calibration_crops=stats, build_seconds=round(time.perf_counter() - t0, 1))
        _write(cache, name, "int8", res.model, rep, _golden(res.model, calib[-1], spec))
        _write(cache, name, "float32", res.float_model, {"source": rep["source"], "precision": "float32"},
               _golden(res.float_model, calib[-1]))
        report[name] = _summary(rep)
        say(f"[zoo] {name}: {_fmt(rep)}")
    return report


def build_zoo(cache=None, source_dir=None, force: bool = False, progress: bool = True,
              names=("yunet_320", "yunet_640", "sface", "minifasnet")) -> dict:
    """Build the zoo models (skipping those present unless ``force``); return a report."""
    t_all = time.perf_counter()
    srcs = fetch_sources(source_dir, cache=cache)
    report: dict = {"cache": str(rzoo.cache_dir(cache)), "models": {}}

    def say(msg):
        if progress:
            print(msg, flush=True)

    def present(name):
        # A model without its SHA-256 sidecar (built before integrity checks) is rebuilt.
        return all(rzoo.model_path(name, p, cache).is_file() and rzoo.sha256_sidecar(
            rzoo.model_path(name, p, cache)).is_file() for p in rzoo.PRECISIONS)

    yunet_src = SOURCE_MODELS["yunet"]
    for size in DETECTOR_SIZES:
        name = f"yunet_{size}"
        if name not in names or (present(name) and not force):
            continue
        say(f"[zoo] building {name} (int8 + float32) from {yunet_src.filename} ...")
        t0 = time.perf_counter()
        spec = PreprocessSpec(size=(size, size), resize="letterbox", color="BGR", mean=0.0, std=1.0)
        scenes = detector_calibration(size)
        calib = [spec.apply(s) for s in scenes]
        res = convert(srcs["yunet"], calibration=calib, preprocess=spec, task="face_detection", name=name,
                      input_shapes={"input": [1, 3, size, size]},
                      options=ConvertOptions(max_calibration_samples=len(calib), holdout=16,
                                             fold_channel_order=True),
                      progress=progress, extra_metadata={"source_license": yunet_src.license,
                                                         "origin": yunet_src.origin})
        g_in = calib[-1]
        rep = res.report.with_extra(build_seconds=round(time.perf_counter() - t0, 1))
        _write(cache, name, "int8", res.model, rep, _golden(res.model, g_in, spec))
        _write(cache, name, "float32", res.float_model, {"source": rep["source"], "precision": "float32"},
               _golden(res.float_model, g_in))
        report["models"][name] = _summary(rep)
        say(f"[zoo] {name}: {_fmt(rep)}")

    if "sface" in names and (force or not present("sface")):
        from edgelite.face.detector import FaceDetector
        sf = SOURCE_MODELS["sface"]
        say(f"[zoo] building sface (int8 + float32) from {sf.filename} ...")
        t0 = time.perf_counter()
        det = FaceDetector.from_model(rzoo.require_model("yunet_320", "float32", cache))
        crops, stats = embedder_calibration(det, subjects=CALIB_SUBJECTS, flip=True, demo=False)
        held, hstats = embedder_calibration(det, subjects=VALIDATION_SUBJECTS, flip=False, demo=False)
        stats["validation_crops"] = hstats["crops"]
        spec = PreprocessSpec(size=(112, 112), resize="none", color="RGB", mean=0.0, std=1.0)
        calib = [c.astype(np.float32)[None] for c in crops]
        res = convert(srcs["sface"], calibration=calib, preprocess=spec, task="face_embedding", name="sface",
                      validation=[c.astype(np.float32)[None] for c in held],
                      input_shapes={"data": [1, 3, 112, 112]},
                      options=ConvertOptions(max_calibration_samples=len(calib), holdout=0),
                      progress=progress, extra_metadata={"source_license": sf.license, "origin": sf.origin,
                                                         "calibration_crops": stats})
        rep = res.report.with_extra(calibration_crops=stats, build_seconds=round(time.perf_counter() - t0, 1))
        _write(cache, "sface", "int8", res.model, rep, _golden(res.model, calib[-1]))
        _write(cache, "sface", "float32", res.float_model, {"source": rep["source"], "precision": "float32"},
               _golden(res.float_model, calib[-1]))
        report["models"]["sface"] = _summary(rep)
        say(f"[zoo] sface: {_fmt(rep)}")
    if "minifasnet" in names and (force or not all(present(n) for n in rzoo.OPTIONAL_MODELS)):
        report["models"].update(build_liveness(cache, progress=progress, say=say))
    report["seconds"] = round(time.perf_counter() - t_all, 1)
    report["list"] = [e.to_dict() for e in rzoo.list_models(cache)]
    return report


def _summary(rep: dict) -> dict:
    v = rep.get("validation") or {}
    return {"fully_integer": rep["fully_integer"], "size_bytes": rep["size_bytes"],
            "xnnpack_unsupported": rep.get("xnnpack_unsupported"),
            "rewrites": len(rep.get("rewrites", [])),
            "validation_cosine_min": v.get("cosine_min_over_outputs"),
            "onnx_vs_float_tflite_max_abs_error": (rep.get("onnx_vs_float_tflite") or {}).get(
                "max_abs_error_overall"),
            "build_seconds": rep.get("build_seconds")}


def _fmt(rep: dict) -> str:
    s = _summary(rep)
    return (f"fully integer {s['fully_integer']}, {s['size_bytes'] / 1e6:.2f} MB, "
            f"int8 vs float cosine (min over outputs) {s['validation_cosine_min']}, "
            f"float TFLite vs onnxruntime max|err| {s['onnx_vs_float_tflite_max_abs_error']}, "
            f"XNNPACK-unsupported {s['xnnpack_unsupported']}, {s['build_seconds']} s")
