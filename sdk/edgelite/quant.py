"""Quantization helpers (affine, per-tensor or per-channel).

real = scale * (q - zero_point);  q = clamp(round(real / scale) + zero_point).

Rounding is round-half-to-even (numpy's), like TFLite's reference QUANTIZE kernel
on most builds; a value exactly halfway may differ by one step from a kernel
that rounds half away from zero, which is within quantization tolerance anyway.
"""
from __future__ import annotations

import numpy as np

from ._optional import cv2_or_none
from .errors import InputError

_INT_TYPES = {np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.int32)}


def _broadcast(v, x: np.ndarray, axis: int | None):
    v = np.asarray(v, np.float64)
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    if axis is None:
        raise InputError(f"{v.size} per-channel parameters given without a quantized_dimension axis")
    if x.shape[axis] != v.size:
        raise InputError(f"per-channel parameters have {v.size} entries but axis {axis} has {x.shape[axis]}")
    shape = [1] * x.ndim
    shape[axis] = v.size
    return v.reshape(shape)


def quantize(x, scale, zero_point, dtype=np.int8, axis: int | None = None) -> np.ndarray:
    """Quantize real values to integers of ``dtype`` (int8, uint8, int16, int32)."""
    dtype = np.dtype(dtype)
    if dtype not in _INT_TYPES:
        raise InputError(f"cannot quantize to {dtype}; use int8, uint8, int16 or int32")
    x = np.asarray(x)
    s = _broadcast(scale, x, axis)
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise InputError(f"quantization scale must be finite and > 0, got {scale!r}")
    z = _broadcast(zero_point, x, axis)
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float64) / s) + z
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point, axis: int | None = None) -> np.ndarray:
    """Integers back to float32 reals.

    For 8-bit data with float32 scales (every TFLite tensor) the product is done in
    float32: ``q − zero_point`` is exact and the float32 product of two float32
    numbers is correctly rounded, so the result is bit-identical to the float64
    product rounded to float32, at a third of the cost (it runs on every output of
    every frame). Other cases use float64.
    """
    q = np.asarray(q)
    if q.dtype.itemsize == 1 and (type(scale) is float or np.ndim(scale) == 0) and (
            type(zero_point) is int or np.ndim(zero_point) == 0):  # a model's tensor: plain Python scalars
        s32 = np.float32(scale)
        if float(s32) == float(scale):  # the per-frame path: a scalar, exactly a float32
            return (q.astype(np.float32) - np.float32(zero_point)) * s32
    s = _broadcast(scale, q, axis)
    z = _broadcast(zero_point, q, axis)
    if q.dtype.itemsize == 1 and np.all(s.astype(np.float32) == s):
        return (q.astype(np.float32) - z.astype(np.float32)) * s.astype(np.float32)
    return ((q.astype(np.float64) - z) * s).astype(np.float32)


_PIXEL_LUTS: dict = {}
_UNIFORM: dict[int, bool] = {}  # id of a cached table (kept forever) -> all its rows are equal


def pixel_lut(scale, zero_point, dtype, mean=(0.0,), std=(1.0,), channels: int = 3) -> np.ndarray:
    """``(channels, 256)`` table: uint8 pixel → ``quantize((pixel − mean) / std)``.

    Normalisation and quantization of an image input fused into one gather. The
    values are exactly :func:`quantize` of the normalised pixel, normalised in
    float32 with the same operations as the float path
    (:meth:`edgelite.preprocess.PreprocessSpec.to_tensor`), so a table lookup and
    "normalise, then quantize" agree bit for bit.
    Tables are cached by their parameters (a handful per process).
    """
    dtype = np.dtype(dtype)
    mean = tuple(float(m) for m in np.atleast_1d(mean))
    std = tuple(float(s) for s in np.atleast_1d(std))
    key = (float(scale), int(zero_point), dtype.str, mean, std, int(channels))
    t = _PIXEL_LUTS.get(key)
    if t is None:
        px = np.arange(256, dtype=np.float32)
        rows = [quantize((px - np.float32(mean[c % len(mean)])) / np.float32(std[c % len(std)]),
                         scale, zero_point, dtype) for c in range(channels)]
        t = np.stack(rows)
        t.setflags(write=False)
        _UNIFORM[id(t)] = bool(np.all(t == t[0]))
        _PIXEL_LUTS[key] = t
    return t


