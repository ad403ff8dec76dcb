"""Activation ranges other than min/max for int8 calibration (runs in the TensorFlow worker).

TFLite's converter records, per activation tensor, the min and max it saw over the
representative dataset and quantizes ``[min, max]`` into 256 levels. One rare
outlier then widens the step for every other value of that tensor. This module
replaces the recorded ranges before quantizing:

1. calibrate only (``converter._experimental_calibrate_only``): a float model with
   ``min``/``max`` stored in each activation tensor's quantization parameters;
2. run that float model on the calibration samples (all intermediate tensors
   preserved) and build, per tensor, a histogram of the positive values and one
   of the magnitudes of the negative values over the recorded range;
3. choose a clipped range per tensor (``percentile`` or ``mse``), write it into
   the calibrated model, and quantize it with TensorFlow's MLIR quantizer
   (:func:`quantize_calibrated`), exactly what ``converter.convert()`` does after
   calibrating.

Methods (``ConvertOptions.calibration_ranges``):

* ``minmax``: the converter's own ranges (unchanged);
* ``percentile``: clip at the :data:`PERCENTILE` quantile of ``|x|`` (both sides at
  the same magnitude, never wider than the recorded range);
* ``mse``: the per-side clip ``[-a, b]`` that minimises the expected squared int8
  quantization error over the histogram: clipping error of the values outside
  plus ``step²/12`` rounding error for each non-zero value inside
  (``step = (a + b) / 255``; exact zeros, e.g. after ReLU, cost nothing).

Left at min/max whatever the method: model inputs and outputs (the input range is
the data's, and an output's extremes are what a user reads: the top logit, the
largest box score), and outputs of ops whose int8 range is fixed by the op
(LOGISTIC, TANH, SOFTMAX, ...; the quantizer overrides those anyway).
"""
from __future__ import annotations

import numpy as np

from .tflite_rewrite import _op_names

__all__ = ["METHODS", "PERCENTILE", "calibrate_only", "adjust_ranges", "quantize_calibrated", "choose_range"]

METHODS = ("minmax", "percentile", "mse")
#: Quantile of |x| kept by the ``percentile`` method.
PERCENTILE = 99.99
#: Histogram bins per side (positive values, negative magnitudes).
BINS = 4096
#: Ops whose int8 output range the quantizer fixes itself.
FIXED_RANGE_OPS = {"LOGISTIC", "TANH", "SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION"}


def calibrate_only(converter) -> bytes:
    """Run the converter's calibration only: a float model with min/max per activation tensor."""
    converter._experimental_calibrate_only = True  # noqa: SLF001 - the hook TF's QuantizationDebugger uses
    try:
        return bytes(converter.convert())
    finally:
        converter._experimental_calibrate_only = False  # noqa: SLF001


def quantize_calibrated(calibrated: bytes, *, per_channel: bool = True, input_type: str = "int8",
                        output_type: str = "int8", keep_float=()) -> bytes:
    """Quantize a calibrated model as ``TFLiteConverter.convert()`` does for int8 (MLIR quantizer),
    optionally keeping the ops that produce the tensors named in ``keep_float`` in float."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfconv

    io = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}
    return bytes(tfconv.mlir_quantize(calibrated, disable_per_channel=not per_channel,
                                      input_data_type=io[input_type], output_data_type=io[output_type],
                                      denylisted_nodes=list(keep_float) or None))


def _candidates(model) -> dict[int, tuple[str, float, float]]:
    """Activation tensors whose recorded range may be replaced: index -> (producer op, min, max)."""
    names = _op_names()
    g = model.subgraphs[0]
    ends = set(int(i) for i in g.inputs) | set(int(i) for i in g.outputs)
    out = {}
    for op in g.operators:
        code = model.operatorCodes[op.opcodeIndex]
        op_name = names.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "?")
        for t in op.outputs:
            t = int(t)
            if t < 0 or t in ends or op_name in FIXED_RANGE_OPS:
                continue
            q = g.tensors[t].quantization
            if q is None or q.min is None or q.max is None or len(q.min) != 1 or g.tensors[t].type != 0:
                continue
            lo, hi = float(q.min[0]), float(q.max[0])
            if hi - lo > 0:
                out[t] = (op_name, lo, hi)
    return out


class _Hist:
    """Histograms of the positive values and of the negative magnitudes on [0, A], plus a zero count."""

    def __init__(self, lo: float, hi: float, bins: int = BINS):
        self.lo, self.hi = lo, hi
        self.amax = max(-lo, hi)
        self.bins = bins
        self.pos = np.zeros(bins, np.int64)
        self.neg = np.zeros(bins, np.int64)
        self.zeros = 0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32).ravel()
        k = self.bins / self.amax
        p = x[x > 0]
        n = -x[x < 0]
        self.zeros += int(x.size - p.size - n.size)
        if p.size:
            self.pos += np.bincount(np.minimum((p * k).astype(np.int64), self.bins - 1), minlength=self.bins)
        if n.size:
            self.neg += np.bincount(np.minimum((n * k).astype(np.int64), self.bins - 1), minlength=self.bins)


def _clip_cost(h: np.ndarray, edges: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cut: the sum over values above it of (value - cut)^2 (values at bin centres), and their count."""
    c = (edges[:-1] + edges[1:]) / 2
    n = h.astype(np.float64)
    # suffix sums from bin j upwards of n, n*c, n*c^2
    s0 = np.cumsum(n[::-1])[::-1]
    s1 = np.cumsum((n * c)[::-1])[::-1]
    s2 = np.cumsum((n * c * c)[::-1])[::-1]
    j = np.searchsorted(c, cuts, side="right")  # first bin whose centre is above the cut
    s0 = np.append(s0, 0.0)[j]
    s1 = np.append(s1, 0.0)[j]
    s2 = np.append(s2, 0.0)[j]
    return s2 - 2 * cuts * s1 + cuts * cuts * s0, s0


