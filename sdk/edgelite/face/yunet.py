"""YuNet (2023mar) face detector: input preprocessing and output decoding.

The network is a fully-convolutional, anchor-free detector with three heads at
strides 8, 16 and 32. For an input of ``H x W`` (both multiples of 32) each head
predicts, for every cell of its ``(H/s) x (W/s)`` grid in row-major order:

* ``cls_s`` ``[1, N, 1]`` and ``obj_s`` ``[1, N, 1]``: class and objectness
  probabilities; score = ``sqrt(clip(cls, 0, 1) * clip(obj, 0, 1))``;
* ``bbox_s`` ``[1, N, 4]``: ``(dx, dy, log w, log h)`` in units of the stride, with
  centre ``((col + dx) * s, (row + dy) * s)`` and size ``(exp(log w) * s, exp(log h) * s)``;
* ``kps_s`` ``[1, N, 10]``: five ``(dx, dy)`` landmark offsets, point
  ``((col + dx) * s, (row + dy) * s)``.

Note the prior sits at the cell's top-left corner ``(col * s, row * s)``, not at
its centre. This is exactly what OpenCV's ``cv::FaceDetectorYN`` computes; we
checked our decoder against ``cv2.FaceDetectorYN`` (OpenCV 4.14) on the demo photos:
identical boxes and landmarks to < 1e-4 px (``tests/test_yunet_decode.py``).

Preprocessing the network expects (:func:`yunet_spec`, embedded in the zoo models):
**BGR** channel order, values 0..255 with no mean/std normalisation. The ONNX model
is NCHW 640x640; the TFLite builds are NHWC and may be built at other sizes. OpenCV
does not resize: it pads the image bottom/right with zeros up to a multiple of 32.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from ..preprocess import PreprocessSpec, ResizeMode, ResizePlan
from ..quant import dequantize
from .geometry import greedy_nms
from .types import DetectionResult, Face

#: Strides of the three detection heads.
YUNET_STRIDES: tuple[int, ...] = (8, 16, 32)

#: The twelve output tensor names, grouped by kind then stride (the ONNX order).
YUNET_OUTPUT_NAMES: tuple[str, ...] = tuple(
    f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES
)

#: Channels per output kind.
_KIND_CHANNELS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}

#: Default score threshold. 0.6 is the default of the OpenCV Zoo YuNet wrapper
#: (``cv2.FaceDetectorYN.create`` itself defaults to 0.9, which drops faces
#: narrower than ~14 input px); real faces on the demo photos score 0.86-0.96,
#: 10-12 px faces 0.5-0.85.
DEFAULT_SCORE_THRESHOLD: float = 0.6
#: Default NMS IoU threshold, as OpenCV.
DEFAULT_NMS_THRESHOLD: float = 0.3
#: Default pre-NMS candidate cap, as OpenCV.
DEFAULT_TOP_K: int = 5000


def _check_input_hw(input_hw: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in input_hw)
    except (TypeError, ValueError) as exc:
        raise InputError(f"input_hw must be (height, width), got {input_hw!r}") from exc
    m = max(YUNET_STRIDES)
    if h <= 0 or w <= 0 or h % m or w % m:
        raise InputError(
            f"YuNet input size must be positive multiples of {m} (its coarsest stride), got {(h, w)}; "
            f"pad or resize the image to e.g. {(-(-max(h, 1) // m) * m, -(-max(w, 1) // m) * m)}"
        )
    return h, w


def yunet_priors(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid priors for all three heads, concatenated in output order.

    Returns:
        ``(cols, rows, strides)``, each ``float32 (N_total,)``, read-only.
    """
    return _priors(*_check_input_hw(input_hw))


