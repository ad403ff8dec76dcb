"""The int8 conversion through an explicit calibrated model, and which layers to keep in float.

Runs in the TensorFlow worker (:mod:`edgelite_convert._worker`). The int8 model is
made in two steps, calibrate then quantize (:mod:`edgelite_convert.ranges`), so the
calibrated model can be (1) given other activation ranges and (2) quantized again
cheaply with some layers kept in float, without calibrating again.

The precision suggestion (:func:`suggest_keep_float`) re-quantizes the calibrated
model, never calibrates again (each candidate costs one MLIR quantization, about a
tenth of a second on the torch fixtures, and a run on 16 samples), bounded by
:data:`SEARCH_SECONDS` / :data:`CANDIDATES`:

1. order the layers: by their *local* int8 error from TensorFlow's QuantizationDebugger
   (each op run on the quantized model's own inputs, float vs int8 output; relative
   error ``‖f − q‖² / ‖f‖²`` overall and per channel), interleaved with execution
   order (the local error alone missed the layer that mattered most on EfficientNet-B0
   and MobileNetV3: an early one);
2. quantize once per candidate with that layer kept float and measure the
   output cosine vs the float model on search samples taken from the
   calibration set (never the held-out samples the report validates on);
3. greedily add the best ones (at most :data:`MAX_KEEP` layers) while each removes
   at least :data:`MIN_GAIN` of the remaining output error ``1 - cosine``.

The parent process then validates the suggested model on the held-out samples
with the device runtime and measures its latency beside the fully int8 model.
"""
from __future__ import annotations

import csv
import io
import shlex
import time
from pathlib import Path

import numpy as np

from .ranges import adjust_ranges, calibrate_only, quantize_calibrated

#: Most candidates measured one by one (one quantization of the calibrated model each) ...
CANDIDATES = 128
#: ... within this many seconds (at least :data:`MIN_CANDIDATES` are measured whatever the time).
SEARCH_SECONDS = 60.0
MIN_CANDIDATES = 8
#: A layer joins the suggestion only if it removes at least this fraction of the remaining
#: output error (1 - cosine): keeping float costs latency, so noise-level gains do not count.
MIN_GAIN = 0.1
#: Most layers a suggestion keeps in float.
MAX_KEEP = 3
#: Calibration samples used for the range histograms.
RANGE_SAMPLES = 200
#: Calibration samples the suggestion is searched on.
SEARCH_SAMPLES = 16


def _samples(arrays: dict[str, np.ndarray], idx) -> list[dict]:
    return [{k: v[i:i + 1] for k, v in arrays.items()} for i in idx]


def device_cosine(float_model: bytes, model: bytes, samples: dict[str, np.ndarray]) -> float:
    """``cosine_min_over_outputs`` of ``model`` vs ``float_model`` exactly as the report's validation
    computes it: the edgelite runtime (XNNPACK) on the model after the int8 flatbuffer rewrites.
    (TensorFlow's builtin int8 kernels round differently: on EfficientNet-B0 their cosine differs
    from XNNPACK's by more than keeping one layer float gains.)"""
    from .tflite_rewrite import rewrite_for_xnnpack
    from .validate import validate_models

    return float(validate_models(float_model, rewrite_for_xnnpack(model)[0], samples)["cosine_min_over_outputs"])


