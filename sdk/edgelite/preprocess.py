"""The one input path: an image becomes a model's input tensor here, and nowhere else.

:class:`PreprocessSpec` says what a model wants (size, resize mode, colour order,
layout, mean/std). The converter writes it into the model's metadata and
calibrates through :meth:`PreprocessSpec.prepare`; the runtime reads it back
(:attr:`edgelite.Model.preprocessing`) and infers through the same method
(:meth:`edgelite.Model.prepare`, used by :class:`~edgelite.face.FaceDetector` and
:class:`~edgelite.face.FaceEmbedder`), so calibration and inference cannot drift
apart — the most common cause of "int8 is accurate on my workstation but not on
the device".

One pass per frame: validate once (:func:`edgelite.image.as_rgb`), resize and pad
into the input canvas (:class:`ResizePlan`, which also maps results back to image
pixels), swap colours, then either normalise to float or — for a quantized input —
map every uint8 pixel straight to the quantized value with one 256-entry table per
channel (:func:`edgelite.quant.pixel_lut`): normalisation and quantization fused
into a gather, which is what keeps preprocessing cheap on a Pi.

Images are numpy HWC ``uint8`` **RGB** (edgelite's convention). Coordinates are
continuous pixel coordinates (a pixel spans ``[x, x + 1)``), so resizing by ``s``
maps a coordinate by multiplying it by ``s``, with no half-pixel shift.

OpenCV is optional: :func:`resize_image` uses ``cv2.resize`` when ``cv2`` imports
and a numpy implementation otherwise (area averaging to shrink, bilinear to
enlarge, matching ``INTER_AREA`` / ``INTER_LINEAR`` to within one grey level).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import math
from typing import Any, Sequence

import numpy as np

from . import quant
from ._optional import cv2_or_none, resolve_cv2
from .errors import InputError


class ResizeMode(str, enum.Enum):
    """How an image is brought to the model's input size.

    * ``LETTERBOX``: keep the aspect ratio, scale to fit, pad bottom/right with
      zeros (detectors: faces keep their shape; costs some input area).
    * ``STRETCH``: scale each axis to fill the input (cheapest; squashes objects;
      fine when training did the same).
    * ``CENTER_CROP``: scale the short side to fit, crop the centre (classifiers).
    * ``PAD``: no scaling; pad up to the input size (what OpenCV's
      ``FaceDetectorYN`` does for variable-size models).
    * ``NONE``: the image must already have the input size.
    """

    STRETCH = "stretch"
    LETTERBOX = "letterbox"
    CENTER_CROP = "center_crop"
    PAD = "pad"
    NONE = "none"


class ColorOrder(str, enum.Enum):
    RGB = "RGB"
    BGR = "BGR"
    GRAY = "GRAY"


class Layout(str, enum.Enum):
    NHWC = "NHWC"
    NCHW = "NCHW"


def _enum(kind, value, what: str):
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"unknown {what} {value!r}; use one of {[m.value for m in kind]}") from None


def _hw(value: Any, what: str) -> tuple[int, int]:
    try:
        h, w = value
        hi, wi = int(h), int(w)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be (height, width), got {value!r}") from exc
    if hi != h or wi != w or hi <= 0 or wi <= 0:
        raise InputError(f"{what} must be two positive ints (height, width), got {value!r}")
    return hi, wi


# --------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True)
class ResizePlan:
    """How a source image maps into a model input, and back.

    The source is resized to ``content_hw`` and placed with its top-left corner at
    ``offset_xy`` inside a zero canvas of ``dst_hw``. Offsets are positive for
    padding (letterbox, pad) and negative for cropping (centre crop).

    Attributes:
        src_hw: source image ``(height, width)``.
        dst_hw: model input ``(height, width)``.
        mode: the :class:`ResizeMode` that produced the plan.
        content_hw: size of the resized image.
        offset_xy: ``(left, top)`` of the content inside the input.
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
        object.__setattr__(self, "mode", _enum(ResizeMode, self.mode, "resize mode"))
        try:
            ox, oy = (int(v) for v in self.offset_xy)
        except (TypeError, ValueError) as exc:
            raise InputError(f"offset_xy must be (left, top) ints, got {self.offset_xy!r}") from exc
        (ch, cw), (dh, dw) = self.content_hw, self.dst_hw
        crop = self.mode is ResizeMode.CENTER_CROP
        if crop:
            ok = ox <= 0 and oy <= 0 and ox + cw >= dw and oy + ch >= dh  # the content covers the input
        else:
            ok = ox >= 0 and oy >= 0 and ox + cw <= dw and oy + ch <= dh  # the content fits in the input
        if not ok:
            raise InputError(f"content {self.content_hw} at offset {(ox, oy)} does not "
                             f"{'cover' if crop else 'fit in'} dst {self.dst_hw}")
        object.__setattr__(self, "offset_xy", (ox, oy))

    @property
    def scale_xy(self) -> tuple[float, float]:
        """``(sx, sy)``: input pixels per source pixel along x and y."""
        return (self.content_hw[1] / self.src_hw[1], self.content_hw[0] / self.src_hw[0])

    def to_original(self, boxes: Any = None, landmarks: Any = None, *, clip: bool = False
                    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Map boxes ``(..., 4)`` and points ``(..., 2)`` from input pixels to source
        pixels (``float32``; ``None`` stays ``None``). ``clip`` clips boxes to the
        source image; points are never clipped (a landmark outside the frame is still
        the best estimate of where the feature is)."""
        off, scl = self._to_original
        out_b = out_l = None
        if boxes is not None:
            b = np.asarray(boxes, dtype=np.float64)
            if b.shape[-1:] != (4,):
                raise InputError(f"boxes must end in a dimension of 4, got {b.shape}")
            out = (b - off) / scl
            if clip:
                h, w = self.src_hw
                out = np.clip(out, 0, [w, h, w, h])
            out_b = out.astype(np.float32)
        if landmarks is not None:
            p = np.asarray(landmarks, dtype=np.float64)
            if p.shape[-1:] != (2,):
                raise InputError(f"landmarks must end in a dimension of 2, got {p.shape}")
            out_l = ((p - off[:2]) / scl[:2]).astype(np.float32)
        return out_b, out_l

    @functools.cached_property
    def _to_original(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ox, oy, ox, oy)`` and ``(sx, sy, sx, sy)`` as arrays, made once per plan."""
        (sx, sy), (ox, oy) = self.scale_xy, self.offset_xy
        return np.array([ox, oy, ox, oy], np.float64), np.array([sx, sy, sx, sy], np.float64)

    def to_input(self, boxes: Any = None, landmarks: Any = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Inverse of :meth:`to_original`: source pixels to input pixels."""
        sx, sy = self.scale_xy
        ox, oy = self.offset_xy
        out_b = out_l = None
        if boxes is not None:
            out_b = (np.asarray(boxes, np.float64) * [sx, sy, sx, sy] + [ox, oy, ox, oy]).astype(np.float32)
        if landmarks is not None:
            out_l = (np.asarray(landmarks, np.float64) * [sx, sy] + [ox, oy]).astype(np.float32)
        return out_b, out_l

    def apply(self, image: np.ndarray, *, pad_value: int = 0, use_cv2: bool | None = None) -> np.ndarray:
        """Resize, then pad or crop ``image`` (HW or HWC, size :attr:`src_hw`) into the input canvas."""
        img = np.asarray(image)
        if tuple(img.shape[:2]) != self.src_hw:
            raise InputError(f"plan is for a {self.src_hw} image, got {tuple(img.shape[:2])}")
        (dh, dw), (ch, cw), (ox, oy) = self.dst_hw, self.content_hw, self.offset_xy
        resized = self.content_hw != self.src_hw
        if self.mode is not ResizeMode.CENTER_CROP and (ch, cw) != (dh, dw) and cw == dw and resized:
            # Content as wide as the input (a landscape frame letterboxed top-left):
            # its rows are contiguous in the canvas, so resize straight into them.
            canvas = np.full((dh, dw) + img.shape[2:], pad_value, dtype=img.dtype)
            resize_image(img, self.content_hw, use_cv2=use_cv2, out=canvas[oy:oy + ch])
            return canvas
        content = resize_image(img, self.content_hw, use_cv2=use_cv2) if resized else img
        if (ch, cw) == (dh, dw):
            return np.ascontiguousarray(content)
        if self.mode is ResizeMode.CENTER_CROP:
            return np.ascontiguousarray(content[-oy:-oy + dh, -ox:-ox + dw])
        canvas = np.full((dh, dw) + img.shape[2:], pad_value, dtype=img.dtype)
        canvas[oy:oy + ch, ox:ox + cw] = content
        return canvas


def plan_resize(src_hw: tuple[int, int], dst_hw: tuple[int, int], mode: ResizeMode | str = ResizeMode.LETTERBOX,
                *, center: bool = False) -> ResizePlan:
    """Plan how to fit a ``src_hw`` image into a ``dst_hw`` model input.

    Args:
        src_hw: source ``(height, width)``.
        dst_hw: model input ``(height, width)``.
        mode: :class:`ResizeMode` (or its string value).
        center: letterbox/pad only: centre the content instead of anchoring it at the
            top-left. Top-left (the default) is what OpenCV's ``FaceDetectorYN`` does,
            and it makes the mapping back a pure scale.

    Returns:
        A :class:`ResizePlan`: ``plan.apply(image)``, then ``plan.to_original(...)``.
    """
    sh, sw = _hw(src_hw, "src_hw")
    dh, dw = _hw(dst_hw, "dst_hw")
    m = _enum(ResizeMode, mode, "resize mode")
    if m is ResizeMode.STRETCH:
        return ResizePlan((sh, sw), (dh, dw), m, (dh, dw))
    if m is ResizeMode.NONE:
        if (sh, sw) != (dh, dw):
            raise InputError(f"image is {sh}x{sw} but the model wants {dh}x{dw} and resize is 'none'")
        return ResizePlan((sh, sw), (dh, dw), m, (dh, dw))
    if m is ResizeMode.CENTER_CROP:
        s = max(dh / sh, dw / sw)
        ch, cw = max(dh, round(sh * s)), max(dw, round(sw * s))
        return ResizePlan((sh, sw), (dh, dw), m, (ch, cw), (-((cw - dw) // 2), -((ch - dh) // 2)))
    if m is ResizeMode.PAD:
        if dh < sh or dw < sw:
            raise InputError(f"resize mode 'pad' cannot shrink: source {(sh, sw)} is larger than input {(dh, dw)}; "
                             "use 'letterbox' or a larger input")
        ch, cw = sh, sw
    else:
        s = min(dh / sh, dw / sw)
        ch = min(dh, max(1, int(round(sh * s))))
        cw = min(dw, max(1, int(round(sw * s))))
    off = ((dw - cw) // 2, (dh - ch) // 2) if center else (0, 0)
    return ResizePlan((sh, sw), (dh, dw), m, (ch, cw), off)


@functools.lru_cache(maxsize=64)
def _plan(src_hw: tuple, dst_hw: tuple[int, int], mode: ResizeMode) -> ResizePlan:
    return plan_resize(src_hw, dst_hw, mode)


# --------------------------------------------------------------------------- resize


def _check_resizable(image: Any) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.size == 0:
        raise InputError(f"image must be a non-empty HW or HWC array, got shape {img.shape}")
    if img.dtype not in (np.uint8, np.float32, np.float64):
        raise InputError(f"image dtype must be uint8, float32 or float64, got {img.dtype}")
    return img


def resize_image(image: np.ndarray, dst_hw: tuple[int, int], *, use_cv2: bool | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
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
        out: a C-contiguous array of the result's shape and dtype to write into
            (e.g. the content region of a padded canvas); the result is returned.
    """
    img = _check_resizable(image)
    if out is not None:
        want = (*_hw(dst_hw, "dst_hw"), *img.shape[2:])
        if out.shape != want or out.dtype != img.dtype or not out.flags.c_contiguous:
            raise InputError(f"out must be a C-contiguous {img.dtype} array of shape {want}, "
                             f"got {out.dtype} {out.shape}")
        cv2 = resolve_cv2(use_cv2)
        if cv2 is not None and img.ndim == 3 and img.shape[2] in (3, 4) and tuple(img.shape[:2]) != want[:2]:
            shrink = want[0] <= img.shape[0] and want[1] <= img.shape[1]
            cv2.resize(np.ascontiguousarray(img), (want[1], want[0]), dst=out,
                       interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        else:
            out[...] = resize_image(img, dst_hw, use_cv2=use_cv2)
        return out
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


# --------------------------------------------------------------------------- the spec


def _floats(v, name) -> tuple[float, ...]:
    if isinstance(v, (int, float)):
        v = (float(v),)
    try:
        out = tuple(float(x) for x in v)
    except TypeError:
        raise InputError(f"{name} must be a number or a sequence of numbers, got {v!r}") from None
    if not out or not all(math.isfinite(x) for x in out):
        raise InputError(f"{name} must be finite numbers, got {v!r}")
    return out


def _convert_color(batch: np.ndarray, color: ColorOrder, *, inplace: bool = False) -> np.ndarray:
    """RGB uint8 ``(..., H, W, 3)`` → the model's colour order (contiguous);
    ``inplace``: BGR overwrites ``batch`` (one the caller owns) instead of a copy."""
    if color is ColorOrder.GRAY:
        # ITU-R BT.601 luma, as OpenCV's RGB2GRAY
        g = batch[..., 0] * 0.299 + batch[..., 1] * 0.587 + batch[..., 2] * 0.114
        return np.clip(np.round(g), 0, 255).astype(np.uint8)[..., None]
    if color is ColorOrder.BGR:
        cv2 = cv2_or_none()
        if cv2 is not None and batch.dtype == np.uint8:
            # cvtColor is ~5x faster than a negative-stride copy; it takes one 2-D image,
            # so a batch is viewed as one tall image (rows of all images stacked).
            flat = np.ascontiguousarray(batch).reshape(-1, batch.shape[-2], 3)
            if inplace and flat.base is not None and np.may_share_memory(flat, batch):
                cv2.cvtColor(flat, cv2.COLOR_RGB2BGR, dst=flat)
                return batch
            return cv2.cvtColor(flat, cv2.COLOR_RGB2BGR).reshape(batch.shape)
        return np.ascontiguousarray(batch[..., ::-1])
    return batch


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects from an image.

    Args:
        size: ``(height, width)`` of the model input.
        resize: a :class:`ResizeMode`.
        color: channel order the model was trained with (images arrive RGB).
        layout: ``NHWC`` (TFLite default) or ``NCHW``.
        mean, std: per-channel (or scalar) normalisation on the 0..255 scale:
            ``x = (pixel - mean) / std``. ``mean=0, std=255`` gives [0, 1];
            ``mean=127.5, std=127.5`` gives [-1, 1]; ``mean=0, std=1`` keeps 0..255.
        dtype: dtype of the normalised float values (a quantized input is then
            produced directly by a lookup table, see :meth:`prepare`).

    Raises:
        InputError: any field is invalid (also a ``ValueError``).
    """

    size: tuple[int, int]
    resize: ResizeMode = ResizeMode.STRETCH
    color: ColorOrder = ColorOrder.RGB
    layout: Layout = Layout.NHWC
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "size", _hw(self.size, "size"))
        object.__setattr__(self, "resize", _enum(ResizeMode, self.resize, "resize mode"))
        object.__setattr__(self, "color", _enum(ColorOrder, self.color, "colour order"))
        object.__setattr__(self, "layout", _enum(Layout, self.layout, "layout"))
        mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
        ch = self.channels
        for name, v in (("mean", mean), ("std", std)):
            if len(v) not in (1, ch):
                raise InputError(f"{name} has {len(v)} values; use 1 or {ch} (one per channel)")
        if any(s == 0 for s in std):
            raise InputError("std must be non-zero")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.dtype not in ("float32",):
            raise InputError(f"dtype {self.dtype!r} is not supported; use 'float32'")

    @property
    def channels(self) -> int:
        return 1 if self.color == ColorOrder.GRAY else 3

    def value_range(self) -> tuple[float, float]:
        """Range of normalised values for pixels in 0..255 (over all channels)."""
        lo, hi = [], []
        for c in range(self.channels):
            m = self.mean[c % len(self.mean)]
            s = self.std[c % len(self.std)]
            a, b = (0 - m) / s, (255 - m) / s
            lo.append(min(a, b))
            hi.append(max(a, b))
        return min(lo), max(hi)

    def to_dict(self) -> dict:
        return {"size": list(self.size), "resize": self.resize.value, "color": self.color.value,
                "layout": self.layout.value, "mean": list(self.mean), "std": list(self.std), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        """Inverse of :meth:`to_dict`. Unknown keys are an error, not ignored: a
        misspelt ``{"colour": "BGR"}`` silently giving RGB would feed the model the
        wrong channel order without a trace."""
        if not isinstance(d, dict):
            raise InputError(f"preprocessing must be an object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown preprocessing keys {unknown}; known keys are {sorted(known)}")
        if "size" not in d:
            raise InputError("preprocessing needs 'size' (height, width)")
        return cls(**d)

    # --- application -----------------------------------------------------------
    def plan(self, image_hw: Sequence[int]) -> ResizePlan:
        """The :class:`ResizePlan` for an image of ``image_hw`` (plans are immutable: a
        camera's frame size is planned once)."""
        try:
            return _plan(tuple(image_hw), self.size, self.resize)
        except TypeError:  # unhashable values: let plan_resize say what is wrong
            return plan_resize(tuple(image_hw), self.size, self.resize)

    def prepare(self, image: np.ndarray, input: Any = None) -> tuple[np.ndarray, ResizePlan]:
        """Image → model input tensor (a batch of one) and the plan that maps back.

        Args:
            image: HWC ``uint8`` RGB (grey and RGBA are converted, see
                :func:`edgelite.image.as_rgb`; validated once, here).
            input: the model's input :class:`~edgelite.model.TensorSpec`, or
                ``None``. For a quantized input the result is the quantized integer
                tensor, made with one lookup table per channel; otherwise float32.

        Returns:
            ``(tensor, plan)``.
        """
        from .image import as_rgb

        img = as_rgb(image)
        plan = self.plan(img.shape[:2])
        return self.tensor_of(img, plan, input), plan

    def tensor_of(self, image: np.ndarray, plan: ResizePlan, input: Any = None, *,
                  out: np.ndarray | None = None) -> np.ndarray:
        """``to_tensor(plan.apply(image)[None], input)`` for a validated RGB image, in
        one buffer: the image is resized straight into the canvas, whose content is
        converted in place (colour order, then the quantization table), so a frame
        costs one input-sized array, or none with ``out``. Letterbox padding of a
        quantized input is written as its final value (the table's entry for a black
        pixel) instead of being converted pixel by pixel.

        Args:
            out: the array to write the tensor into (e.g. the interpreter's own input
                buffer, see :meth:`edgelite.Model.run_image`); it is returned.
        """
        (dh, dw), (ch, cw), (ox, oy) = plan.dst_hw, plan.content_hw, plan.offset_xy
        lut = self._lut(input)
        if (lut is not None and cw == dw and ch < dh and plan.mode is not ResizeMode.CENTER_CROP
                and self.layout is Layout.NHWC and self.color is not ColorOrder.GRAY
                and image.ndim == 3 and image.shape[2] == 3
                and (out is None or (out.shape == (1, dh, dw, 3) and out.dtype == lut.dtype
                                     and out.flags.c_contiguous))):
            canvas = np.empty((1, dh, dw, 3), np.uint8) if out is None else out.view(np.uint8)
            content = canvas[:, oy:oy + ch]  # whole rows: contiguous
            if plan.content_hw != plan.src_hw:
                resize_image(image, plan.content_hw, out=content[0])
            else:
                content[0] = image
            quant.apply_lut(_convert_color(content, self.color, inplace=True), lut, inplace=True)
            q = canvas.view(lut.dtype)
            pad = lut[0, 0] if quant.is_uniform(lut) else lut[:, 0]  # a black pixel, converted
            q[:, :oy] = pad
            q[:, oy + ch:] = pad
            return q
        canvas = plan.apply(image)
        # no resize, no pad: the canvas is the caller's pixels, never converted in place
        x = self.to_tensor(canvas[None], input, _owned=not np.may_share_memory(canvas, image))
        if out is None:
            return x
        if out.shape != x.shape or out.dtype != x.dtype:
            raise InputError(f"out must be {x.dtype} {x.shape}, got {out.dtype} {out.shape}")
        out[...] = x
        return out

    def _lut(self, input: Any) -> np.ndarray | None:
        """The fused normalise+quantize table of a quantized ``input``, else ``None``
        (kept on the spec per quantization: a per-frame call is one dict lookup)."""
        if input is None or not getattr(input, "quantized", False):
            return None
        luts = self.__dict__.setdefault("_luts", {})  # not a field: invisible to eq/hash/repr
        hit = luts.get(id(input))
        if hit is not None and hit[0] is input:
            return hit[1]
        lut = quant.pixel_lut(input.scale, input.zero_point, input.dtype, self.mean, self.std, self.channels)
        if len(luts) >= 8:  # a model's input specs live as long as the model; others come and go
            luts.clear()
        luts[id(input)] = (input, lut)
        return lut

    def to_tensor(self, batch: np.ndarray, input: Any = None, *, _owned: bool = False) -> np.ndarray:
        """Already-resized RGB ``uint8`` ``(N, H, W, 3)`` → model tensor: colour order,
        then the fused normalise+quantize table (quantized input) or the float
        normalisation, then the layout."""
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.dtype != np.uint8 or batch.shape[-1] != 3 or tuple(batch.shape[1:3]) != self.size:
            raise InputError(f"expected uint8 (N, {self.size[0]}, {self.size[1]}, 3) RGB, "
                             f"got {batch.dtype} {batch.shape}")
        owned = _owned and batch.flags.c_contiguous
        x = _convert_color(batch, self.color, inplace=owned)
        lut = self._lut(input)
        if lut is not None:
            out = quant.apply_lut(x, lut, inplace=owned)
        else:
            out = (x.astype(np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout is Layout.NCHW:
            out = np.ascontiguousarray(np.moveaxis(out, -1, 1))
        return out

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Resize + colour + normalise: RGB uint8 HWC → float32 batch of one
        (``prepare(image)[0]``; what calibration feeds the float model)."""
        return self.prepare(image)[0]

    def apply_quantized(self, image: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
        """Like :meth:`apply` but the quantized integer tensor for ``scale``/``zero_point``."""
        q = _QuantInput(float(scale), int(zero_point), np.dtype(dtype))
        return self.prepare(image, q)[0]


@dataclasses.dataclass(frozen=True)
class _QuantInput:
    scale: float
    zero_point: int
    dtype: np.dtype
    quantized: bool = True


__all__ = ["ColorOrder", "Layout", "PreprocessSpec", "ResizeMode", "ResizePlan", "plan_resize", "resize_image"]
