"""Layer 2: :class:`FaceDetector` — YuNet (int8 or float32 TFLite) on any image size.

Images are HWC ``uint8`` **RGB**; the detector letterboxes them into the model's
fixed input (top-left anchored, zero padded, like OpenCV's ``FaceDetectorYN``),
swaps to the BGR order YuNet was trained on, runs, decodes the three stride
heads (8/16/32) with their 5 landmarks, applies the score threshold, top-k and
NMS, and maps boxes/landmarks back to original-image pixels.

Input size: the zoo ships YuNet at 320x320 and 640x640 (fixed shapes keep every
op on XNNPACK's static int8 path). ``input_size="auto"`` picks 320 for frames
whose long side is ≤ 1280 px (video, portraits: faces are large) and 640 for big
photos (a 5568x3712 photo at 640 keeps a 200 px face at ~23 px, above YuNet's
~10 px floor; at 320 it would be ~11 px, at risk).
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np

from .. import zoo
from ..errors import InputError
from ..model import Model
from ..preprocess import check_image
from .geometry import ResizeMode, plan_resize
from .types import DetectionResult
from .yunet import DEFAULT_NMS_THRESHOLD, DEFAULT_SCORE_THRESHOLD, DEFAULT_TOP_K, decode_yunet

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


class FaceDetector:
    """Detect faces with YuNet. Models load lazily, on the first :meth:`detect`.

    Example::

        with FaceDetector() as det:
            for face in det.detect(image_rgb):
                print(face.box, face.score)
    """

    def __init__(self, options: FaceDetectorOptions | None = None, **kw):
        self.options = options or FaceDetectorOptions(**kw)
        if options is not None and kw:
            self.options = dataclasses.replace(options, **kw)
        self._models: dict[int, Model] = {}
        self._lock = threading.Lock()
        self.last_timings: dict[str, float] = {}

    @classmethod
    def from_zoo(cls, precision: str = "int8", **kw) -> "FaceDetector":
        return cls(FaceDetectorOptions(precision=precision, **kw))

    @classmethod
    def from_model(cls, path: str | os.PathLike, **kw) -> "FaceDetector":
        return cls(FaceDetectorOptions(model_path=str(path), **kw))

    def _model_for(self, size: int) -> Model:
        key = 0 if self.options.model_path else size
        with self._lock:
            m = self._models.get(key)
            if m is None:
                path = self.options.model_path or zoo.require_model(
                    f"yunet_{size}", self.options.precision, self.options.cache_dir)
                m = Model(path, num_threads=self.options.num_threads)
                self._models[key] = m
            return m

    def choose_size(self, image_hw) -> int:
        if self.options.input_size != "auto":
            return int(self.options.input_size)
        return 320 if max(image_hw) <= AUTO_SMALL_MAX_SIDE else 640

    def model(self, size: int = 320) -> Model:
        """The underlying :class:`edgelite.Model` for an input size (loads it)."""
        return self._model_for(size)

    def detect(self, image: np.ndarray) -> DetectionResult:
        """All faces in an HWC uint8 RGB image, best first, in original pixels."""
        t0 = time.perf_counter()
        img = check_image(image)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        m = self._model_for(self.choose_size(img.shape[:2]))
        spec = m.inputs[0]
        in_hw = (spec.shape[1], spec.shape[2])
        plan = plan_resize(img.shape[:2], in_hw, ResizeMode(self.options.resize))
        canvas = _rgb_to_bgr(plan.apply(img, pad_value=0))  # YuNet was trained on OpenCV (BGR) images
        if spec.quantized:
            # uint8 pixel -> int8 via the input's scale/zero-point in one table lookup
            x = apply_lut(canvas, _lut(spec.scale, spec.zero_point, np.dtype(spec.dtype)))[None]
        else:
            x = canvas.astype(np.float32)[None]
        t1 = time.perf_counter()
        outs = m.run(x, quantize=False)
        t2 = time.perf_counter()
        o = self.options
        res = decode_yunet(outs, in_hw, score_threshold=o.score_threshold, nms_threshold=o.nms_threshold,
                           top_k=o.top_k, max_faces=o.max_faces, plan=plan)
        t3 = time.perf_counter()
        self.last_timings = {"preprocess_ms": (t1 - t0) * 1e3, "inference_ms": (t2 - t1) * 1e3,
                             "decode_ms": (t3 - t2) * 1e3}
        return res

    __call__ = detect

    def close(self):
        self._models.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_LUTS: dict = {}


def _rgb_to_bgr(img: np.ndarray) -> np.ndarray:
    """Contiguous BGR copy (``cv2.cvtColor`` is far faster than a negative-stride copy)."""
    from .._optional import cv2_or_none

    cv2 = cv2_or_none()
    if cv2 is not None:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(img[:, :, ::-1])


def apply_lut(pixels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut[pixels]`` for uint8 pixels and a 256-entry 8-bit table: ``cv2.LUT`` when
    OpenCV is installed (about 4x faster than numpy fancy indexing here), else numpy.
    An int8 table is applied through its uint8 view: same bytes, so exact."""
    from .._optional import cv2_or_none

    cv2 = cv2_or_none()
    if cv2 is not None and lut.dtype.itemsize == 1 and pixels.dtype == np.uint8:
        out = cv2.LUT(np.ascontiguousarray(pixels), lut.view(np.uint8))
        return out.reshape(pixels.shape).view(lut.dtype)
    return lut[pixels]


def _lut(scale: float, zp: int, dtype: np.dtype) -> np.ndarray:
    key = (scale, zp, dtype.str)
    t = _LUTS.get(key)
    if t is None:
        info = np.iinfo(dtype)
        t = np.clip(np.round(np.arange(256) / scale) + zp, info.min, info.max).astype(dtype)
        _LUTS[key] = t
    return t
