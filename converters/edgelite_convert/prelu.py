"""The one PReLU rewrite, used by both sources (ONNX importer and Keras).

XNNPACK (TFLite's default CPU backend) does not run ``PRELU`` in int8: in
ai-edge-litert 2.3.0 its delegate takes ``PRELU`` only with float input and slope
(``tests/data/probe_xnnpack.py PRELU``: int8 ``PRELU=n``, float ``PRELU=Y``). Nor does
it delegate a standalone int8 ``RELU``. Both would fall back to TFLite's reference
kernels and split the delegated graph. The rewrite is an exact identity built from
delegated int8 ops only:

* one slope for every channel: ``LEAKY_RELU(α)``;
* per-channel slopes all ≤ 1 (negative allowed): ``x + relu((α-1)·x)`` (``MUL``
  with a fused ``RELU`` + ``ADD``);
* some slope > 1 (``(α-1)·x`` changes sign there, so the ``RELU`` cannot be fused):
  ``x + (1-α)·relu(-x)`` (``MUL(x, -1)`` with fused ``RELU``, ``MUL``, ``ADD``).

The per-channel constant of the ``MUL`` is stored repeated along the width,
``[1, 1, W, C]`` instead of ``[1, 1, 1, C]`` (:func:`per_channel_constant`): the
same values, so the same int8 quantization and bit-identical outputs, but XNNPACK's
broadcasting multiply then runs one kernel call per row of ``W·C`` elements
instead of one per pixel of ``C`` elements. Measured on SFace's 27 layer shapes
(one-op models, 1 thread, CPU time) that call overhead made the multiply 1.2-1.4x
slower at 112x112, 1.1-1.3x at 56x56 and little below (:data:`MIN_PIXELS`). Whole int8
SFace: 0.972-0.973x the time at 2 threads (3.20-3.23 vs 3.31-3.33 ms), 0.986-0.990x at 1
thread (``device_tests/bench_prelu.py``, ``docs/benchmarks.md``) - a small gain; the rest
of a PReLU's cost is not call overhead.
Tiling is skipped for small or dynamic shapes and rows over :data:`MAX_TILED`
elements.

What a ``PReLU`` layer still costs after this is measured in ``docs/benchmarks.md``
("SFace int8, per op"): per-channel slopes need *some* per-channel op over the full
activation (scalar ops plus folding scales into the neighbouring convolutions can
only give the slopes α or 1/α of one scalar), and XNNPACK's per-channel int8 ops
(``MUL`` by a tensor, a 1x1 ``DEPTHWISE_CONV_2D``) cost about twice a scalar one.
A 1x1 depthwise conv instead of the ``MUL`` was measured too: 0.78-1.07x the
untiled ``MUL`` per shape, 0.999x on the whole model (cosine 0.9846 vs 0.9841 on
held-out crops), so it is not used.

``max(x, α·x)`` — what the Keras path used before — is exact in float but wrong in
int8: ``MAXIMUM`` forces its operands and result to share one scale, the quantizer
then gives the conv output the PReLU *output* range and clamps the negative inputs
(SFace's embedding cosine to float dropped to 0.93). The measurements behind the
choice are in :func:`edgelite_convert.onnx_ops._prelu` and
``device_tests/bench_prelu.py``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

#: Largest tiled constant (elements) :func:`per_channel_constant` makes; beyond it the
#: constant stays ``[.., 1, C]`` (rows that long gain nothing and the model grows).
MAX_TILED = 1 << 16
#: Tile only tensors with at least this many pixels (rows of ``C``). Measured on SFace's
#: shapes (one-op models, 1 thread, CPU time, ``bench_prelu.py --per-shape``): the tiled
#: multiply takes 0.72-0.82x the time at 112x112 (0.03-0.04 ms saved per layer),
#: 0.79-0.90x at 56x56 (0.01-0.02 ms), 0.92-0.96x at 28x28 and 0.95-0.99x below. Each tiled layer adds W·C bytes to the model, and int8 SFace
#: must stay under 10 MB: all 27 layers added 160 KB, the 7 layers of >= 56x56 39 KB
#: (10.0009 MB), its 3 layers at 112x112 14 KB.
MIN_PIXELS = 4096


def per_channel_constant(c: Any, x: Any, tile: bool = True) -> tuple[Any, bool]:
    """``c`` (broadcastable to ``x``) repeated along ``x``'s second-to-last axis when that helps.

    A constant that varies along the last (channel) axis only, e.g. ``[1, 1, 1, C]``
    against an NHWC ``x`` of at least :data:`MIN_PIXELS` pixels, becomes ``[1, 1, W, C]``:
    the same products, with the broadcast over one row of ``W·C`` elements instead of
    ``C``. Anything else (a scalar, a constant that varies along another axis, a dynamic
    shape, a small tensor, a row over :data:`MAX_TILED`) is returned unchanged.

    Returns:
        ``(constant, tiled)``.
    """
    a = np.asarray(c)
    shape = tuple(getattr(x, "shape", ()))
    if not tile or a.ndim < 2 or len(shape) < 3 or a.ndim > len(shape):
        return c, False
    if not all(isinstance(d, (int, np.integer)) for d in shape[1:]):
        return c, False
    w, ch = shape[-2], shape[-1]
    if w <= 1 or int(np.prod(shape[1:-1])) < MIN_PIXELS:
        return c, False
    # only a per-channel constant: every axis but the last is 1
    if a.shape[-1] != ch or ch <= 1 or any(d != 1 for d in a.shape[:-1]) or w * ch > MAX_TILED:
        return c, False
    return np.ascontiguousarray(np.broadcast_to(a, a.shape[:-2] + (int(w), int(ch)))), True


def prelu_identity(x: Any, alpha: Any, lo: float, hi: float, *, relu: Callable, leaky_relu: Callable,
                   tile: bool = True) -> tuple[Any, str]:
    """``PReLU(x)`` with slopes ``alpha`` (range ``[lo, hi]``) as XNNPACK-friendly ops.

    ``relu`` / ``leaky_relu(t, slope)`` come from the caller's framework (``tf.nn``
    in the ONNX importer, ``keras.ops`` in a Keras layer), so the same formula builds
    the same TFLite ops from both sources. ``tile=False`` keeps the per-channel
    constant ``[.., 1, C]`` (only to measure what tiling gains).

    Returns:
        ``(y, form)``: the output tensor and a short description of the form used.
    """
    if lo == hi:
        return leaky_relu(x, lo), f"LEAKY_RELU(α={lo:.4g})"
    if hi <= 1.0:
        k, tiled = per_channel_constant(alpha - 1.0, x, tile)
        return x + relu(x * k), "x + relu((α-1)·x)" + (", constant [1,1,W,C]" if tiled else "")
    dtype = getattr(alpha, "dtype", np.float32)
    minus_one = np.asarray(-1.0, dtype)
    k, tiled = per_channel_constant(np.asarray(1.0 - alpha, dtype), x, tile)
    return (x + relu(x * minus_one) * k,
            "x + (1-α)·relu(-x) (α>1: relu((α-1)·x) would be wrong)" + (", constant [1,1,W,C]" if tiled else ""))
