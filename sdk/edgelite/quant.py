"""Quantization helpers (affine, per-tensor or per-channel).

real = scale * (q - zero_point);  q = clamp(round(real / scale) + zero_point).

Rounding is round-half-to-even (numpy's), like TFLite's reference QUANTIZE kernel
on most builds; a value exactly halfway may differ by one step from a kernel
that rounds half away from zero, which is within quantization tolerance anyway.
"""
from __future__ import annotations

import numpy as np

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
    """Integers back to float32 reals."""
    q = np.asarray(q)
    s = _broadcast(scale, q, axis)
    z = _broadcast(zero_point, q, axis)
    return ((q.astype(np.float64) - z) * s).astype(np.float32)