def layer_ranking(calibrated: bytes, samples: list[dict], per_channel: bool, keep=()) -> list[dict]:
    """Per-layer local int8 error (QuantizationDebugger on the calibrated model), worst first."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfconv

    dbg_model = tfconv.mlir_quantize(calibrated, disable_per_channel=not per_channel, enable_numeric_verify=True,
                                     denylisted_nodes=list(keep) or None)

    def rel(f, q, scale, zp):
        f = np.asarray(f, np.float64)
        d = (np.asarray(q, np.int32) - zp) * scale - f
        return float((d * d).sum() / max(float((f * f).sum()), 1e-30))

    def channel_rel(f, q, scale, zp):
        # per channel (last axis): a tensor whose per-tensor int8 step wipes out its small channels
        f = np.asarray(f, np.float64)
        d = (np.asarray(q, np.int32) - zp) * scale - f
        c = f.shape[-1] if f.ndim else 1
        fe = (f * f).reshape(-1, c).sum(0)
        de = (d * d).reshape(-1, c).sum(0)
        live = fe > 1e-12 * max(float(fe.max()), 1e-30)
        return float((de[live] / fe[live]).mean()) if live.any() else 0.0

    opts = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"rel_error": rel, "channel_rel_error": channel_rel})
    names = list(samples[0])

    def data():
        for s in samples:
            yield [s[k] for k in names]
    dbg = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=bytes(dbg_model),
                                                    debug_dataset=data, debug_options=opts)
    dbg.run()
    rows = [{"tensor": r["tensor"], "op": r["op"], "rel_error": float(r["raw"].get("rel_error") or 0.0),
             "channel_rel_error": float(r["raw"].get("channel_rel_error") or 0.0),
             "rmse_over_scale": r["rmse_over_scale"] or 0.0} for r in debugger_rows(dbg)]
    rows.sort(key=lambda r: -r["channel_rel_error"])
    return rows


def debugger_rows(dbg) -> list[dict]:
    """The rows of a run ``QuantizationDebugger``'s per-layer dump: tensor, op, rmse,
    scale, rmse/scale, max |error|, and the raw CSV row (for custom metrics).

    The dump (not ``layer_statistics``, keyed by NumericVerify op names) carries the
    quantized model's tensor names, which is what ``denylisted_nodes`` takes.
    """
    buf = io.StringIO()
    dbg.layer_statistics_dump(buf)
    rows = []
    for row in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(row.get("scale") or 0)
        rmse = float(np.sqrt(float(row.get("mean_squared_error") or 0.0)))
        rows.append({"tensor": row.get("tensor_name"), "op": row.get("op_name"), "rmse": rmse, "scale": scale,
                     "rmse_over_scale": rmse / scale if scale else None,
                     "max_abs_error": float(row.get("max_abs_error") or 0.0), "raw": row})
    return rows


def _consumers(calibrated: bytes) -> tuple[dict[str, list[str]], list[str]]:
    """Op output tensor name -> the output tensor names of the ops that read it; and the op
    output names in execution order."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    g = fbu.convert_bytearray_to_object(bytearray(calibrated)).subgraphs[0]
    name = lambda i: g.tensors[int(i)].name.decode() if isinstance(g.tensors[int(i)].name, bytes) \
        else g.tensors[int(i)].name  # noqa: E731
    out: dict[str, list[str]] = {}
    topo: list[str] = []
    for op in g.operators:
        outs = [name(o) for o in op.outputs if int(o) >= 0]
        topo.extend(outs[:1])
        for i in op.inputs:
            if int(i) >= 0 and outs:
                out.setdefault(name(i), []).append(outs[0])
    return out, topo


def _candidates(rows: list[dict], k: int, consumers: dict[str, list[str]], topo: list[str]) -> list[list[str]]:
    """Sets of layers to try keeping float, in the order they are measured: round-robin over the
    rankings by per-channel relative error and by relative error, and the layers in execution
    order (early layers first: their error travels through the whole network; on the torch
    fixtures the layer worth keeping float was most often an early one that the local error
    ranks low). A layer kept float alone still has its output quantized for int8 consumers, so
    the worst tensors per channel also come as a group with their consumers."""
    known = {r["tensor"] for r in rows}
    lists = [[r["tensor"] for r in sorted(rows, key=lambda r: -r[m])] for m in ("channel_rel_error", "rel_error")]
    lists.append([t for t in topo if t in known])
    out: list[list[str]] = []
    for t in lists[0][:2]:
        group = [t] + [c for c in consumers.get(t, []) if c in known]
        if 1 < len(group) <= MAX_KEEP:
            out.append(group)
    for row in zip(*lists):
        for t in row:
            if t and [t] not in out and len(out) < k:
                out.append([t])
    return out[:k]


