"""Box geometry, NMS, and the resize plans that map network coordinates back to pixels.

Conventions: boxes are ``(x_min, y_min, x_max, y_max)`` pixels, landmarks are
``(..., 2)`` pixels ``(x, y)``; images are HWC ``uint8`` RGB (resizing does not care
about channel order, so BGR works too).

Coordinates are *continuous* pixel coordinates: a pixel's left edge is at ``x`` and
its right edge at ``x + 1``. Resizing by a factor ``s`` therefore maps a coordinate
by multiplying it by ``s`` (no half-pixel shift). This is the convention YuNet was
trained with (its training pipeline scales boxes by the plain resize factor), and it
is what OpenCV users do when they rescale ``FaceDetectorYN`` output.

OpenCV is optional: :func:`resize_image` uses ``cv2.resize`` when ``cv2`` imports and
a numpy implementation otherwise (area averaging to shrink, bilinear to enlarge,
matching OpenCV's ``INTER_AREA`` / ``INTER_LINEAR`` to within one grey level).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from .._optional import resolve_cv2
from ..errors import InputError

#: Smallest face (box width, input pixels) YuNet still finds at the default 0.6 score
#: threshold. Measured with the 2023mar ONNX weights by shrinking the demo photos:
#: faces 10 px wide score 0.5-0.8 (borderline), 8 px faces 0.38-0.59 (mostly lost),
#: 6 px faces are not found. The cause is architectural: the finest prior grid has a
#: stride of 8 px, so a face much smaller than one cell has no prior that fits it.
MIN_FACE_AT_INPUT: float = 10.0

#: Face width (input pixels) at which YuNet is reliable (scores >= 0.8 on all demo
#: photos at 14-16 px). :func:`choose_input_size` aims for this, not for the bare minimum.
RELIABLE_FACE_AT_INPUT: float = 16.0


def _as_boxes(boxes: Any, what: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"{what} must have shape (N, 4) as (x_min, y_min, x_max, y_max), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinity")
    return arr


def box_area(boxes: Any) -> np.ndarray:
    """Areas of ``(N, 4)`` boxes; inverted boxes count as 0."""
    b = _as_boxes(boxes, "boxes")
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou(boxes_a: Any, boxes_b: Any) -> np.ndarray:
    """Pairwise intersection-over-union.

    Args:
        boxes_a: ``(N, 4)`` (or a single ``(4,)``) boxes.
        boxes_b: ``(M, 4)`` (or a single ``(4,)``) boxes.

    Returns:
        ``float64 (N, M)``. Two empty boxes have IoU 0 (not NaN).
    """
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    area_a = box_area(a)
    area_b = box_area(b)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def nms(
    boxes: Any,
    scores: Any,
    *,
    iou_threshold: float = 0.3,
    score_threshold: float | None = None,
    top_k: int | None = None,
    max_output: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression.

    Same algorithm as OpenCV's ``cv2.dnn.NMSBoxes`` (with ``eta=1``): candidates
    with ``score >= score_threshold`` are sorted by descending score (stable, so
    ties keep input order), only the first ``top_k`` are considered, then each box
    suppresses every later box whose IoU with it is *greater than*
    ``iou_threshold``. One difference: OpenCV's face detector runs NMS on boxes
    truncated to integer pixels; we use the float boxes, which only matters for
    pairs whose IoU is within a pixel's worth of the threshold.

    Args:
        boxes: ``(N, 4)`` boxes.
        scores: ``(N,)`` scores.
        iou_threshold: suppress a box whose IoU with a kept box exceeds this.
        score_threshold: drop boxes below this before anything else (``None``: keep all).
        top_k: consider only the ``top_k`` best-scoring candidates (pre-NMS cap,
            bounds the quadratic cost); ``None``: all.
        max_output: stop after keeping this many boxes; ``None``: no limit.

    Returns:
        ``int64`` indices into ``boxes`` of the kept boxes, best score first.
    """
    raw = np.asarray(boxes, dtype=np.float64)
    b = np.zeros((0, 4)) if raw.size == 0 else _as_boxes(raw, "boxes")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != b.shape[0]:
        raise InputError(f"nms: {b.shape[0]} boxes but {s.shape[0]} scores")
    if np.any(np.isnan(s)):
        raise InputError("nms: scores contain NaN")
    if not (0.0 <= float(iou_threshold) <= 1.0):
        raise InputError(f"nms: iou_threshold must be in [0, 1], got {iou_threshold!r}")
    for name, val in (("top_k", top_k), ("max_output", max_output)):
        if val is not None and (not isinstance(val, (int, np.integer)) or val < 1):
            raise InputError(f"nms: {name} must be a positive int or None, got {val!r}")
    idx = np.arange(s.shape[0])
    if score_threshold is not None:
        idx = idx[s >= float(score_threshold)]
    order = idx[np.argsort(-s[idx], kind="stable")]
    if top_k is not None:
        order = order[: int(top_k)]
    areas = box_area(b) if b.shape[0] else np.zeros(0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if max_output is not None and len(keep) >= max_output:
            break
        rest = order[1:]
        ix0 = np.maximum(b[i, 0], b[rest, 0])
        iy0 = np.maximum(b[i, 1], b[rest, 1])
        ix1 = np.minimum(b[i, 2], b[rest, 2])
        iy1 = np.minimum(b[i, 3], b[rest, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        union = areas[i] + areas[rest] - inter
        ov = np.zeros_like(inter)
        np.divide(inter, union, out=ov, where=union > 0)
        order = rest[ov <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class ResizeMode(str, Enum):
    """How an image is fitted into a fixed network input.

    * ``LETTERBOX``: keep the aspect ratio, scale to fit, pad the rest with zeros.
      Faces keep their shape, which is what the detector was trained on; costs
      some input area on padding.
    * ``STRETCH``: scale each axis independently to fill the input. Uses every
      input pixel but squashes faces; fine for mild aspect changes.
    * ``PAD``: no scaling at all; the image is padded up to the input size (which
      must be at least as large). This is what OpenCV's ``FaceDetectorYN`` does
      (it pads to a multiple of 32), for models that accept any input size.
    """

    LETTERBOX = "letterbox"
    STRETCH = "stretch"
    PAD = "pad"


def _hw(value: Any, what: str) -> tuple[int, int]:
    try:
        h, w = value
        hi, wi = int(h), int(w)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be (height, width), got {value!r}") from exc
    if hi != h or wi != w or hi <= 0 or wi <= 0:
        raise InputError(f"{what} must be two positive ints (height, width), got {value!r}")
    return hi, wi


@dataclass(frozen=True)
class ResizePlan:
    """How a source image maps into a network input, and back.

    The source is resized to ``content_hw`` and placed at ``offset_xy`` (top-left
    corner) inside a zero canvas of ``dst_hw``.

    Attributes:
        src_hw: source image ``(height, width)``.
        dst_hw: network input ``(height, width)``.
        mode: the :class:`ResizeMode` that produced the plan.
        content_hw: size of the resized image inside the input.
        offset_xy: ``(left, top)`` padding before the content.
    """

    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]
    mode: ResizeMode
    content_hw: tuple[int, int]
    offset_xy: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "src_hw", _hw(self.src_hw, "src_hw"))
        object.__setattr__(self, "dst_hw", _hw(self.dst_hw, "dst_hw"))
        object.__setattr__(self, "content_hw", _hw(self.content_hw, "content_hw"))
        object.__setattr__(self, "mode", _resize_mode(self.mode))
        try:
            ox, oy = (int(v) for v in self.offset_xy)
        except (TypeError, ValueError) as exc:
            raise InputError(f"offset_xy must be (left, top) ints, got {self.offset_xy!r}") from exc
        ch, cw = self.content_hw
        dh, dw = self.dst_hw
        if ox < 0 or oy < 0 or ox + cw > dw or oy + ch > dh:
            raise InputError(
                f"content {self.content_hw} at offset {(ox, oy)} does not fit in dst {self.dst_hw}"
            )
        object.__setattr__(self, "offset_xy", (ox, oy))

    @property
    def scale_xy(self) -> tuple[float, float]:
        """``(sx, sy)``: input pixels per source pixel along x and y."""
        return (self.content_hw[1] / self.src_hw[1], self.content_hw[0] / self.src_hw[0])

    def to_original(
        self, boxes: Any = None, landmarks: Any = None, *, clip: bool = False
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Map boxes/landmarks from network-input pixels to source pixels.

        Args:
            boxes: ``(..., 4)`` boxes in input pixels, or ``None``.
            landmarks: ``(..., 2)`` points in input pixels (e.g. ``(N, 5, 2)``), or ``None``.
            clip: clip boxes to the source image (landmarks are never clipped: a
                point outside the frame is still the best estimate of the feature).

        Returns:
            ``(boxes, landmarks)`` as ``float32``, each ``None`` if not given.
        """
        sx, sy = self.scale_xy
        ox, oy = self.offset_xy
        out_b = out_l = None
        if boxes is not None:
            b = np.asarray(boxes, dtype=np.float64)
            if b.shape[-1:] != (4,):
                raise InputError(f"boxes must end in a dimension of 4, got {b.shape}")
            out = (b - [ox, oy, ox, oy]) / [sx, sy, sx, sy]
            if clip:
                h, w = self.src_hw
                out = np.clip(out, 0, [w, h, w, h])
            out_b = out.astype(np.float32)
        if landmarks is not None:
            p = np.asarray(landmarks, dtype=np.float64)
            if p.shape[-1:] != (2,):
                raise InputError(f"landmarks must end in a dimension of 2, got {p.shape}")
            out_l = ((p - [ox, oy]) / [sx, sy]).astype(np.float32)
        return out_b, out_l

    def to_input(
        self, boxes: Any = None, landmarks: Any = None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Inverse of :meth:`to_original`: source pixels to network-input pixels."""
        sx, sy = self.scale_xy
        ox, oy = self.offset_xy
        out_b = out_l = None
        if boxes is not None:
            b = np.asarray(boxes, dtype=np.float64)
            out_b = (b * [sx, sy, sx, sy] + [ox, oy, ox, oy]).astype(np.float32)
        if landmarks is not None:
            p = np.asarray(landmarks, dtype=np.float64)
            out_l = (p * [sx, sy] + [ox, oy]).astype(np.float32)
        return out_b, out_l

    def apply(self, image: np.ndarray, *, pad_value: int = 0, use_cv2: bool | None = None) -> np.ndarray:
        """Resize and pad ``image`` (HWC or HW) into the network input canvas.

        Args:
            image: source image; its size must be :attr:`src_hw`.
            pad_value: value of the padding (0, like OpenCV's ``FaceDetectorYN``).
            use_cv2: see :func:`resize_image`.
        """
        img = np.asarray(image)
        if tuple(img.shape[:2]) != self.src_hw:
            raise InputError(f"plan is for a {self.src_hw} image, got {tuple(img.shape[:2])}")
        content = resize_image(img, self.content_hw, use_cv2=use_cv2)
        if content.shape[:2] == self.dst_hw:
            return content
        canvas = np.full(self.dst_hw + img.shape[2:], pad_value, dtype=img.dtype)
        ox, oy = self.offset_xy
        ch, cw = self.content_hw
        canvas[oy : oy + ch, ox : ox + cw] = content
        return canvas


def _resize_mode(mode: Any) -> ResizeMode:
    try:
        return ResizeMode(mode)
    except ValueError:
        raise InputError(
            f"unknown resize mode {mode!r}; use one of {[m.value for m in ResizeMode]}"
        ) from None


def plan_resize(
    src_hw: tuple[int, int],
    dst_hw: tuple[int, int],
    mode: ResizeMode | str = ResizeMode.LETTERBOX,
    *,
    center: bool = False,
) -> ResizePlan:
    """Plan how to fit a ``src_hw`` image into a ``dst_hw`` network input.

    Args:
        src_hw: source ``(height, width)``.
        dst_hw: network input ``(height, width)``.
        mode: :class:`ResizeMode` (or its string value).
        center: letterbox/pad only: centre the content instead of anchoring it at the
            top-left. Top-left (the default) is what OpenCV's ``FaceDetectorYN``
            does when it pads to a multiple of 32, and it makes the mapping back a
            pure scale; centring gives the same detections up to border effects.

    Returns:
        A :class:`ResizePlan`; call ``plan.apply(image)`` and, after inference,
        ``plan.to_original(boxes, landmarks)``.
    """
    sh, sw = _hw(src_hw, "src_hw")
    dh, dw = _hw(dst_hw, "dst_hw")
    m = _resize_mode(mode)
    if m is ResizeMode.STRETCH:
        return ResizePlan((sh, sw), (dh, dw), m, (dh, dw), (0, 0))
    if m is ResizeMode.PAD:
        if dh < sh or dw < sw:
            raise InputError(
                f"resize mode 'pad' cannot shrink: source {(sh, sw)} is larger than input {(dh, dw)}; "
                "use 'letterbox' or a larger input"
            )
        ch, cw = sh, sw
    else:
        s = min(dh / sh, dw / sw)
        ch = min(dh, max(1, int(round(sh * s))))
        cw = min(dw, max(1, int(round(sw * s))))
    off = ((dw - cw) // 2, (dh - ch) // 2) if center else (0, 0)
    return ResizePlan((sh, sw), (dh, dw), m, (ch, cw), off)


@dataclass(frozen=True)
class InputSizeChoice:
    """What :func:`choose_input_size` decided, and why.

    Attributes:
        input_hw: network input ``(height, width)``, multiples of ``multiple``.
            Use it with :func:`plan_resize` in ``LETTERBOX`` mode.
        scale: input pixels per source pixel.
        smallest_face_at_input: ``min_face * scale`` (``None`` without ``min_face``).
        faces_at_risk: the smallest face ends up below
            :data:`RELIABLE_FACE_AT_INPUT` (below :data:`MIN_FACE_AT_INPUT` it is
            essentially lost). Detect on tiles instead (:func:`plan_tiles`).
    """

    input_hw: tuple[int, int]
    scale: float
    smallest_face_at_input: float | None
    faces_at_risk: bool


def choose_input_size(
    src_hw: tuple[int, int],
    *,
    max_side: int = 640,
    min_face: float | None = None,
    multiple: int = 32,
    min_side: int = 160,
) -> InputSizeChoice:
    """Pick a detector input size for a photo of size ``src_hw``.

    The trade-off: detector cost grows with input area (a 5568x3712 photo at full
    resolution is ~50x the work of 640x427), but shrinking a photo shrinks its faces,
    and YuNet loses faces narrower than ~10 input pixels (finest prior stride is 8;
    see :data:`MIN_FACE_AT_INPUT`). The policy:

    1. Never upscale (it adds work, not information), and cap the long side at
       ``max_side``.
    2. If you know the smallest face you care about (``min_face``, source pixels),
       shrink further while that face stays >= :data:`RELIABLE_FACE_AT_INPUT` px —
       a portrait whose face is 400 px wide can be detected at ~160 px, ~16x
       cheaper — but not below ``min_side`` on the long side.
    3. If even at ``max_side`` the smallest face would be below the reliable size,
       keep ``max_side`` and set ``faces_at_risk``: the caller should use
       :func:`plan_tiles` (or raise ``max_side`` if the model allows).

    Example: the 5568x3712 ISS photo has faces ~200 px wide; at ``max_side=640``
    the scale is 0.115 and the faces are ~23 px — safe. A crowd shot with 60 px
    faces would give 7 px faces — lost, so ``faces_at_risk`` is set.

    Args:
        src_hw: source ``(height, width)``.
        max_side: cap on the long side of the input (a multiple of ``multiple``).
        min_face: smallest face width of interest, in source pixels (optional).
        multiple: input sides are rounded up to this (32 for YuNet: its coarsest
            stride; OpenCV pads to it too).
        min_side: floor on the long side when ``min_face`` allows shrinking.

    Returns:
        An :class:`InputSizeChoice`.
    """
    sh, sw = _hw(src_hw, "src_hw")
    if not isinstance(multiple, int) or multiple < 1:
        raise InputError(f"multiple must be a positive int, got {multiple!r}")
    if not isinstance(max_side, int) or max_side < multiple or max_side % multiple:
        raise InputError(f"max_side must be a positive multiple of {multiple}, got {max_side!r}")
    if not isinstance(min_side, int) or not (1 <= min_side <= max_side):
        raise InputError(f"min_side must be an int in [1, max_side={max_side}], got {min_side!r}")
    if min_face is not None:
        if not (isinstance(min_face, (int, float)) and math.isfinite(min_face) and min_face > 0):
            raise InputError(f"min_face must be a positive number of source pixels, got {min_face!r}")
    long_side = max(sh, sw)
    scale = min(1.0, max_side / long_side)
    if min_face is not None:
        needed = RELIABLE_FACE_AT_INPUT / float(min_face)
        if needed < scale:
            scale = max(needed, min(1.0, min_side / long_side))
    ch = max(1, int(round(sh * scale)))
    cw = max(1, int(round(sw * scale)))
    ih = min(max_side, -(-ch // multiple) * multiple)
    iw = min(max_side, -(-cw // multiple) * multiple)
    face_px = None if min_face is None else float(min_face) * scale
    at_risk = face_px is not None and face_px < RELIABLE_FACE_AT_INPUT
    return InputSizeChoice((ih, iw), float(scale), face_px, bool(at_risk))


def tile_windows(
    src_hw: tuple[int, int], window: int, overlap: int
) -> list[tuple[int, int, int, int]]:
    """Cover an image with square windows that overlap by ``overlap`` pixels.

    The last row/column of windows is aligned to the image edge, so every window
    is ``window`` px wide (or the whole image side when that is smaller).

    Args:
        src_hw: image ``(height, width)``.
        window: window side in source pixels.
        overlap: overlap between neighbours; make it at least the largest face you
            want found *whole* inside one tile (faces larger than that are the job
            of a whole-image pass).

    Returns:
        ``(x0, y0, x1, y1)`` windows, row-major.
    """
    sh, sw = _hw(src_hw, "src_hw")
    if not isinstance(window, int) or window < 1:
        raise InputError(f"window must be a positive int, got {window!r}")
    if not isinstance(overlap, int) or not (0 <= overlap < window):
        raise InputError(f"overlap must be an int in [0, window={window}), got {overlap!r}")

    def starts(n: int) -> list[int]:
        if n <= window:
            return [0]
        step = window - overlap
        out = list(range(0, n - window, step))
        out.append(n - window)
        return out

    return [
        (x, y, min(x + window, sw), min(y + window, sh))
        for y in starts(sh)
        for x in starts(sw)
    ]


def plan_tiles(
    src_hw: tuple[int, int],
    *,
    min_face: float,
    input_side: int = 640,
    overlap: int | None = None,
) -> list[tuple[int, int, int, int]]:
    """Tiles that keep faces of ``min_face`` source pixels >= the reliable size.

    Each tile is sized so that, resized to ``input_side``, a ``min_face`` face is
    :data:`RELIABLE_FACE_AT_INPUT` px. Run the detector on each tile (letterboxed
    to the model input) *and* once on the whole image (for faces bigger than the
    overlap), shift each tile's boxes/landmarks by its ``(x0, y0)``, then
    :func:`nms` the union.

    Args:
        src_hw: image ``(height, width)``.
        min_face: smallest face width of interest, source pixels.
        input_side: the detector input side the tiles will be resized to.
        overlap: tile overlap in source pixels; default ``4 * min_face`` (capped
            to half a tile).

    Returns:
        ``(x0, y0, x1, y1)`` windows; a single whole-image window when no tiling
        is needed.
    """
    sh, sw = _hw(src_hw, "src_hw")
    if not (isinstance(min_face, (int, float)) and math.isfinite(min_face) and min_face > 0):
        raise InputError(f"min_face must be a positive number of source pixels, got {min_face!r}")
    window = int(math.floor(input_side * float(min_face) / RELIABLE_FACE_AT_INPUT))
    window = max(window, 1)
    if window >= max(sh, sw):
        return [(0, 0, sw, sh)]
    if overlap is None:
        overlap = min(int(math.ceil(4 * float(min_face))), window // 2)
    return tile_windows((sh, sw), window, int(overlap))


# --------------------------------------------------------------------------- resize




def _check_resizable(image: Any) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.size == 0:
        raise InputError(f"image must be a non-empty HW or HWC array, got shape {img.shape}")
    if img.dtype not in (np.uint8, np.float32, np.float64):
        raise InputError(f"image dtype must be uint8, float32 or float64, got {img.dtype}")
    return img


def resize_image(image: np.ndarray, dst_hw: tuple[int, int], *, use_cv2: bool | None = None) -> np.ndarray:
    """Resize an HW/HWC image to ``dst_hw``.

    Interpolation: area averaging when both sides shrink (no aliasing: every source
    pixel contributes, which matters when a 20 MP photo becomes a 640 px detector
    input), bilinear otherwise. With OpenCV this is ``cv2.resize`` with
    ``INTER_AREA`` / ``INTER_LINEAR``; without it, a numpy implementation of the same
    filters (within 1 level of OpenCV on uint8; see ``tests/test_face_geometry.py``).

    Args:
        image: ``uint8`` or float HW/HWC array (channel order irrelevant).
        dst_hw: output ``(height, width)``.
        use_cv2: ``None`` = use OpenCV if installed; ``True`` = require it;
            ``False`` = force the numpy path.

    Returns:
        Resized array, same dtype and channel count.
    """
    img = _check_resizable(image)
    dh, dw = _hw(dst_hw, "dst_hw")
    sh, sw = img.shape[:2]
    if (sh, sw) == (dh, dw):
        return img.copy()
    shrink = dh <= sh and dw <= sw
    cv2 = resolve_cv2(use_cv2)
    if cv2 is not None:
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out = cv2.resize(np.ascontiguousarray(img), (dw, dh), interpolation=interp)
        if img.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing single channel
            out = out[:, :, None]
        return out
    return _resize_numpy(img, (dh, dw), area=shrink)


def _area_weights(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Indices/fractions to average source cells [i*n/m, (i+1)*n/m) via prefix sums."""
    scale = n / m
    edges = np.arange(m + 1, dtype=np.float64) * scale
    edges[-1] = n  # exact, avoids a rounding overshoot
    lo = np.minimum(np.floor(edges).astype(np.int64), n)
    frac = edges - lo
    return lo[:-1], frac[:-1], lo[1:], frac[1:], scale


def _area_axis0(x: np.ndarray, m: int) -> np.ndarray:
    """Area-resize along axis 0 (shrink only), float64 in, float64 out."""
    n = x.shape[0]
    prefix = np.zeros((n + 1,) + x.shape[1:], dtype=np.float64)
    np.cumsum(x, axis=0, out=prefix[1:])
    xpad = np.concatenate([x, np.zeros((1,) + x.shape[1:], dtype=x.dtype)], axis=0)
    lo_a, fa, lo_b, fb, scale = _area_weights(n, m)
    extra = (fa.reshape((-1,) + (1,) * (x.ndim - 1)), fb.reshape((-1,) + (1,) * (x.ndim - 1)))
    # Integral of the piecewise-constant signal from 0 to t = prefix[floor t] + frac * x[floor t].
    fa_val = prefix[lo_a] + extra[0] * xpad[lo_a]
    fb_val = prefix[lo_b] + extra[1] * xpad[lo_b]
    return (fb_val - fa_val) / scale


def _linear_axis0(x: np.ndarray, m: int) -> np.ndarray:
    """Bilinear resize along axis 0 with OpenCV's half-pixel-centre mapping."""
    n = x.shape[0]
    src = (np.arange(m, dtype=np.float64) + 0.5) * (n / m) - 0.5
    i0 = np.floor(src).astype(np.int64)
    w = src - i0
    # Outside the source, OpenCV replicates the edge pixel (weight collapses to one side).
    w[i0 < 0] = 0.0
    i0 = np.clip(i0, 0, n - 1)
    w[i0 >= n - 1] = 0.0
    i1 = np.minimum(i0 + 1, n - 1)
    w = w.reshape((-1,) + (1,) * (x.ndim - 1))
    return x[i0] * (1.0 - w) + x[i1] * w


def _resize_numpy(img: np.ndarray, dst_hw: tuple[int, int], *, area: bool) -> np.ndarray:
    """Separable numpy resize; processes strips to bound memory on large photos."""
    dh, dw = dst_hw
    squeeze = img.ndim == 2
    x = img[:, :, None] if squeeze else img
    op = _area_axis0 if area else _linear_axis0
    # Strip width chosen so a float64 strip of a 5568x3712 photo stays ~20 MB.
    strip = max(1, (1 << 21) // max(1, x.shape[0] * x.shape[2]))
    cols = [op(x[:, c : c + strip].astype(np.float64), dh) for c in range(0, x.shape[1], strip)]
    tmp = np.concatenate(cols, axis=1).astype(np.float32)
    tmp_t = np.swapaxes(tmp, 0, 1)  # resize width as axis 0
    rstrip = max(1, (1 << 21) // max(1, tmp_t.shape[0] * tmp_t.shape[2]))
    rows = [op(tmp_t[:, r : r + rstrip].astype(np.float64), dw) for r in range(0, tmp_t.shape[1], rstrip)]
    out = np.swapaxes(np.concatenate(rows, axis=1), 0, 1)
    if img.dtype == np.uint8:
        out = np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    else:
        out = out.astype(img.dtype)
    return out[:, :, 0] if squeeze else np.ascontiguousarray(out)


__all__ = [
    "MIN_FACE_AT_INPUT",
    "RELIABLE_FACE_AT_INPUT",
    "box_area",
    "iou",
    "nms",
    "ResizeMode",
    "ResizePlan",
    "plan_resize",
    "InputSizeChoice",
    "choose_input_size",
    "tile_windows",
    "plan_tiles",
    "resize_image",
]
