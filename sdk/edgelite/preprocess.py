"""One preprocessing spec, declared once, used everywhere.

The converter calibrates with it, writes it into the model's metadata, and the
runtime applies it, so calibration and inference cannot drift apart (the most
common cause of "int8 is accurate on my workstation but not on the device").

Input images are numpy HWC ``uint8`` **RGB** (edgelite's convention). The spec
says what the *model* wants: size, resize mode, colour order, layout, mean/std.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from typing import Sequence

import numpy as np

from .errors import ImageError, InputError


class ResizeMode(str, enum.Enum):
    """How an image is brought to the model's input size.

    STRETCH ignores aspect ratio (cheapest; fine when training did the same).
    LETTERBOX keeps aspect ratio and pads bottom/right with zeros (detectors).
    CENTER_CROP resizes the short side then crops the centre (classifiers).
    NONE requires the image to already have the input size.
    """

    STRETCH = "stretch"
    LETTERBOX = "letterbox"
    CENTER_CROP = "center_crop"
    NONE = "none"


class ColorOrder(str, enum.Enum):
    RGB = "RGB"
    BGR = "BGR"
    GRAY = "GRAY"


class Layout(str, enum.Enum):
    NHWC = "NHWC"
    NCHW = "NCHW"


def _floats(v, name) -> tuple[float, ...]:
    if isinstance(v, (int, float)):
        v = (float(v),)
    try:
        out = tuple(float(x) for x in v)
    except TypeError:
        raise ValueError(f"{name} must be a number or a sequence of numbers, got {v!r}") from None
    if not out or not all(math.isfinite(x) for x in out):
        raise ValueError(f"{name} must be finite numbers, got {v!r}")
    return out


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
        dtype: dtype of the normalised float values (the runtime quantizes to the
            model's input dtype afterwards).
    """

    size: tuple[int, int]
    resize: ResizeMode = ResizeMode.STRETCH
    color: ColorOrder = ColorOrder.RGB
    layout: Layout = Layout.NHWC
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    dtype: str = "float32"

    def __post_init__(self):
        try:
            size = tuple(int(s) for s in self.size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be (height, width) integers, got {self.size!r}") from None
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"size must be two positive integers (height, width), got {self.size!r}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "resize", ResizeMode(self.resize))
        object.__setattr__(self, "color", ColorOrder(self.color))
        object.__setattr__(self, "layout", Layout(self.layout))
        mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
        ch = self.channels
        for name, v in (("mean", mean), ("std", std)):
            if len(v) not in (1, ch):
                raise ValueError(f"{name} has {len(v)} values; use 1 or {ch} (one per channel)")
        if any(s == 0 for s in std):
            raise ValueError("std must be non-zero")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.dtype not in ("float32",):
            raise ValueError(f"dtype {self.dtype!r} is not supported; use 'float32'")

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
        if not isinstance(d, dict):
            raise ValueError(f"preprocessing must be an object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    # --- application -----------------------------------------------------------
    def resize_image(self, image: np.ndarray) -> tuple[np.ndarray, "ResizePlan"]:
        """Resize an HWC uint8 image per the spec; returns the image and the plan to map back."""
        image = check_image(image)
        h, w = image.shape[:2]
        th, tw = self.size
        mode = self.resize
        if mode == ResizeMode.NONE:
            if (h, w) != (th, tw):
                raise InputError(f"image is {h}x{w} but the model wants {th}x{tw} and resize is 'none'")
            return image, ResizePlan(1.0, 1.0, 0, 0, (h, w), (th, tw))
        if mode == ResizeMode.STRETCH:
            return resize(image, (th, tw)), ResizePlan(tw / w, th / h, 0, 0, (h, w), (th, tw))
        if mode == ResizeMode.LETTERBOX:
            s = min(th / h, tw / w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            out = np.zeros((th, tw, image.shape[2]), np.uint8)
            out[:nh, :nw] = resize(image, (nh, nw))
            return out, ResizePlan(nw / w, nh / h, 0, 0, (h, w), (th, tw))
        # center crop
        s = max(th / h, tw / w)
        nh, nw = max(th, round(h * s)), max(tw, round(w * s))
        big = resize(image, (nh, nw))
        y0, x0 = (nh - th) // 2, (nw - tw) // 2
        return big[y0:y0 + th, x0:x0 + tw], ResizePlan(nw / w, nh / h, -x0, -y0, (h, w), (th, tw))

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Colour-convert and normalise an already-resized RGB uint8 HWC image → float32 N?HWC/NCHW batch of 1."""
        x = _convert_color(image, self.color).astype(np.float32)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout == Layout.NCHW:
            x = np.transpose(x, (2, 0, 1))
        return x[None]

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Resize + colour + normalise: RGB uint8 HWC → float32 batch of one."""
        resized, _ = self.resize_image(image)
        return self.normalize(resized)

    def quantize_lut(self, scale: float, zero_point: int, dtype) -> np.ndarray:
        """A (channels, 256) table mapping uint8 pixels straight to quantized model input.

        Fusing normalisation and quantization into one lookup makes per-frame
        preprocessing a gather instead of three float passes (matters on a Pi).
        """
        info = np.iinfo(dtype)
        px = np.arange(256, dtype=np.float64)
        rows = []
        for c in range(self.channels):
            m, s = self.mean[c % len(self.mean)], self.std[c % len(self.std)]
            q = np.round((px - m) / s / scale) + zero_point
            rows.append(np.clip(q, info.min, info.max).astype(dtype))
        return np.stack(rows)

    def apply_quantized(self, image: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
        """Like :meth:`apply` but produce the quantized integer tensor directly (NHWC only)."""
        if self.layout != Layout.NHWC:
            q = np.round(self.apply(image) / scale) + zero_point
            info = np.iinfo(dtype)
            return np.clip(q, info.min, info.max).astype(dtype)
        resized, _ = self.resize_image(image)
        x = _convert_color(resized, self.color)
        lut = self.quantize_lut(scale, zero_point, dtype)
        out = np.empty(x.shape, dtype)
        for c in range(x.shape[2]):
            out[..., c] = lut[c][x[..., c]]
        return out[None]


@dataclasses.dataclass(frozen=True)
class ResizePlan:
    """Maps model-input pixel coordinates back to original-image pixels."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]

    def to_original_xy(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float32).copy()
        xy[..., 0] = (xy[..., 0] - self.offset_x) / self.scale_x
        xy[..., 1] = (xy[..., 1] - self.offset_y) / self.scale_y
        return xy


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an HWC uint8 image (RGB or single channel); returns it as HWC with 1 or 3 channels."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array image, got {type(image).__name__}; "
                         "load files with edgelite.image.load_image()")
    if image.dtype != np.uint8:
        raise ImageError(f"image dtype is {image.dtype}; edgelite images are uint8 HWC RGB "
                         "(convert with edgelite.image.load_image or np.clip(x*255,0,255).astype(np.uint8))")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image shape {image.shape} is not HxWx3 (RGB) or HxW (grey)")
    return image


def _convert_color(image: np.ndarray, color: ColorOrder) -> np.ndarray:
    if color == ColorOrder.GRAY:
        if image.shape[2] == 1:
            return image
        # ITU-R BT.601 luma, as OpenCV's RGB2GRAY
        g = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
        return np.clip(np.round(g), 0, 255).astype(np.uint8)[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[..., ::-1] if color == ColorOrder.BGR else image


def resize(image: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """Resize HWC uint8 to ``(h, w)``: area averaging when shrinking, bilinear when
    enlarging; OpenCV when installed, else a numpy implementation of the same filters
    (one implementation for the whole package: :func:`edgelite.face.geometry.resize_image`)."""
    from .face.geometry import resize_image

    h, w = int(size_hw[0]), int(size_hw[1])
    if image.shape[:2] == (h, w):
        return image
    out = resize_image(image, (h, w))
    return out.reshape(h, w, image.shape[2]) if out.ndim == 2 else out