def suggest_keep_float(calibrated: bytes, float_model: bytes, search: dict[str, np.ndarray], *, per_channel: bool,
                       input_type: str, output_type: str, base_keep=(), base_model: bytes | None = None,
                       candidates: int = CANDIDATES, max_keep: int = MAX_KEEP) -> tuple[dict, bytes | None]:
    """Search which layers to keep in float; returns ``(summary, model with them kept float or None)``."""
    t0 = time.perf_counter()
    base_keep = list(base_keep)

    def quant(keep):
        return quantize_calibrated(calibrated, per_channel=per_channel, input_type=input_type,
                                   output_type=output_type, keep_float=base_keep + list(keep))

    base = base_model if base_model is not None else quant([])
    cos0 = device_cosine(float_model, base, search)
    rows = layer_ranking(calibrated, _samples(search, range(len(next(iter(search.values()))))), per_channel,
                         base_keep)
    consumers, topo = _consumers(calibrated)
    cands = _candidates(rows, candidates, consumers, topo)
    singles = []
    conversions = 0
    for t in cands:
        if conversions >= MIN_CANDIDATES and time.perf_counter() - t0 > SEARCH_SECONDS:
            break
        try:
            m = quant(t)
        except Exception as e:  # noqa: BLE001 - a node the quantizer cannot keep float: skip it
            singles.append({"layers": t, "error": f"{type(e).__name__}: {str(e)[:200]}"})
            continue
        conversions += 1
        singles.append({"layers": t, "cosine": round(device_cosine(float_model, m, search), 6)})

    def better(cos, than):
        return (1.0 - cos) < (1.0 - MIN_GAIN) * (1.0 - than)

    good = sorted((s for s in singles if "cosine" in s and better(s["cosine"], cos0)), key=lambda s: -s["cosine"])
    chosen: list[str] = []
    best_cos, best_model = cos0, None
    for s in good:
        trial = chosen + [t for t in s["layers"] if t not in chosen]
        if len(trial) > max_keep or trial == chosen:
            continue
        if not chosen:
            cos = s["cosine"]
            m = None
        else:
            m = quant(trial)
            conversions += 1
            cos = device_cosine(float_model, m, search)
        if not better(cos, best_cos):
            break
        chosen, best_cos = trial, cos
        best_model = m if m is not None else quant(trial)
        if best_cos >= 0.9999:
            break
    summary = {
        "search_samples": len(next(iter(search.values()))), "int8_cosine": round(cos0, 6),
        "keep_float": chosen, "cosine_with_keep_float": round(best_cos, 6) if chosen else None,
        "measured": sorted((x for x in singles if "cosine" in x), key=lambda x: -x["cosine"])[:10],
        "candidates_measured": len(singles), "extra_quantizations": conversions,
        "ranking": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in rows[:10]],
        "seconds": round(time.perf_counter() - t0, 2),
        # the whole option to pass: the layers already kept float (--keep-float) and the new ones
        "cli": ("--keep-float " + " ".join(shlex.quote(c) for c in base_keep + chosen)) if chosen else None,
    }
    return summary, best_model


def convert_int8(job, d: Path, make_converter, calib: dict[str, np.ndarray], float_model: bytes) -> dict:
    """Calibrate, set the activation ranges (``job.calibration_ranges``), quantize (keeping
    ``job.keep_float`` float), and search a precision suggestion when asked.

    Writes ``model.tflite`` (and ``full_int8.tflite`` with ``keep_float``,
    ``suggested.tflite`` with a suggestion) into ``d``; returns report entries.
    """
    out: dict = {}
    n = len(next(iter(calib.values())))
    calibrated = calibrate_only(make_converter())
    step = max(1, n // RANGE_SAMPLES)
    adjusted, summary = adjust_ranges(calibrated, _samples(calib, range(0, n, step)[:RANGE_SAMPLES]),
                                      job.calibration_ranges)
    out["calibration_ranges"] = summary
    kw = dict(per_channel=job.per_channel, input_type=job.input_type, output_type=job.output_type)
    keep = list(job.keep_float)
    model = quantize_calibrated(adjusted, keep_float=keep, **kw)
    (d / "model.tflite").write_bytes(model)
    full = None
    if keep:
        full = quantize_calibrated(adjusted, **kw)
        (d / "full_int8.tflite").write_bytes(full)
        out["keep_float"] = keep
    if job.suggest_precision == "never":
        return out
    search = {k: v[max(0, n - SEARCH_SAMPLES):] for k, v in calib.items()}
    if job.suggest_precision == "auto":
        held_path = d / "held.npz"
        if held_path.exists():
            with np.load(held_path) as z:
                check = {k: z[k] for k in z.files}
        else:
            check = search
        cos = device_cosine(float_model, model, check)
        if cos >= job.suggest_below_cosine:
            out["precision_suggestion"] = {"skipped": f"int8 cosine {cos:.4f} >= {job.suggest_below_cosine} "
                                                      "(suggestion searched below it, or when asked)"}
            return out
    summary, sugg = suggest_keep_float(adjusted, float_model, search, base_keep=keep, base_model=model, **kw)
    if sugg is not None:
        (d / "suggested.tflite").write_bytes(sugg)
    out["precision_suggestion"] = summary
    return out


def measure_suggestion(validation: dict, int8_validation: dict | None, cost: dict) -> dict:
    """Report entries for a suggestion, measured in the parent on the held-out samples with the
    device runtime: cosine with the layers kept float vs the int8 model, and the latency cost."""
    out = {"validation_cosine_with_keep_float": round(validation["cosine_min_over_outputs"], 6),
           "validation_samples": validation["samples"], "latency": cost}
    if int8_validation:
        base = int8_validation["cosine_min_over_outputs"]
        out["validation_cosine_int8"] = round(base, 6)
        # searched on calibration samples: say whether it also holds on the held-out ones
        out["improves_held_out"] = bool(validation["cosine_min_over_outputs"] > base)
    return out
