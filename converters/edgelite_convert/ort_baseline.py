"""onnxruntime's own static int8 quantization, as a baseline for edgelite's int8 model.

A user converting an ONNX model could instead run it with onnxruntime after
``onnxruntime.quantization.quantize_static`` (QDQ format, per-channel int8 weights,
int8 activations, MinMax calibration). :func:`onnxruntime_int8_baseline` does exactly
that with the *same* calibration samples and measures it on the *same* held-out
samples against onnxruntime's float model, with the same metrics as
:mod:`edgelite_convert.validate`, so the conversion report can say whether edgelite's
int8 model is as accurate as what the user would otherwise get.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .validate import compare_outputs

__all__ = ["onnxruntime_int8_baseline"]


def _to_onnx_layout(arr: np.ndarray, layout: str) -> np.ndarray:
    return np.transpose(arr, (0, 3, 1, 2)) if layout == "NHWC" and arr.ndim == 4 else arr


def onnxruntime_int8_baseline(onnx_model: bytes | str | os.PathLike, calib: dict[str, np.ndarray],
                              held: dict[str, np.ndarray], layouts: dict[str, str] | None = None,
                              per_channel: bool = True, timing_threads: int = 1) -> dict:
    """Quantize ``onnx_model`` with onnxruntime (static, QDQ) and compare it with onnxruntime float.

    Args:
        onnx_model: The ONNX model (bytes or path) with static input shapes.
        calib: Calibration samples per ONNX input name, as edgelite holds them (NHWC
            for image inputs; ``layouts`` says which).
        held: Held-out samples, same layout.
        layouts: ``{input: "NHWC" | "AS_IS"}`` (the importer's ``input_layouts``).
        per_channel: Per-channel weight scales (what edgelite uses).
        timing_threads: Intra-op threads for the latency figures.

    Returns:
        ``{"method", "outputs": {name: metrics}, "cosine_min_over_outputs", "p50_ms": {"float32", "int8"}}``,
        or ``{"skipped": reason}`` when onnxruntime's quantizer is not available or fails.
    """
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError as e:
        return {"skipped": f"onnxruntime quantization not available: {e}"}
    layouts = layouts or {}
    names = list(calib)
    n = len(calib[names[0]])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            feed = {k: _to_onnx_layout(calib[k][self.i:self.i + 1], layouts.get(k, "AS_IS")).astype(np.float32)
                    for k in names}
            self.i += 1
            return feed

    with tempfile.TemporaryDirectory(prefix="edgelite-ort-q-") as tmp:
        src = Path(tmp) / "float.onnx"
        if isinstance(onnx_model, (bytes, bytearray)):
            src.write_bytes(bytes(onnx_model))
        else:
            src.write_bytes(Path(onnx_model).read_bytes())
        import onnx

        m = onnx.load(str(src))
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < 13:
            # per-channel QuantizeLinear/DequantizeLinear (the axis attribute) need opset 13
            try:
                from onnx import version_converter

                onnx.save(version_converter.convert_version(m, 13), str(src))
            except Exception as e:  # noqa: BLE001
                if per_channel:
                    return {"skipped": f"opset {opset} model could not be upgraded to 13 for per-channel QDQ: "
                                       f"{type(e).__name__}: {str(e)[:200]}"}
        dst = Path(tmp) / "int8.onnx"
        t0 = time.perf_counter()
        try:
            quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        except Exception as e:  # noqa: BLE001 - a baseline must not fail the conversion
            return {"skipped": f"onnxruntime quantize_static failed: {type(e).__name__}: {str(e)[:300]}"}
        q_seconds = time.perf_counter() - t0
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = timing_threads
        try:
            fs = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
            qs = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            return {"skipped": f"onnxruntime cannot load its own quantized model: {type(e).__name__}: "
                               f"{str(e)[:300]}"}
        m = len(held[names[0]])
        out_names = [o.name for o in fs.get_outputs()]
        refs: dict[str, list] = {k: [] for k in out_names}
        gots: dict[str, list] = {k: [] for k in out_names}
        tf_, tq = [], []
        for i in range(m):
            feed = {k: _to_onnx_layout(held[k][i:i + 1], layouts.get(k, "AS_IS")).astype(np.float32) for k in names}
            t0 = time.perf_counter()
            r = fs.run(None, feed)
            tf_.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            g = qs.run(None, feed)
            tq.append(time.perf_counter() - t0)
            for k, a, b in zip(out_names, r, g):
                refs[k].append(a)
                gots[k].append(b)
    outs = {k: compare_outputs(np.concatenate(refs[k]), np.concatenate(gots[k])) for k in out_names}
    return {"method": "onnxruntime quantize_static, QDQ, int8 activations, int8 weights "
                      + ("per-channel" if per_channel else "per-tensor") + ", MinMax calibration on the same samples",
            "calibration_samples": n, "samples": m, "outputs": outs,
            "cosine_min_over_outputs": float(min(o["cosine_global"] for o in outs.values())),
            "quantize_seconds": round(q_seconds, 2),
            "p50_ms": {"float32": round(float(np.median(tf_)) * 1e3, 4), "int8": round(float(np.median(tq)) * 1e3, 4),
                       "threads": timing_threads, "note": "onnxruntime CPU EP, measured during conversion"}}
