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


def _check_outputs(outputs: Mapping[str, Any]) -> None:
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


def _kind(outputs: Mapping[str, Any], kind: str, hw: tuple[int, int], quantization) -> tuple[np.ndarray, bool]:
    """The three strides of one output kind, concatenated as ``(N_total, C)``.

    Returns ``(values, raw)``: ``raw`` when every part is 8-bit integers with
    float32 scales in ``quantization`` (TFLite's int8 outputs: dequantized later,
    only where needed); otherwise float32 (integer parts dequantized here).
    """
    h, w = hw
    ch = _KIND_CHANNELS[kind]
    parts, raw = [], True
    for s in YUNET_STRIDES:
        name = f"{kind}_{s}"
        arr = np.asarray(outputs[name])
        if name in quantization:
            if arr.dtype.kind not in "iu":
                raise InputError(f"YuNet output {name} has dtype {arr.dtype} but quantization parameters "
                                 "were given")
            scale = float(quantization[name][0])
            raw = raw and arr.dtype.itemsize == 1 and float(np.float32(scale)) == scale
        elif np.issubdtype(arr.dtype, np.floating):
            raw = False
        else:
            raise InputError(
                f"YuNet output {name} has dtype {arr.dtype}; dequantize int8 outputs to float first "
                "(or pass their scale/zero-point as quantization=)"
            )
        n = (h // s) * (w // s)
        if arr.size != n * ch:
            raise InputError(
                f"YuNet output {name} has shape {arr.shape}, expected [1, {n}, {ch}] for input "
                f"{hw} ((H/{s})*(W/{s}) = {n} cells); was the model built for another size?"
            )
        parts.append(arr.reshape(n, ch))
    if not raw:  # float outputs (or a mix): real values for every cell
        parts = [dequantize(p, *quantization[f"{kind}_{s}"]) if f"{kind}_{s}" in quantization
                 else p.astype(np.float32, copy=False) for p, s in zip(parts, YUNET_STRIDES)]
    return np.concatenate(parts), raw


@functools.lru_cache(maxsize=64)
def _cell_params(hw: tuple[int, int], kind: str, params: tuple[tuple[float, int], ...], t: float):
    """Per cell: float32 scale and zero-point, and a raw-value floor below every
    value whose real value is ``>= t`` (one step of margin for float rounding)."""
    n = [(hw[0] // s) * (hw[1] // s) for s in YUNET_STRIDES]
    scale = np.concatenate([np.full(k, sc, np.float32) for k, (sc, _) in zip(n, params)])[:, None]
    zero = np.concatenate([np.full(k, zp, np.float32) for k, (_, zp) in zip(n, params)])[:, None]
    floor = np.concatenate([np.full(k, math.floor(zp + t / sc) - 1 if t > 0 else -math.inf)
                            for k, (sc, zp) in zip(n, params)])
    for a in (scale, zero, floor):
        a.setflags(write=False)
    return scale, zero, floor


def _select(outputs, hw: tuple[int, int], thr: float, quantization):
    """Cells scoring ``>= thr``: their indices over all priors, scores, bbox and kps rows.

    ``score = sqrt(clip(cls) * clip(obj)) >= thr`` needs both ``cls`` and ``obj``
    ``>= thr²`` (each is at most 1): only those cells are dequantized and scored,
    with the arithmetic of :func:`edgelite.quant.dequantize`, so values and order
    are those of dequantizing every output first.
    """
    _check_outputs(outputs)
    t2 = thr * thr
    vals, real = {}, {}
    for kind in _KIND_CHANNELS:
        v, raw = _kind(outputs, kind, hw, quantization)
        vals[kind] = v
        real[kind] = None
        if raw:
            params = tuple((float(quantization[f"{kind}_{s}"][0]), int(quantization[f"{kind}_{s}"][1]))
                           for s in YUNET_STRIDES)
            real[kind] = _cell_params(hw, kind, params, t2)

    def floor(kind):
        if real[kind] is not None:
            return real[kind][2]
        return t2 * (1.0 - 1e-6) if t2 > 0 else -math.inf

    def values(kind, rows):
        v = vals[kind][rows]
        if real[kind] is None:
            return v
        scale, zero, _ = real[kind]
        return (v.astype(np.float32) - zero[rows]) * scale[rows]

    cand = np.flatnonzero((vals["cls"][:, 0] >= floor("cls")) & (vals["obj"][:, 0] >= floor("obj")))
    sc = np.sqrt(np.clip(values("cls", cand)[:, 0], 0.0, 1.0) * np.clip(values("obj", cand)[:, 0], 0.0, 1.0))
    ok = sc >= thr
    sel = cand[ok]
    return sel, sc[ok], values("bbox", sel), values("kps", sel)


def _decode_rows(bb: np.ndarray, kp: np.ndarray, priors, sel: np.ndarray):
    cols, rows, strides = (p[sel] for p in priors)
    cx = (cols + bb[:, 0]) * strides
    cy = (rows + bb[:, 1]) * strides
    # Clamp the log-size so garbage outputs cannot overflow exp() into inf boxes.
    bw = np.exp(np.minimum(bb[:, 2], 20.0)) * strides
    bh = np.exp(np.minimum(bb[:, 3], 20.0)) * strides
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    lx = (kp[:, 0::2] + cols[:, None]) * strides[:, None]
    ly = (kp[:, 1::2] + rows[:, None]) * strides[:, None]
    landmarks = np.stack([lx, ly], axis=2)
    return boxes.astype(np.float32), landmarks.astype(np.float32)


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
    hw = _check_input_hw(input_hw)
    sel, scores, bb, kp = _select(outputs, hw, 0.0, {})
    boxes, landmarks = _decode_rows(bb, kp, yunet_priors(hw), sel)
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
    hw = _check_input_hw(input_hw)
    thr = float(score_threshold)
    if not (0.0 <= thr <= 1.0):
        raise InputError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
    if not (0.0 <= float(nms_threshold) <= 1.0):
        raise InputError(f"nms_threshold must be in [0, 1], got {nms_threshold!r}")
    if not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(f"top_k must be a positive int, got {top_k!r}")
    if plan is not None:
        if not isinstance(plan, ResizePlan):
            raise InputError(f"plan must be a ResizePlan or None, got {type(plan).__name__}")
        if plan.dst_hw != hw:
            raise InputError(f"plan is for input {plan.dst_hw} but the outputs are for {hw}")
    sel, sc, bb, kp = _select(outputs, hw, thr, quantization or {})
    boxes, landmarks = _decode_rows(bb, kp, yunet_priors(hw), sel)
    if max_faces is not None and (not isinstance(max_faces, (int, np.integer)) or max_faces < 1):
        raise InputError(f"max_faces must be a positive int or None, got {max_faces!r}")
    b64 = boxes.astype(np.float64)
    if not np.all(np.isfinite(b64)):
        raise InputError("boxes contains NaN or infinity")
    keep = greedy_nms(b64, sc.astype(np.float64), float(nms_threshold), int(top_k), max_faces)
    boxes, landmarks, sc = boxes[keep], landmarks[keep], sc[keep]
    image_hw = hw
    if plan is not None:
        boxes, landmarks = plan.to_original(boxes, landmarks)
        image_hw = plan.src_hw
    faces = tuple(
        Face(box=b, landmarks=l, score=min(1.0, float(s))) for b, l, s in zip(boxes, landmarks, sc)
    )
    return DetectionResult(faces=faces, image_hw=image_hw)


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
    "yunet_spec",
    "padded_input_hw",
]
