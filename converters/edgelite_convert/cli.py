"""``edgelite convert``: the command-line face of :func:`edgelite_convert.convert`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help=".keras/.h5 file, SavedModel directory, .onnx file, or .pt2 torch.export "
                                  "ExportedProgram (needs torch)")
    p.add_argument("-o", "--output", required=True, help="output .tflite (report JSON written beside it)")
    p.add_argument("--calibration", help="folder of images (recursive), .npy or .npz")
    p.add_argument("--validate", help="held-out images folder / .npy / .npz (default: hold out calibration samples)")
    p.add_argument("--mode", default="int8", choices=["int8", "int16x8", "dynamic", "float16", "float32"])
    p.add_argument("--input-type", default="int8", choices=["int8", "uint8", "float32"])
    p.add_argument("--output-type", default="int8", choices=["int8", "uint8", "float32"])
    p.add_argument("--no-per-channel", action="store_true", help="per-tensor weights (comparison only)")
    p.add_argument("--allow-float-fallback", action="store_true", help="accept float ops left in the model")
    p.add_argument("--allow-collapsed", action="store_true",
                   help="keep an int8 model whose outputs collapsed (constant, or below --min-cosine/--min-snr-db)")
    p.add_argument("--min-cosine", type=float, default=0.8, help="collapse floor: int8-vs-float cosine per output")
    p.add_argument("--min-snr-db", type=float, default=5.0, help="collapse floor: int8-vs-float SNR per output")
    p.add_argument("--onnxruntime-baseline", action="store_true",
                   help="ONNX sources: also quantize with onnxruntime (static, QDQ, per-channel) on the same "
                        "calibration data and report its accuracy beside edgelite's")
    p.add_argument("--no-prelu-rewrite", action="store_true", help="keep PRELU (slow in int8 on XNNPACK)")
    p.add_argument("--keep-float", nargs="+", default=[], metavar="LAYER",
                   help="tensor names to keep in float (selective quantization)")
    p.add_argument("--debug-layers", action="store_true", help="per-layer error ranking (QuantizationDebugger)")
    p.add_argument("--calibration-ranges", default="minmax", choices=["minmax", "percentile", "mse"],
                   help="int8 activation ranges: the calibration min/max (default), the 99.99th percentile of "
                        "|x|, or the clip minimising the int8 error (mse); model inputs/outputs keep min/max")
    p.add_argument("--suggest-precision", dest="suggest_precision", action="store_true", default=None,
                   help="search which layers to keep in float (re-quantizes the calibrated model with candidate "
                        "layers float, at most ~60 s) and report the suggestion with its measured cosine and "
                        "latency (default: only when the int8 held-out cosine is below 0.99)")
    p.add_argument("--no-suggest-precision", dest="suggest_precision", action="store_false")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="model input size: preprocessing of the calibration images, and the height/width of a "
                        "single image input that the ONNX model leaves dynamic")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME:1x3x48x192",
                   help="static ONNX-layout shape of an input (repeatable); fixes dynamic dims of ONNX models "
                        "(a dynamic batch is 1 by default)")
    p.add_argument("--resize", default="stretch", choices=["stretch", "letterbox", "center_crop", "none"])
    p.add_argument("--color", default="RGB", choices=["RGB", "BGR", "GRAY"])
    p.add_argument("--fold-color", action="store_true",
                   help="with --color BGR: fold the channel swap into the first convolution(s), so the converted "
                        "model takes RGB and the device does no per-frame swap (exact in int8)")
    p.add_argument("--mean", type=float, nargs="+", default=[0.0])
    p.add_argument("--std", type=float, nargs="+", default=[255.0])
    p.add_argument("--layout", default="NHWC", choices=["NHWC", "NCHW"])
    p.add_argument("--task", default="generic")
    p.add_argument("--labels", help="text file, one label per line")
    p.add_argument("--min-samples", type=int, default=10)
    p.add_argument("--max-samples", type=int, default=500)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run_convert(a) -> int:
    from edgelite.preprocess import PreprocessSpec

    from .convert import ConvertOptions, convert

    spec = None
    if a.input_size:
        spec = PreprocessSpec(size=tuple(a.input_size), resize=a.resize, color=a.color, layout=a.layout,
                              mean=tuple(a.mean), std=tuple(a.std))
    elif a.calibration and Path(a.calibration).is_dir():
        spec = _infer_spec(a)
    labels = Path(a.labels).read_text().splitlines() if a.labels else None
    opts = ConvertOptions(mode=a.mode, input_type=a.input_type, output_type=a.output_type,
                          per_channel=not a.no_per_channel, allow_float_fallback=a.allow_float_fallback,
                          prelu_rewrite=not a.no_prelu_rewrite, keep_float=tuple(a.keep_float),
                          debug_layers=a.debug_layers, min_calibration_samples=a.min_samples,
                          max_calibration_samples=a.max_samples, allow_collapsed=a.allow_collapsed,
                          min_cosine=a.min_cosine, min_snr_db=a.min_snr_db,
                          onnxruntime_baseline=a.onnxruntime_baseline, calibration_ranges=a.calibration_ranges,
                          suggest_precision=a.suggest_precision if a.mode == "int8" else False,
                          fold_channel_order=a.fold_color)
    res = convert(a.source, a.output, calibration=a.calibration, validation=a.validate, preprocess=spec,
                  options=opts, task=a.task, labels=labels, progress=not a.json,
                  input_shapes=parse_input_shapes(a.input_shape) or None)
    if a.json:
        print(res.report.to_json())
    else:
        print(format_report(res.report, res.path))
    return 0


def parse_input_shapes(items) -> dict[str, list[int]]:
    """``["x:1x3x48x192", "y:1x10"]`` -> ``{"x": [1, 3, 48, 192], "y": [1, 10]}`` (``,`` also separates)."""
    from edgelite.errors import ConversionError

    out: dict[str, list[int]] = {}
    for item in items or []:
        name, sep, dims = str(item).rpartition(":")
        try:
            shape = [int(d) for d in dims.replace(",", "x").lower().split("x") if d.strip()]
        except ValueError:
            shape = []
        if not sep or not name or not shape or any(d <= 0 for d in shape):
            raise ConversionError(f"--input-shape {item!r}: expected NAME:DIMS with positive sizes in ONNX "
                                  "layout, e.g. --input-shape x:1x3x48x192")
        if name in out:
            raise ConversionError(f"--input-shape given twice for input {name!r}")
        out[name] = shape
    return out


def _infer_spec(a):
    """Without --input-size, read the model's input size from the source so an image folder still works."""
    from edgelite.errors import ConversionError
    raise ConversionError("calibrating from an image folder needs the preprocessing: pass --input-size H W "
                          "(and --mean/--std/--color if the model was not trained on RGB/255)")