def is_uniform(lut: np.ndarray) -> bool:
    """All rows of a ``(C, 256)`` table are equal (known for :func:`pixel_lut`'s tables)."""
    same = _UNIFORM.get(id(lut)) if _PIXEL_LUTS else None
    return bool(np.all(lut == lut[0])) if same is None else same


_SHIFTS: dict[int, int | None] = {}  # id of a cached table -> k when its bytes are (pixel + k) mod 256


def byte_shift(lut: np.ndarray) -> int | None:
    """``k`` when every row of an 8-bit ``(C, 256)`` table maps a pixel ``v`` to the byte
    ``(v + k) mod 256`` (e.g. scale 1 and zero point −128: ``v − 128`` as int8), else ``None``."""
    k = _SHIFTS.get(id(lut), -1) if _PIXEL_LUTS else -1
    if k == -1:
        k = None
        if lut.dtype.itemsize == 1 and lut.ndim == 2 and lut.shape[1] == 256:
            b = lut.view(np.uint8)
            k0 = int(b[0, 0])
            if np.array_equal(b, np.broadcast_to((np.arange(256) + k0) % 256, b.shape)):
                k = k0
        if any(t is lut for t in _PIXEL_LUTS.values()):
            _SHIFTS[id(lut)] = k
    return k


def apply_lut(pixels: np.ndarray, lut: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """``lut[c][pixels[..., c]]`` for uint8 ``(..., C)`` pixels and a ``(C, 256)`` 8-bit table.

    A table that only adds a constant to every byte (:func:`byte_shift`; YuNet's input:
    scale 1, zero point −128) is one vectorised add (an XOR for 128), about 3x faster
    than a lookup on a frame. Otherwise ``cv2.LUT`` when OpenCV is installed (about 4x
    faster than numpy fancy indexing here; one table for all channels when they are
    equal, else a C-channel table); numpy otherwise. An int8 table is applied through
    its uint8 view: same bytes. ``inplace``: write the result over ``pixels`` (an array
    the caller owns) and return it viewed as the table's dtype.
    """
    pixels = np.ascontiguousarray(pixels)
    c = pixels.shape[-1]
    shift = byte_shift(lut) if pixels.dtype == np.uint8 else None
    if shift is not None:
        out = pixels if inplace else np.empty_like(pixels)
        if shift == 128:
            np.bitwise_xor(pixels, 0x80, out=out)
        else:
            np.add(pixels, np.uint8(shift), out=out)  # uint8 arithmetic wraps mod 256
        return out.view(lut.dtype)
    same = is_uniform(lut)
    cv2 = cv2_or_none()
    if cv2 is not None and lut.dtype.itemsize == 1 and pixels.dtype == np.uint8 and (same or c in (1, 3, 4)):
        flat = pixels.reshape(-1, pixels.shape[-2], c) if pixels.ndim >= 3 else pixels.reshape(-1, 1, c)
        table = lut[0].view(np.uint8) if same else np.ascontiguousarray(lut.T.view(np.uint8)).reshape(256, 1, c)
        if inplace and np.may_share_memory(flat, pixels):
            cv2.LUT(flat, table, dst=flat)
            return pixels.view(lut.dtype)
        out = cv2.LUT(flat, table)
        return out.reshape(pixels.shape).view(lut.dtype)
    if same:
        return lut[0][pixels]
    out = np.empty(pixels.shape, lut.dtype)
    for k in range(c):
        out[..., k] = lut[k][pixels[..., k]]
    return out