@functools.lru_cache(maxsize=16)  # priors depend only on the size; a camera loop reuses one
def _priors(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cols, rows, strides = [], [], []
    for s in YUNET_STRIDES:
        nr, nc = h // s, w // s
        r, c = np.divmod(np.arange(nr * nc, dtype=np.int64), nc)  # row-major
        cols.append(c)
        rows.append(r)
        strides.append(np.full(nr * nc, s))
    out = tuple(np.concatenate(v).astype(np.float32) for v in (cols, rows, strides))
    for a in out:
        a.setflags(write=False)
    return out  # type: ignore[return-value]


def _missing(outputs: Mapping[str, Any]) -> None:
    if not isinstance(outputs, Mapping):
        raise InputError(
            f"YuNet outputs must be a mapping name -> array with keys {list(YUNET_OUTPUT_NAMES)}, "
            f"got {type(outputs).__name__}"
        )
    missing = [n for n in YUNET_OUTPUT_NAMES if n not in outputs]
    if missing:
        raise InputError(
            f"YuNet outputs are missing {missing}; got keys {sorted(outputs)}. "
            "The model's output tensors must keep the 2023mar names (cls_8 ... kps_32)."
        )


class YunetDecoder:
    """YuNet decoding for one output layout, checked once, then reused per frame.

    Built from the twelve outputs' dtypes and element counts (and the scale/zero-point
    of integer ones) for an input size and thresholds. :class:`FaceDetector` keeps one
    per model; :func:`decode_yunet` builds one per call.

    int8 outputs stay raw: ``score = sqrt(clip(cls) * clip(obj)) >= thr`` needs both
    ``cls`` and ``obj`` ``>= thr²`` (each is at most 1), so the raw bytes are compared
    with per-cell floors and only the candidates are dequantized, with the arithmetic
    of :func:`edgelite.quant.dequantize`: the faces are those of dequantizing every
    output first, to the bit.
    """

    def __init__(self, input_hw: tuple[int, int], layout: Mapping[str, tuple[Any, int]],
                 quantization: Mapping[str, tuple[float, int]] | None = None, *,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD, nms_threshold: float = DEFAULT_NMS_THRESHOLD,
                 top_k: int = DEFAULT_TOP_K, max_faces: int | None = None):
        self.input_hw = hw = _check_input_hw(input_hw)
        self.score_threshold = thr = float(score_threshold)
        if not (0.0 <= thr <= 1.0):
            raise InputError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        if not (0.0 <= float(nms_threshold) <= 1.0):
            raise InputError(f"nms_threshold must be in [0, 1], got {nms_threshold!r}")
        if not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise InputError(f"top_k must be a positive int, got {top_k!r}")
        if max_faces is not None and (not isinstance(max_faces, (int, np.integer)) or max_faces < 1):
            raise InputError(f"max_faces must be a positive int or None, got {max_faces!r}")
        self.nms_threshold, self.top_k, self.max_faces = float(nms_threshold), int(top_k), max_faces
        _missing(layout)
        q = dict(quantization or {})
        t2 = thr * thr
        cells = [(hw[0] // s) * (hw[1] // s) for s in YUNET_STRIDES]
        self._cells = sum(cells)
        # Per output: None = used as given (floats, or 8-bit integers kept raw), or the
        # (scale, zero_point) of an integer output dequantized first (not 8-bit, or a
        # scale that is not exactly a float32). Per kind, per cell: the zero-point and
        # scale that make its values real, and a floor below every value >= thr².
        self._dequantize_first: dict[str, tuple[float, int] | None] = {}
        per_kind, raw_outputs = {}, set()
        for kind, ch in _KIND_CHANNELS.items():
            zp, sc, floor = [], [], []
            for s, n in zip(YUNET_STRIDES, cells):
                name = f"{kind}_{s}"
                dtype, size = np.dtype(layout[name][0]), int(layout[name][1])
                if size != n * ch:
                    raise InputError(
                        f"YuNet output {name} has {size} values, expected [1, {n}, {ch}] for input "
                        f"{hw} ((H/{s})*(W/{s}) = {n} cells); was the model built for another size?"
                    )
                raw, first = None, None
                if name in q:
                    if dtype.kind not in "iu":
                        raise InputError(f"YuNet output {name} has dtype {dtype} but quantization parameters "
                                         "were given")
                    params = (float(q[name][0]), int(q[name][1]))
                    if dtype.itemsize == 1 and float(np.float32(params[0])) == params[0]:
                        raw = params  # dequantize's float32 arithmetic, on the cells that need it
                    else:
                        first = params
                elif dtype.kind != "f":
                    raise InputError(
                        f"YuNet output {name} has dtype {dtype}; dequantize int8 outputs to float first "
                        "(or pass their scale/zero-point as quantization=)"
                    )
                self._dequantize_first[name] = first
                if raw:
                    raw_outputs.add(name)
                z, k = (raw[1], raw[0]) if raw else (0, 1.0)
                zp.append(np.full(n, z, np.float32))
                sc.append(np.full(n, k, np.float32))
                if t2 <= 0:
                    floor.append(np.full(n, -math.inf))
                else:
                    floor.append(np.full(n, math.floor(z + t2 / k) - 1 if raw else t2 * (1.0 - 1e-6)))
            per_kind[kind] = tuple(np.concatenate(v) for v in (zp, sc, floor))
        # cls and obj side by side: one comparison finds the cells where both reach thr².
        self._score_zp, self._score_scale, self._score_floor = (
            np.concatenate([per_kind["cls"][i], per_kind["obj"][i]]) for i in range(3))
        if all(f"{k}_{s}" in raw_outputs for k in ("cls", "obj") for s in YUNET_STRIDES):
            # raw bytes against integer floors: no float copy of every cell
            self._score_floor = np.clip(self._score_floor, -129, 256).astype(np.int16)
        self._rows_zp = {k: per_kind[k][0][:, None] for k in ("bbox", "kps")}
        self._rows_scale = {k: per_kind[k][1][:, None] for k in ("bbox", "kps")}

    @classmethod
    def for_model(cls, model: Any, input_hw: tuple[int, int], **thresholds) -> "YunetDecoder":
        """The decoder of an :class:`edgelite.Model`'s outputs, run with ``dequantize=False``."""
        outs = model.outputs
        return cls(input_hw, {o.name: (o.dtype, int(np.prod(o.shape[1:]))) for o in outs},
                   {o.name: (o.scale, o.zero_point) for o in outs if o.quantized}, **thresholds)

    def _flat(self, outputs: Mapping[str, Any], *kinds: str) -> np.ndarray:
        """The three strides of output kinds, flattened and concatenated in prior order."""
        names = [f"{kind}_{s}" for kind in kinds for s in YUNET_STRIDES]
        first = self._dequantize_first
        return np.concatenate([outputs[n] if first[n] is None else dequantize(np.asarray(outputs[n]), *first[n])
                               for n in names], axis=None)

    def _rows(self, outputs: Mapping[str, Any], kind: str, sel: np.ndarray) -> np.ndarray:
        """Real values of the ``sel`` rows of a bbox/kps output kind."""
        v = self._flat(outputs, kind).reshape(self._cells, _KIND_CHANNELS[kind])[sel]
        return (v.astype(np.float32) - self._rows_zp[kind][sel]) * self._rows_scale[kind][sel]

    def select(self, outputs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cells scoring ``>= score_threshold``: indices over all priors, scores, bbox and kps rows."""
        n = self._cells
        co = self._flat(outputs, "cls", "obj")
        ok = co >= self._score_floor
        cand = np.logical_and(ok[:n], ok[n:]).nonzero()[0]
        idx = np.concatenate([cand, cand + n])
        real = np.minimum(np.maximum((co[idx].astype(np.float32) - self._score_zp[idx]) * self._score_scale[idx],
                                     0.0), 1.0)
        sc = np.sqrt(real[:cand.size] * real[cand.size:])
        ok = sc >= self.score_threshold
        sel = cand[ok]
        return sel, sc[ok], self._rows(outputs, "bbox", sel), self._rows(outputs, "kps", sel)

    def decode(self, outputs: Mapping[str, Any], plan: ResizePlan | None = None) -> DetectionResult:
        """Faces of one image, best first; mapped to source pixels with ``plan``."""
        return DetectionResult(faces=self.faces(outputs, plan), image_hw=self.input_hw if plan is None else plan.src_hw)

    def faces(self, outputs: Mapping[str, Any], plan: ResizePlan | None = None) -> tuple[Face, ...]:
        """The faces of :meth:`decode`, without the result around them."""
        hw = self.input_hw
        if plan is not None:
            if not isinstance(plan, ResizePlan):
                raise InputError(f"plan must be a ResizePlan or None, got {type(plan).__name__}")
            if plan.dst_hw != hw:
                raise InputError(f"plan is for input {plan.dst_hw} but the outputs are for {hw}")
        sel, sc, bb, kp = self.select(outputs)
        if not sel.size:
            return ()
        boxes, landmarks = _decode_rows(bb, kp, self.input_hw, sel)
        b64 = boxes.astype(np.float64)
        if not np.isfinite(b64).all():
            raise InputError("boxes contains NaN or infinity")
        keep = greedy_nms(b64, sc.astype(np.float64), self.nms_threshold, self.top_k, self.max_faces)
        boxes, landmarks, sc = boxes[keep], landmarks[keep], sc[keep]
        if plan is not None:
            boxes, landmarks = plan.to_original(boxes, landmarks)
        if not np.isfinite(landmarks).all():
            raise InputError(f"Face.landmarks contains NaN or infinity: {landmarks.tolist()}")
        boxes.setflags(write=False)
        landmarks.setflags(write=False)
        return tuple(Face._of(b, l, s) for b, l, s in zip(boxes, landmarks, np.minimum(sc, 1.0).tolist()))


def _arrays(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    _missing(outputs)
    return {n: np.asarray(outputs[n]) for n in YUNET_OUTPUT_NAMES}


@functools.lru_cache(maxsize=16)
def _prior_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` prior corners ``(col, row)`` and ``(N, 1)`` strides, float32, read-only."""
    cols, rows, strides = _priors(h, w)
    xy, s = np.stack([cols, rows], axis=1), strides[:, None].copy()
    for a in (xy, s):
        a.setflags(write=False)
    return xy, s


def _decode_rows(bb: np.ndarray, kp: np.ndarray, hw: tuple[int, int], sel: np.ndarray):
    """Boxes ``(x0, y0, x1, y1)`` and landmarks of the selected priors, in input pixels."""
    grid, stride = _prior_grid(*hw)
    xy, s = grid[sel], stride[sel]
    c = (xy + bb[:, 0:2]) * s  # centre
    # Clamp the log-size so garbage outputs cannot overflow exp() into inf boxes.
    half = np.exp(np.minimum(bb[:, 2:4], 20.0)) * s / 2
    boxes = np.concatenate([c - half, c + half], axis=1)
    landmarks = (kp.reshape(-1, 5, 2) + xy[:, None, :]) * s[:, :, None]
    return boxes.astype(np.float32, copy=False), landmarks.astype(np.float32, copy=False)


def decode_yunet_raw(
    outputs: Mapping[str, Any], input_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode every prior, without thresholding or NMS (for analysis and tests).

    Args:
        outputs: name -> float array, the 12 tensors of :data:`YUNET_OUTPUT_NAMES`.
        input_hw: the network input ``(height, width)`` the outputs belong to.

    Returns:
        ``(boxes (N, 4), landmarks (N, 5, 2), scores (N,))`` ``float32`` in
        input pixels, N = all priors over the three strides.
    """
    arrays = _arrays(outputs)
    dec = YunetDecoder(input_hw, {n: (a.dtype, a.size) for n, a in arrays.items()}, score_threshold=0.0)
    sel, scores, bb, kp = dec.select(arrays)
    boxes, landmarks = _decode_rows(bb, kp, dec.input_hw, sel)
    return boxes, landmarks, scores.astype(np.float32)


def decode_yunet(
    outputs: Mapping[str, Any],
    input_hw: tuple[int, int],
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    nms_threshold: float = DEFAULT_NMS_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
    max_faces: int | None = None,
    plan: ResizePlan | None = None,
    quantization: Mapping[str, tuple[float, int]] | None = None,
) -> DetectionResult:
    """Turn YuNet outputs into faces.

    Steps, in OpenCV's order: score every prior, keep ``score >= score_threshold``,
    decode those, keep the ``top_k`` best, greedy NMS at ``nms_threshold`` (in
    input pixels, as OpenCV), then map to source pixels with ``plan``.

    Args:
        outputs: name -> float array for the 12 tensors in :data:`YUNET_OUTPUT_NAMES`
            (shapes ``[1, N, C]``; int8 outputs must be dequantized first).
        input_hw: network input ``(height, width)``; multiples of 32.
        score_threshold: minimum face score (default :data:`DEFAULT_SCORE_THRESHOLD`).
        nms_threshold: IoU above which a lower-scored box is suppressed.
        top_k: pre-NMS candidate cap.
        max_faces: keep at most this many faces after NMS (``None``: all).
        plan: the :class:`ResizePlan` used to make the input; boxes and landmarks
            are mapped back to the source image. ``None``: input pixels.
        quantization: name -> ``(scale, zero_point)`` of outputs given as raw
            integers (an int8 model run with ``dequantize=False``). Only the cells
            that can reach the threshold are dequantized; the result is the same as
            dequantizing every output first.

    Returns:
        :class:`DetectionResult` sorted by descending score.
    """
    arrays = _arrays(outputs)
    dec = YunetDecoder(input_hw, {n: (a.dtype, a.size) for n, a in arrays.items()}, quantization,
                       score_threshold=score_threshold, nms_threshold=nms_threshold, top_k=top_k,
                       max_faces=max_faces)
    return dec.decode(arrays, plan)


def yunet_spec(input_hw: tuple[int, int], resize: ResizeMode | str = ResizeMode.LETTERBOX) -> PreprocessSpec:
    """The input a YuNet model expects, for a model file that does not embed it
    (the zoo's do): **BGR** (trained on OpenCV-loaded images), values 0..255 with no
    normalisation, letterboxed top-left with zero padding like OpenCV."""
    return PreprocessSpec(size=_check_input_hw(input_hw), resize=resize, color="BGR", mean=0.0, std=1.0)


def padded_input_hw(image_hw: tuple[int, int], multiple: int = 32) -> tuple[int, int]:
    """The input size OpenCV's ``FaceDetectorYN`` uses for an image: sides rounded up to ``multiple``.

    Use with ``plan_resize(image_hw, padded_input_hw(image_hw), "pad")`` to feed a
    variable-size model exactly as OpenCV does.
    """
    h, w = (int(v) for v in image_hw)
    if h <= 0 or w <= 0:
        raise InputError(f"image_hw must be positive, got {image_hw!r}")
    return (int(math.ceil(h / multiple) * multiple), int(math.ceil(w / multiple) * multiple))


__all__ = [
    "YUNET_STRIDES",
    "YUNET_OUTPUT_NAMES",
    "DEFAULT_SCORE_THRESHOLD",
    "DEFAULT_NMS_THRESHOLD",
    "DEFAULT_TOP_K",
    "yunet_priors",
    "decode_yunet_raw",
    "decode_yunet",
    "YunetDecoder",
    "yunet_spec",
    "padded_input_hw",
]
