"""Layer 2: :class:`FaceDetector` — YuNet (int8 or float32 TFLite) on any image size.

Images are HWC ``uint8`` **RGB**; the model's embedded preprocessing letterboxes
them into its fixed input (top-left anchored, zero padded, like OpenCV's
``FaceDetectorYN``) in the BGR order YuNet was trained on; the detector runs it,
decodes the three stride heads (8/16/32) with their 5 landmarks, applies the score
threshold, top-k and NMS, and maps boxes/landmarks back to original-image pixels.

Input size: the zoo ships YuNet at 320x320 and 640x640 (fixed shapes keep every
op on XNNPACK's static int8 path). ``input_size="auto"`` picks 320 for frames
whose long side is ≤ 1280 px (video, portraits: faces are large) and 640 for big
photos (a 5568x3712 photo at 640 keeps a 200 px face at ~23 px, above YuNet's
~10 px floor; at 320 it would be ~11 px, at risk).
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from .. import zoo
from ..errors import InputError
from ..image import as_rgb
from ..model import Model
from ..preprocess import PreprocessSpec
from ..task import Task
from .types import DetectionResult
from .yunet import DEFAULT_NMS_THRESHOLD, DEFAULT_SCORE_THRESHOLD, DEFAULT_TOP_K, YunetDecoder, yunet_spec

ZOO_SIZES = (320, 640)
AUTO_SMALL_MAX_SIDE = 1280


@dataclasses.dataclass(frozen=True)
class FaceDetectorOptions:
    """Options of :class:`FaceDetector` (validated).

    Attributes:
        precision: zoo model precision, ``"int8"`` (default) or ``"float32"``.
        input_size: ``"auto"``, 320 or 640 (zoo models), ignored with ``model_path``.
        model_path: a YuNet ``.tflite`` of your own (overrides the zoo).
        score_threshold: 0.6 as the OpenCV zoo's YuNet wrapper.
        nms_threshold: IoU threshold of greedy NMS (0.3, as OpenCV).
        top_k: candidates kept before NMS (5000, as OpenCV).
        max_faces: keep at most this many faces (``None``: all).
        num_threads: interpreter threads (``None``: min(cores, 4)).
        cache_dir: zoo cache override.
        resize: ``letterbox`` (default: keeps the aspect ratio, pads; boxes stay
            accurate) or ``stretch`` (fills the input: a bit more resolution for
            wide frames, faces get distorted — YuNet still finds them, boxes are
            mapped back per axis).
    """

    precision: str = "int8"
    input_size: int | str = "auto"
    model_path: str | None = None
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    nms_threshold: float = DEFAULT_NMS_THRESHOLD
    top_k: int = DEFAULT_TOP_K
    max_faces: int | None = None
    num_threads: int | None = None
    cache_dir: str | None = None
    resize: str = "letterbox"

    def __post_init__(self):
        if self.resize not in ("letterbox", "stretch"):
            raise InputError(f"resize must be 'letterbox' (keeps aspect ratio) or 'stretch', got {self.resize!r}")
        if self.precision not in zoo.PRECISIONS:
            raise InputError(f"precision must be one of {zoo.PRECISIONS}, got {self.precision!r}")
        if self.input_size != "auto" and self.input_size not in ZOO_SIZES:
            raise InputError(f"input_size must be 'auto' or one of {ZOO_SIZES}, got {self.input_size!r}")
        for name in ("score_threshold", "nms_threshold"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {v!r}")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise InputError(f"top_k must be a positive int, got {self.top_k!r}")
        if self.max_faces is not None and (not isinstance(self.max_faces, int) or self.max_faces < 1):
            raise InputError(f"max_faces must be a positive int or None, got {self.max_faces!r}")


class FaceDetector(Task):
    """Detect faces with YuNet. Models load lazily, on the first :meth:`detect`.

    The input tensor is made by the model's own embedded :class:`PreprocessSpec`
    (:meth:`edgelite.Model.prepare`: the function the converter calibrated with);
    a YuNet file without metadata gets :func:`~edgelite.face.yunet.yunet_spec`.
    This class only picks the model and decodes its outputs.

    Args:
        options: :class:`FaceDetectorOptions`; keyword ``overrides`` replace its
            fields (an unknown name raises :class:`~edgelite.errors.InputError`).

    Example::

        with FaceDetector() as det:
            for face in det.detect(image_rgb):
                print(face.box, face.score)
    """

    Options = FaceDetectorOptions

    @classmethod
    def from_zoo(cls, precision: str = "int8", **kw) -> "FaceDetector":
        return cls(precision=precision, **kw)

    @classmethod
    def from_model(cls, path: str | os.PathLike, **kw) -> "FaceDetector":
        return cls(model_path=str(path), **kw)

    def model(self, size: int = 320) -> Model:
        """The underlying :class:`edgelite.Model` for an input size (loads it)."""
        o = self.options

        def load():
            path = o.model_path or zoo.require_model(f"yunet_{size}", o.precision, o.cache_dir)
            return Model(path, num_threads=o.num_threads)

        return self._model(0 if o.model_path else size, load)

    def _decoder(self, m: Model, spec: PreprocessSpec) -> YunetDecoder:
        """The decoder of ``m``'s raw outputs (layout checked once per model)."""
        cache = self.__dict__.setdefault("_decoders", {})
        hit = cache.get(id(m))
        if hit is None or hit[0] is not m:
            o = self.options
            hit = cache[id(m)] = (m, YunetDecoder.for_model(
                m, spec.size, score_threshold=o.score_threshold, nms_threshold=o.nms_threshold, top_k=o.top_k,
                max_faces=o.max_faces))
        return hit[1]

    def choose_size(self, image_hw) -> int:
        if self.options.input_size != "auto":
            return int(self.options.input_size)
        return 320 if max(image_hw) <= AUTO_SMALL_MAX_SIDE else 640

    def spec(self, model: Model) -> PreprocessSpec:
        """The preprocessing of ``model`` (embedded, else YuNet's), with this detector's resize mode."""
        spec = model.preprocessing or yunet_spec(tuple(model.inputs[0].shape[1:3]))
        if spec.resize.value != self.options.resize:
            spec = dataclasses.replace(spec, resize=self.options.resize)
        return spec

    def detect(self, image: np.ndarray) -> DetectionResult:
        """All faces in an HWC uint8 RGB image, best first, in original pixels.

        Grey and RGBA images are converted (:func:`edgelite.image.as_rgb`). Stage
        timings (ms) are in the result's ``timings``.
        """
        return self._detect_rgb(as_rgb(image))

    __call__ = detect

    def detect_many(self, images) -> list[DetectionResult]:
        """:meth:`detect` for several images, with one model run per input size.

        Images that map to the same input size are letterboxed and stacked into one
        batch (the zoo models are batch-polymorphic; a batch-1 model file is run in a
        loop by :class:`edgelite.Model`). Results equal :meth:`detect` on each image.
        What a batch buys on a given CPU is measured by
        ``device_tests/bench_model_batch.py``; the server uses this for micro-batching.
        """
        imgs = [as_rgb(im) for im in images]
        groups: dict[int, list[int]] = {}
        for k, img in enumerate(imgs):
            groups.setdefault(self.choose_size(img.shape[:2]), []).append(k)
        out: list = [None] * len(imgs)
        o = self.options
        for size, idx in groups.items():
            t0 = time.perf_counter()
            m = self.model(size)
            spec = self.spec(m)
            plans = [spec.plan(imgs[k].shape[:2]) for k in idx]
            x = spec.to_tensor(np.stack([p.apply(imgs[k]) for p, k in zip(plans, idx)]), m.inputs[0])
            t1 = time.perf_counter()
            outs = m.run(x, quantize=False, dequantize=False)
            t2 = time.perf_counter()
            dec = self._decoder(m, spec)
            n = len(idx)
            for j, (k, plan) in enumerate(zip(idx, plans)):
                out[k] = DetectionResult(dec.faces({name: v[j:j + 1] for name, v in outs.items()}, plan),
                                         plan.src_hw, {"preprocess": (t1 - t0) * 1e3 / n,
                                                       "inference": (t2 - t1) * 1e3 / n})
        return out

    def _setup(self, hw: tuple[int, int]) -> tuple:
        """``(model, spec, plan, decoder)`` for frames of ``hw``, worked out once per frame
        size (a camera's frames all have one) while the model stays loaded."""
        o = self.options
        size = self.choose_size(hw)
        key = 0 if o.model_path else size
        setups = self.__dict__.setdefault("_setups", {})
        hit = setups.get(hw)
        if hit is None or self._models.get(key) is not hit[0]:
            m = self.model(size)
            spec = self.spec(m)
            if len(setups) >= 16:
                setups.clear()
            hit = setups[hw] = (m, spec, spec.plan(hw), self._decoder(m, spec))
        return hit

    def _detect_rgb(self, img: np.ndarray) -> DetectionResult:
        """:meth:`detect` for an image already validated by ``as_rgb`` (one check per frame)."""
        m, spec, plan, decoder = self._setup(img.shape[:2])
        timings: dict[str, float] = {}
        outs = m.run_image(img, plan, spec, dequantize=False, timings=timings)
        t2 = time.perf_counter()
        faces = decoder.faces(outs, plan)
        timings["decode"] = (time.perf_counter() - t2) * 1e3
        return DetectionResult(faces, plan.src_hw, timings)