def choose_range(hist: _Hist, method: str, percentile: float = PERCENTILE) -> tuple[float, float]:
    """The clipped ``(min, max)`` for one tensor; never wider than the recorded range."""
    lo, hi = hist.lo, hist.hi
    edges = np.linspace(0.0, hist.amax, hist.bins + 1)
    if method == "minmax":
        return lo, hi
    if method == "percentile":
        mag = hist.pos + hist.neg
        total = mag.sum() + hist.zeros
        if total == 0:
            return lo, hi
        keep = percentile / 100.0 * total - hist.zeros
        if keep <= 0:
            return lo, hi
        cum = np.cumsum(mag)
        j = int(np.searchsorted(cum, keep))
        r = float(edges[min(j + 1, hist.bins)])
        return max(lo, -r), min(hi, r)
    if method == "mse":
        # candidate cuts per side: geometric from 1/256 of the recorded side to all of it
        def cuts(side: float) -> np.ndarray:
            if side <= 0:
                return np.zeros(1)
            return side * np.geomspace(1 / 256, 1.0, 160)

        bs, as_ = cuts(hi), cuts(-lo)
        cb, nb = _clip_cost(hist.pos, edges, bs)
        ca, na = _clip_cost(hist.neg, edges, as_)
        nonzero = float(hist.pos.sum() + hist.neg.sum())
        step = (as_[:, None] + bs[None, :]) / 255.0
        inside = nonzero - na[:, None] - nb[None, :]
        cost = ca[:, None] + cb[None, :] + inside * step * step / 12.0
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        return (-float(as_[i]) if lo < 0 else lo), (float(bs[j]) if hi > 0 else hi)
    raise ValueError(f"unknown calibration range method {method!r}; one of {METHODS}")


def float_interpreter(model: bytes, preserve: bool = False):
    """TensorFlow's interpreter on the builtin float kernels (intermediate tensors kept if ``preserve``)
    and a function mapping ``{signature input name: array}`` to it."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(
        model_content=model, experimental_preserve_all_tensors=preserve,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    sigs = interp.get_signature_list()
    key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
    runner = interp.get_signature_runner(key)
    by_name = runner.get_input_details()

    def feed(sample: dict) -> None:
        for name, arr in sample.items():
            d = by_name[name]
            x = np.asarray(arr, np.float32)
            if d["dtype"] != np.float32:
                scale, zp = d["quantization"]
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x / scale + zp), info.min, info.max)
            interp.set_tensor(d["index"], x.astype(d["dtype"]).reshape(d["shape"]))
    return interp, feed


def collect_histograms(calibrated: bytes, samples: list[dict], tensors: dict) -> dict[int, _Hist]:
    """Run the calibrated float model on ``samples`` (``{input name: array}``) and histogram ``tensors``."""
    interp, feed = float_interpreter(calibrated, preserve=True)
    hists = {t: _Hist(lo, hi) for t, (_, lo, hi) in tensors.items()}
    for sample in samples:
        feed(sample)
        interp.invoke()
        for t, h in list(hists.items()):
            try:
                h.add(interp.get_tensor(t))
            except ValueError:  # a tensor the interpreter does not keep: its range stays min/max
                del hists[t]
    return hists


def adjust_ranges(calibrated: bytes, samples: list[dict], method: str,
                  percentile: float = PERCENTILE) -> tuple[bytes, dict]:
    """Replace the recorded activation ranges of ``calibrated`` by ``method``'s.

    Returns the edited calibrated model and a summary for the report: how many
    tensors were changed and by how much their range shrank.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration range method {method!r}; one of {METHODS}")
    summary: dict = {"method": method}
    if method == "minmax":
        return calibrated, summary
    import time

    from tensorflow.lite.tools import flatbuffer_utils as fbu

    t0 = time.perf_counter()
    model = fbu.convert_bytearray_to_object(bytearray(calibrated))
    tensors = _candidates(model)
    hists = collect_histograms(calibrated, samples, tensors)
    g = model.subgraphs[0]
    ratios = []
    for t, h in hists.items():
        lo, hi = choose_range(h, method, percentile)
        q = g.tensors[t].quantization
        ratios.append((hi - lo) / (h.hi - h.lo))
        q.min = np.array([lo], np.float32)
        q.max = np.array([hi], np.float32)
    r = np.array(ratios) if ratios else np.ones(1)
    summary.update({"tensors_adjusted": len(ratios), "samples": len(samples),
                    "range_ratio_median": round(float(np.median(r)), 4), "range_ratio_min": round(float(r.min()), 4),
                    "tensors_clipped_below_90pct": int((r < 0.9).sum()),
                    "seconds": round(time.perf_counter() - t0, 2)})
    if method == "percentile":
        summary["percentile"] = percentile
    return bytes(fbu.convert_object_to_bytearray(model)), summary
