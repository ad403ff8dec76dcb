"""Box geometry and NMS. The resize plans that map network coordinates back to pixels
live in :mod:`edgelite.preprocess` (the one input path) and are re-exported here.

Conventions: boxes are ``(x_min, y_min, x_max, y_max)`` pixels, landmarks are
``(..., 2)`` pixels ``(x, y)``; images are HWC ``uint8`` RGB (resizing does not care
about channel order, so BGR works too).

Coordinates are *continuous* pixel coordinates: a pixel's left edge is at ``x`` and
its right edge at ``x + 1``. Resizing by a factor ``s`` therefore maps a coordinate
by multiplying it by ``s`` (no half-pixel shift). This is the convention YuNet was
trained with (its training pipeline scales boxes by the plain resize factor), and it
is what OpenCV users do when they rescale ``FaceDetectorYN`` output.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..preprocess import ResizeMode, ResizePlan, plan_resize, resize_image  # noqa: F401 - re-exported

#: Smallest face (box width, input pixels) YuNet still finds at the default 0.6 score
#: threshold. Measured with the 2023mar ONNX weights by shrinking the demo photos:
#: faces 10 px wide score 0.5-0.8 (borderline), 8 px faces 0.38-0.59 (mostly lost),
#: 6 px faces are not found. The cause is architectural: the finest prior grid has a
#: stride of 8 px, so a face much smaller than one cell has no prior that fits it.
MIN_FACE_AT_INPUT: float = 10.0



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
    if score_threshold is not None:
        idx = np.flatnonzero(s >= float(score_threshold))
        return idx[greedy_nms(b[idx], s[idx], float(iou_threshold), top_k, max_output)]
    return greedy_nms(b, s, float(iou_threshold), top_k, max_output)


def greedy_nms(b: np.ndarray, s: np.ndarray, iou_threshold: float, top_k: int | None = None,
               max_output: int | None = None) -> np.ndarray:
    """:func:`nms` without the argument checks, for callers whose boxes are already
    a finite ``float64 (N, 4)`` array and scores ``float64 (N,)`` (the YuNet decoder).

    A frame's handful of candidates (≤ 64) go through plain Python floats: the same
    IEEE double operations in the same order, so the same boxes are kept, without a
    dozen array calls per kept box; larger sets are vectorised per kept box.
    """
    if len(s) <= _SMALL_NMS:
        return _greedy_nms_floats(b.tolist(), s.tolist(), iou_threshold, top_k, max_output)
    return _greedy_nms_arrays(b, s, iou_threshold, top_k, max_output)


_SMALL_NMS = 64


def _greedy_nms_floats(b: list, s: list, iou_threshold: float, top_k: int | None,
                       max_output: int | None) -> np.ndarray:
    order = sorted(range(len(s)), key=lambda k: -s[k])  # stable, as argsort(-s, kind="stable")
    if top_k is not None:
        order = order[: int(top_k)]
    areas = [max(x1 - x0, 0.0) * max(y1 - y0, 0.0) for x0, y0, x1, y1 in b]
    keep: list[int] = []
    while order:
        i = order[0]
        keep.append(i)
        if max_output is not None and len(keep) >= max_output:
            break
        x0, y0, x1, y1 = b[i]
        rest = []
        for j in order[1:]:
            u0, v0, u1, v1 = b[j]
            inter = max(min(x1, u1) - max(x0, u0), 0.0) * max(min(y1, v1) - max(y0, v0), 0.0)
            union = areas[i] + areas[j] - inter
            if (inter / union if union > 0 else 0.0) <= iou_threshold:
                rest.append(j)
        order = rest
    return np.asarray(keep, dtype=np.int64)


def _greedy_nms_arrays(b: np.ndarray, s: np.ndarray, iou_threshold: float, top_k: int | None,
                       max_output: int | None) -> np.ndarray:
    order = np.argsort(-s, kind="stable")
    if top_k is not None:
        order = order[: int(top_k)]
    areas = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
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
        inter = np.maximum(ix1 - ix0, 0) * np.maximum(iy1 - iy0, 0)
        union = areas[i] + areas[rest] - inter
        ov = np.zeros_like(inter)
        np.divide(inter, union, out=ov, where=union > 0)
        order = rest[ov <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


__all__ = ["MIN_FACE_AT_INPUT", "box_area", "iou", "nms", "ResizeMode", "ResizePlan", "plan_resize", "resize_image"]
