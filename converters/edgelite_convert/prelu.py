"""The one PReLU rewrite, used by both sources (ONNX importer and Keras).

XNNPACK (TFLite's default CPU backend) has no int8 ``PRELU`` kernel and does not
delegate a standalone int8 ``RELU`` either; both fall back to TFLite's reference
kernels and split the delegated graph. The rewrite is an exact identity built from
delegated int8 ops only:

* one slope for every channel: ``LEAKY_RELU(α)``;
* per-channel slopes all ≤ 1 (negative allowed): ``x + relu((α-1)·x)`` (``MUL``
  with a fused ``RELU`` + ``ADD``);
* some slope > 1 (``(α-1)·x`` changes sign there, so the ``RELU`` cannot be fused):
  ``x + (1-α)·relu(-x)`` (``MUL(x, -1)`` with fused ``RELU``, ``MUL``, ``ADD``).

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


def prelu_identity(x: Any, alpha: Any, lo: float, hi: float, *, relu: Callable, leaky_relu: Callable
                   ) -> tuple[Any, str]:
    """``PReLU(x)`` with slopes ``alpha`` (range ``[lo, hi]``) as XNNPACK-friendly ops.

    ``relu`` / ``leaky_relu(t, slope)`` come from the caller's framework (``tf.nn``
    in the ONNX importer, ``keras.ops`` in a Keras layer), so the same formula builds
    the same TFLite ops from both sources.

    Returns:
        ``(y, form)``: the output tensor and a short description of the form used.
    """
    if lo == hi:
        return leaky_relu(x, lo), f"LEAKY_RELU(α={lo:.4g})"
    if hi <= 1.0:
        return x + relu(x * (alpha - 1.0)), "x + relu((α-1)·x)"
    minus_one = np.asarray(-1.0, getattr(alpha, "dtype", np.float32))
    return x + relu(x * minus_one) * (1.0 - alpha), "x + (1-α)·relu(-x) (α>1: relu((α-1)·x) would be wrong)"