def format_report(r: dict, path) -> str:
    lines = [f"wrote {path} ({r['size_bytes'] / 1024:.1f} KiB, float {r['float_size_bytes'] / 1024:.1f} KiB)",
             f"mode {r['mode']}  I/O {r['input_type']}/{r['output_type']}  per-channel {r['per_channel']}",
             f"fully integer: {r['fully_integer']}" + (f"  float ops: {r['float_ops']}" if r['float_ops'] else "")]
    if r.get("rewrites"):
        lines.append(f"rewrites: {len(r['rewrites'])}: " + "; ".join(r["rewrites"][:3])
                     + (" ..." if len(r["rewrites"]) > 3 else ""))
    lines.append("XNNPACK cannot run in int8: " + (", ".join(r["xnnpack_unsupported"]) or "none (all ops delegated)"))
    if r.get("calibration"):
        lines.append(f"calibration: {r['calibration']['count']} samples from {r['calibration']['source']}")
    v = r.get("validation")
    if v:
        lines.append(f"validation on {v['samples']} held-out samples:")
        for k, o in v["outputs"].items():
            extra = f"  top-1 {o['top1_agreement']:.3f}" if "top1_agreement" in o else ""
            lines.append(f"  {k}: cosine {o['cosine_mean']:.4f}  max|err| {o['max_abs_error']:.4g}  "
                         f"mean|err| {o['mean_abs_error']:.4g}  SNR {o['snr_db']:.1f} dB{extra}")
    b = r.get("onnxruntime_int8_baseline")
    if b and "outputs" in b:
        lines.append(f"onnxruntime static int8 (QDQ, per-channel) on the same data: cosine (min over outputs) "
                     f"{b['cosine_min_over_outputs']:.4f} vs edgelite int8 "
                     f"{b.get('edgelite_int8_cosine_min_over_outputs') or float('nan'):.4f}")
    elif b:
        lines.append(f"onnxruntime baseline: {b.get('skipped')}")
    if r.get("onnx_vs_float_tflite"):
        lines.append(f"float TFLite vs onnxruntime max|err|: {r['onnx_vs_float_tflite'].get('max_abs_error_overall')}")
    if r.get("keep_float_cost"):
        c = r["keep_float_cost"]
        lines.append(f"kept in float: {', '.join(r['keep_float'])}: p50 {c['with_float_layers_p50_ms']:.3f} ms vs "
                     f"{c['full_int8_p50_ms']:.3f} ms fully int8 ({c['slowdown']}x, measured here)")
    cr = r.get("calibration_ranges") or {}
    if cr.get("method", "minmax") != "minmax":
        lines.append(f"activation ranges: {cr['method']} ({cr.get('tensors_adjusted', 0)} tensors, median range "
                     f"{cr.get('range_ratio_median', 1):.3f}x of min/max)")
    ps = r.get("precision_suggestion")
    if ps and ps.get("cli") and "validation_cosine_with_keep_float" in ps:
        lat = ps.get("latency") or {}
        verdict = "" if ps.get("improves_held_out", True) else " - no gain on the held-out samples, not worth it"
        lines.append(f"precision suggestion: {ps['cli']}: held-out cosine {ps['validation_cosine_with_keep_float']:.4f}"
                     f" vs {ps.get('validation_cosine_int8', float('nan')):.4f} int8, latency "
                     f"{lat.get('slowdown', float('nan'))}x (measured here){verdict}")
    elif ps and "keep_float" in ps and not ps["keep_float"]:
        lines.append(f"precision suggestion: none (no layer kept float removed >= 10% of the int8 error; "
                     f"{ps.get('candidates_measured', 0)} measured)")
    if r.get("layer_stats"):
        lines.append("worst layers (rmse/scale):")
        for s in r["layer_stats"][:8]:
            lines.append(f"  {s['rmse_over_scale'] or 0:8.3f}  {s['tensor']}")
    lines.append(f"report: {Path(path).with_suffix('.report.json')}")
    return "\n".join(lines)
