"""Convert a trained model to a full-integer int8 TFLite model: calibrated,
verified fully integer, validated against the float model, rewritten so int8 is
actually faster on XNNPACK, with metadata embedded.

The heavy TensorFlow work runs in subprocesses (:mod:`edgelite_convert._worker`);
this module itself only needs numpy (TensorFlow is imported only when the source
is a live ``tf.Module``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import edgelite
from edgelite.errors import ConversionError, InputError, ModelNotFoundError
from edgelite.fileio import atomic_write_bytes
from edgelite.metadata import EdgeliteMetadata
from edgelite.preprocess import ColorOrder, PreprocessSpec

from .calibration import CalibrationSet, build_calibration_set
from .job import Job
from .metadata_writer import embed_metadata
from .report import ConversionReport, SourceInfo


class QuantMode(str, enum.Enum):
    """Conversion modes.

    INT8: full-integer int8 (weights per-channel int8, activations int8); the
    target. INT16X8: int16 activations / int8 weights — more accurate, but
    XNNPACK does not run it (reference kernels: slow), for accuracy checks.
    DYNAMIC: int8 weights, float activations — smaller file, float compute.
    FLOAT16: half-size weights, dequantized to float32 at load. FLOAT32: plain.
    """

    INT8 = "int8"
    INT16X8 = "int16x8"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


class IOType(str, enum.Enum):
    """Type of the model's input/output tensors.

    int8 I/O keeps the whole graph integer (required by the Coral Edge TPU and
    avoids a float QUANTIZE op on the CPU); uint8 I/O lets camera frames go in
    without conversion when the input scale is 1/255-compatible; float32 I/O is
    the most convenient but adds QUANTIZE/DEQUANTIZE ops at the ends.
    """

    INT8 = "int8"
    UINT8 = "uint8"
    FLOAT32 = "float32"


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Typed conversion options (validated on construction).

    Beyond the quantization settings:

    * ``batch_polymorphic``: declare the batch dim dynamic when a batch of N is proven
      to equal N single runs (see :mod:`edgelite_convert.batching`);
    * ``static_batch``: export Keras models with a batch of 1 (shape chains fold);
    * ``xnnpack_rewrites``: the int8 flatbuffer rewrites of :mod:`edgelite_convert.tflite_rewrite`;
    * ``allow_collapsed`` / ``min_cosine`` / ``min_snr_db``: the collapsed-int8 refusal;
    * ``onnxruntime_baseline``: also report onnxruntime's static int8 (ONNX sources);
    * ``calibration_ranges``: activation ranges, ``"minmax"`` (the converter's own),
      ``"percentile"`` or ``"mse"`` (clipped; see :mod:`edgelite_convert.ranges`);
    * ``suggest_precision``: search which layers to keep in float and report the measured
      suggestion (:mod:`edgelite_convert.precision`); ``None``: only when the int8 model's
      held-out cosine is below ``suggest_below_cosine``;
    * ``fold_channel_order``: for a model trained on BGR (``preprocess`` colour ``BGR``),
      reverse the input-channel axis of the filters that read the image in the converted
      model, so it takes RGB and the device skips a per-frame colour swap; its embedded
      preprocessing then says ``RGB``. Exact in int8. The float32 reference twin stays as
      trained (BGR). Left out, with the reason in the report's rewrites, when the image
      feeds anything but convolutions (through pads).
    """

    mode: QuantMode = QuantMode.INT8
    input_type: IOType = IOType.INT8
    output_type: IOType = IOType.INT8
    per_channel: bool = True
    allow_float_fallback: bool = False
    prelu_rewrite: bool = True
    keep_float: tuple[str, ...] = ()
    debug_layers: bool = False
    max_calibration_samples: int = 500
    min_calibration_samples: int = 10
    recommended_calibration_samples: int = 100
    holdout: int = 16
    timeout_s: float = 1800.0
    batch_polymorphic: bool = True
    static_batch: bool = True
    onnxruntime_baseline: bool = False
    xnnpack_rewrites: bool = True
    allow_collapsed: bool = False
    min_cosine: float = 0.8
    min_snr_db: float = 5.0
    calibration_ranges: str = "minmax"
    suggest_precision: bool | None = False
    suggest_below_cosine: float = 0.99
    fold_channel_order: bool = False

    def __post_init__(self):
        for name, kind in (("mode", QuantMode), ("input_type", IOType), ("output_type", IOType)):
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                raise InputError(f"{name} {getattr(self, name)!r} is not one of "
                                 f"{[k.value for k in kind]}") from None
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        if self.keep_float and self.mode != QuantMode.INT8:
            raise InputError("keep_float applies to int8 mode only (--mode int8)")
        from .ranges import METHODS

        if self.calibration_ranges not in METHODS:
            raise InputError(f"calibration_ranges {self.calibration_ranges!r} is not one of {list(METHODS)}")
        if self.calibration_ranges != "minmax" and self.mode != QuantMode.INT8:
            raise InputError("calibration_ranges other than 'minmax' apply to int8 mode only (--mode int8)")
        if self.max_calibration_samples < self.min_calibration_samples:
            raise InputError("max_calibration_samples must be >= min_calibration_samples")
        if self.holdout < 0:
            raise InputError("holdout must be >= 0")

    @property
    def needs_calibration(self) -> bool:
        return self.mode in (QuantMode.INT8, QuantMode.INT16X8)


@dataclasses.dataclass
class ConversionResult:
    """What :func:`convert` returns. ``report`` is also saved as JSON beside the model."""

    model: bytes
    float_model: bytes
    report: ConversionReport
    path: Path | None = None

    @property
    def fully_integer(self) -> bool:
        return self.report.fully_integer


def _sha256_source(p: Path) -> str:
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _torch_source(source, example_inputs, d: Path) -> Path | None:
    """A ``torch.nn.Module`` or ``.pt2`` file exported to ONNX in ``d`` (None for other sources)."""
    is_pt2 = isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".pt2")
    mod = sys.modules.get("torch")
    is_module = mod is not None and isinstance(source, mod.nn.Module)
    if not (is_pt2 or is_module):
        return None
    try:
        import torch
    except ImportError:
        raise ConversionError(f"{source}: a .pt2 ExportedProgram needs torch installed "
                              "(pip install torch; CPU builds: pip install torch --index-url "
                              "https://download.pytorch.org/whl/cpu)") from None
    if is_pt2:
        if not Path(source).is_file():
            raise ModelNotFoundError(f"source model {str(source)!r} does not exist")
        ep = torch.export.load(str(source))

        class _Exported(torch.nn.Module):
            """ep.module() refuses train(); the TorchScript exporter calls train(False)."""

            def __init__(self, gm):
                super().__init__()
                self.gm = gm

            def forward(self, *a):
                return self.gm(*a)

            def train(self, mode: bool = True):
                return self

        module = _Exported(ep.module())
        args = getattr(ep, "example_inputs", None)
        if example_inputs is None and args:
            example_inputs = args[0]
        if not example_inputs:
            raise ConversionError(f"{source}: the ExportedProgram stores no example inputs; pass example_inputs=")
        name = Path(source).stem
    else:
        module = source.eval()
        if example_inputs is None:
            raise ConversionError("a torch.nn.Module needs example_inputs=(tensor, ...) with the input shapes "
                                  "(NCHW, e.g. (torch.randn(1, 3, 224, 224),)); a dynamic batch is kept")
        name = type(source).__name__
    if not isinstance(example_inputs, (list, tuple)):
        example_inputs = (example_inputs,)
    args = tuple(torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a for a in example_inputs)
    names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    out = d / f"{name}.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False): it gives our importer the cleaner graph (plain
        # opset ops, BatchNorm as one node) and needs no onnxscript; dynamic batch axis kept.
        torch.onnx.export(module, args, str(out), input_names=names, opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in names}, do_constant_folding=True)
    return out


def _source_kind(source) -> tuple[str, Path]:
    if not isinstance(source, (str, os.PathLike)):
        return "module", Path()
    p = Path(source)
    if not p.exists():
        raise ModelNotFoundError(f"source model {str(p)!r} does not exist")
    if p.is_dir():
        if (p / "saved_model.pb").exists():
            return "saved_model", p
        raise ConversionError(f"{p} is a directory without saved_model.pb; give a SavedModel dir, .keras, .h5 or .onnx")
    suf = p.suffix.lower()
    if suf in (".keras", ".h5", ".hdf5"):
        return "keras", p
    if suf == ".onnx":
        return "onnx", p
    raise ConversionError(f"unknown source format {suf!r} for {p}; supported: .keras, .h5, SavedModel dir, .onnx")


class _Worker:
    """The converter's worker process for one conversion: TensorFlow is imported once
    and serves both phases (``prepare``, then ``convert``), each under its own timeout.

    It starts on the first phase. A phase that times out or crashes the process is a
    :class:`ConversionError` (the process is killed); the next phase, if any, gets a
    fresh process. Results and errors travel as files in the phase's folder.
    """

    def __init__(self):
        self._p: subprocess.Popen | None = None
        self._err = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self._err = tempfile.TemporaryFile()
        self._p = subprocess.Popen([sys.executable, "-m", "edgelite_convert._worker", "serve"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env,
                                   text=True, bufsize=1)
        return self._p

    def _stderr_tail(self) -> str:
        if self._err is None:
            return ""
        self._err.seek(0, os.SEEK_END)
        self._err.seek(max(0, self._err.tell() - 1500))
        return self._err.read().decode("utf-8", "replace")

    def run(self, phase: str, d: Path, timeout: float) -> dict:
        import selectors

        p = self._p if self._p is not None and self._p.poll() is None else self._start()
        line = ""
        try:
            p.stdin.write(f"{phase}\t{d}\n")
            p.stdin.flush()
            with selectors.DefaultSelector() as sel:
                sel.register(p.stdout, selectors.EVENT_READ)
                if sel.select(timeout):
                    line = p.stdout.readline()
                else:
                    self.close(kill=True)
                    raise ConversionError(f"conversion step {phase!r} timed out after {timeout:.0f}s")
        except (BrokenPipeError, OSError):
            line = ""
        err = d / f"{phase}.error.json"
        if err.exists():
            info = json.loads(err.read_text())
            if info["type"] in ("ConversionError",):
                raise ConversionError(info["message"])
            raise ConversionError(f"{phase} failed: {info['type']}: {info['message'][:2000]}")
        if not line.startswith("done") or not (d / f"{phase}.json").exists():
            if not line:  # end of output: the process is exiting, let it finish for its code
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=30)
            code = p.poll()
            tail = self._stderr_tail()
            self.close(kill=True)
            raise ConversionError(f"conversion step {phase!r} crashed (exit {code}); the converter's last "
                                  f"output:\n{tail}")
        return json.loads((d / f"{phase}.json").read_text())

    def close(self, kill: bool = False) -> None:
        p, self._p = self._p, None
        if p is not None:
            try:
                if not kill:
                    p.stdin.close()  # end of input: the worker exits
                    p.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        if self._err is not None:
            self._err.close()
            self._err = None


_PREPARE_CACHE: dict[str, tuple[Path, dict]] = {}


def _prepare_cached(worker: _Worker, job: Job, src_hash: str | None, d: Path, timeout: float) -> dict:
    """Run the ``prepare`` phase, reusing this process's earlier result for the same
    source file and import options (re-converting one model with other calibration
    data or options then skips that phase)."""
    if src_hash is None:
        return worker.run("prepare", d, timeout)
    key = job.prepare_key(src_hash)
    hit = _PREPARE_CACHE.get(key)
    if hit is not None and Path(hit[1]["saved_model"]).exists():
        return dict(hit[1])
    keep = Path(tempfile.mkdtemp(prefix="edgelite-prepared-"))
    job.write(keep)
    prep = worker.run("prepare", keep, timeout)
    _PREPARE_CACHE[key] = (keep, prep)
    if len(_PREPARE_CACHE) == 1:
        import atexit
        import shutil
        atexit.register(lambda: [shutil.rmtree(k, ignore_errors=True) for k, _ in _PREPARE_CACHE.values()])
    return dict(prep)


def _prepare_module(module, d: Path, static_batch: bool = True, rewrites: list | None = None) -> Path:
    """Save a live tf.Module / tf.function / Keras model to a SavedModel in ``d``."""
    import tensorflow as tf

    sm = d / "module_saved_model"
    if hasattr(module, "export") and hasattr(module, "layers"):  # Keras 3 model
        from ._worker import RecurrentLayerError, export_keras

        try:
            export_keras(module, sm, 1 if static_batch else None, rewrites)
        except RecurrentLayerError as e:
            raise ConversionError(str(e)) from None
        return sm
    fn = module
    sigs = None
    if isinstance(module, tf.types.experimental.GenericFunction) or hasattr(module, "get_concrete_function"):
        wrapper = tf.Module()
        wrapper.f = module
        sigs = {"serving_default": module.get_concrete_function()}
        fn = wrapper
    elif hasattr(module, "__call__") and hasattr(module.__call__, "get_concrete_function"):
        sigs = {"serving_default": module.__call__.get_concrete_function()}
    tf.saved_model.save(fn, str(sm), signatures=sigs)
    return sm


def convert(source, output: str | os.PathLike | None = None, *, calibration=None,
            preprocess: PreprocessSpec | dict | None = None, options: ConvertOptions | None = None,
            validation=None, task: str = "generic", name: str | None = None,
            labels: Sequence[str] | None = None, input_shapes: dict[str, Sequence[int]] | None = None,
            progress: bool = True, extra_metadata: dict | None = None, num_threads: int | None = None,
            example_inputs: Sequence[Any] | None = None) -> ConversionResult:
    """Convert ``source`` to TFLite.

    Args:
        source: ``.keras``/``.h5`` file, SavedModel directory, ``.onnx`` file, a ``.pt2``
            ``torch.export`` ExportedProgram, or a live ``tf.Module`` / ``tf.function`` / Keras
            model or ``torch.nn.Module`` (PyTorch goes through ``torch.onnx.export`` and the
            ONNX importer; needs torch installed).
        example_inputs: for a ``torch.nn.Module``: the example inputs to export with
            (tensors or arrays, NCHW as the module takes them; a dynamic batch is kept).
        output: where to write the ``.tflite`` (atomic); the JSON report goes beside it.
        calibration: representative data (see :mod:`edgelite_convert.calibration`).
        preprocess: the spec used for image folders, written into the metadata.
        options: :class:`ConvertOptions`.
        validation: held-out data (same kinds as ``calibration``); default: the last
            ``options.holdout`` calibration samples are held out.
        task, name, labels: stored in the metadata.

    Raises:
        ConversionError: unsupported ops, float ops left in full-integer mode, converter crash.
        CalibrationDataError: calibration data refused (with the reason).
    """
    opts = options or ConvertOptions()
    if isinstance(preprocess, dict):
        preprocess = PreprocessSpec.from_dict(preprocess)
    t_start = time.perf_counter()
    # a torch source becomes an ONNX file that must outlive the work dir (parity checks use it);
    # the TemporaryDirectory object is cleaned up when this function returns
    torch_tmp = tempfile.TemporaryDirectory(prefix="edgelite-torch-")
    worker = _Worker()
    with tempfile.TemporaryDirectory(prefix="edgelite-convert-") as tmp, contextlib.closing(worker):
        d = Path(tmp)
        torch_src = _torch_source(source, example_inputs, Path(torch_tmp.name))
        if torch_src is not None:
            source = torch_src
        kind, path = _source_kind(source)
        if input_shapes and kind != "onnx":
            raise ConversionError("--input-shape / input_shapes applies to ONNX sources only; a Keras model or "
                                  "SavedModel takes the shapes of its own input signature")
        onnx_folded: list[str] = []
        module_rewrites: list[str] = []
        if kind == "module":
            sm = _prepare_module(source, d, opts.static_batch, module_rewrites)
            kind_, src, src_hash, src_name = "saved_model", str(sm), None, type(source).__name__
        else:
            kind_, src = kind, str(path)
            if kind == "onnx":
                _precheck_onnx(path)  # first: refuses garbage and > 2 GiB files before they are read
            src_hash, src_name = _sha256_source(path), path.name
            if kind == "onnx":
                input_shapes = resolve_onnx_input_shapes(path, input_shapes, preprocess)
                src, onnx_folded = _fold_onnx(path, input_shapes, d)
        job = Job(source_kind=kind_, source=src, mode=opts.mode.value, input_type=opts.input_type.value,
                  output_type=opts.output_type.value, per_channel=opts.per_channel,
                  allow_float_fallback=opts.allow_float_fallback, prelu_rewrite=opts.prelu_rewrite,
                  static_batch=opts.static_batch, keep_float=opts.keep_float, debug_layers=opts.debug_layers,
                  input_shapes=input_shapes, calibration_ranges=opts.calibration_ranges,
                  suggest_precision={True: "always", False: "never", None: "auto"}[opts.suggest_precision]
                  if opts.mode == QuantMode.INT8 else "never", suggest_below_cosine=opts.suggest_below_cosine)
        job.write(d)
        prep = _prepare_cached(worker, job, src_hash, d, opts.timeout_s)
        (d / "prepare.json").write_text(json.dumps(prep))
        specs = [(i["name"], [None if s == -1 else s for s in i["shape"]], i["dtype"]) for i in prep["inputs"]]
        held = None
        calib_set = None
        if opts.needs_calibration:
            if calibration is None:
                raise ConversionError(f"mode {opts.mode.value} needs calibration data (a folder of images, "
                                      ".npy/.npz, or an iterable); pass calibration=...")
            extra = 0 if validation is not None else opts.holdout
            full = build_calibration_set(calibration, specs, preprocess=preprocess,
                                         max_samples=opts.max_calibration_samples + extra,
                                         min_samples=opts.min_calibration_samples,
                                         min_recommended=opts.recommended_calibration_samples, progress=progress)
            if validation is None and opts.holdout:
                calib_set, held = full.split(opts.holdout)
            else:
                calib_set = full
            calib_set.save(d / "calib.npz")
        if validation is not None:
            held = build_calibration_set(validation, specs, preprocess=preprocess, max_samples=200,
                                         min_samples=1, min_recommended=1, progress=False, check_range=False)
        if held is not None and job.suggest_precision == "auto":
            held.save(d / "held.npz")
        conv = worker.run("convert", d, opts.timeout_s)
        worker.close()
        qbytes = (d / "model.tflite").read_bytes()
        fbytes = (d / "float.tflite").read_bytes()
        full_int8 = (d / "full_int8.tflite").read_bytes() if (d / "full_int8.tflite").exists() else None
        suggested = (d / "suggested.tflite").read_bytes() if (d / "suggested.tflite").exists() else None

    int8_rewrites: list[str] = []
    if opts.mode == QuantMode.INT8 and opts.xnnpack_rewrites:
        from .tflite_rewrite import rewrite_for_xnnpack

        qbytes, int8_rewrites = rewrite_for_xnnpack(qbytes)
        if suggested is not None:
            suggested, _ = rewrite_for_xnnpack(suggested)
    if opts.xnnpack_rewrites:
        from .tflite_rewrite import split_large_concats

        fbytes, _ = split_large_concats(fbytes)
    batch_info: dict = {"batch_polymorphic": False, "reason": "disabled (ConvertOptions.batch_polymorphic)"}
    if opts.batch_polymorphic:
        from .batching import make_batch_polymorphic

        qbytes, batch_info = make_batch_polymorphic(qbytes)
        fbytes, fbatch = make_batch_polymorphic(fbytes)
        batch_info = {**batch_info, "float32": fbatch}

    from edgelite import read_model_info
    from edgelite.inspect import inspect_model

    insp = inspect_model(qbytes)
    degenerate = _degenerate_ranges(qbytes) if opts.needs_calibration else None
    report = ConversionReport(
        source=SourceInfo(kind if torch_src is None else "torch (exported to onnx)", src_name, src_hash),
        mode=opts.mode.value, input_type=opts.input_type.value, output_type=opts.output_type.value,
        per_channel=opts.per_channel, rewrites=module_rewrites + prep.get("rewrites", []) + int8_rewrites,
        fully_integer=bool(insp.fully_integer), float_ops=list(insp.float_ops),
        xnnpack_unsupported=list(getattr(insp, "xnnpack_unsupported", [])),
        op_histogram=read_model_info(qbytes).op_histogram(),
        size_bytes=len(qbytes), float_size_bytes=len(fbytes), batch=batch_info, onnx_folded=onnx_folded,
        calibration=calib_set.summary() if calib_set else None,
        tensorflow=conv.get("tensorflow"), edgelite=edgelite.__version__,
        seconds={"prepare_and_convert": round(time.perf_counter() - t_start, 2),
                 "quantize": round(conv.get("quant_seconds", 0), 2)},
        degenerate_activation_ranges=degenerate, layer_stats=conv.get("layer_stats"),
        keep_float=list(opts.keep_float) if opts.keep_float else None,
        keep_float_cost=(_keep_float_cost(full_int8, qbytes, num_threads)
                         if opts.keep_float and full_int8 is not None else None),
        calibration_ranges=((conv.get("calibration_ranges") or {"method": opts.calibration_ranges})
                            if opts.mode == QuantMode.INT8 else None),
    )
    if opts.mode == QuantMode.INT8 and not insp.fully_integer and not opts.allow_float_fallback:
        raise ConversionError(summarize_float_ops(qbytes, insp.float_ops))
    if held is not None and held.count:
        validation = validate_against(fbytes, qbytes, held, num_threads=num_threads)
        report = dataclasses.replace(report, validation=validation)
        if opts.needs_calibration:
            _refuse_collapsed(validation, opts, degenerate or [])
    if "precision_suggestion" in conv:
        suggestion = dict(conv["precision_suggestion"])
        if suggested is not None and held is not None and held.count:
            from .precision import measure_suggestion

            suggestion.update(measure_suggestion(
                validate_against(fbytes, suggested, held, num_threads=num_threads), report.validation,
                _keep_float_cost(qbytes, suggested, num_threads)))
        report = dataclasses.replace(report, precision_suggestion=suggestion)
    if kind == "onnx" and held is not None and held.count:
        report = dataclasses.replace(report, onnx_vs_float_tflite=_onnx_parity(
            path, fbytes, held, {**prep, "input_shapes": input_shapes}))
        if opts.onnxruntime_baseline and calib_set is not None and opts.mode == QuantMode.INT8:
            from .ort_baseline import onnxruntime_int8_baseline

            base = onnxruntime_int8_baseline(_onnx_with_shapes_bytes(path, input_shapes), calib_set.arrays,
                                             held.arrays, prep.get("onnx_input_layouts", {}),
                                             per_channel=opts.per_channel)
            v = report.validation or {}
            if "outputs" in base and v:
                base["edgelite_int8_cosine_min_over_outputs"] = v.get("cosine_min_over_outputs")
            report = dataclasses.replace(report, onnxruntime_int8_baseline=base)
    deployed_spec = preprocess
    if opts.fold_channel_order and preprocess is not None and preprocess.color is ColorOrder.BGR:
        from .tflite_rewrite import fold_channel_swap

        folded, why = fold_channel_swap(qbytes)
        if folded is not None:
            qbytes, deployed_spec = folded, dataclasses.replace(preprocess, color=ColorOrder.RGB)
        report = dataclasses.replace(report, rewrites=report.rewrites + [
            why if folded is not None else f"BGR input order not folded: {why}"])
    meta = EdgeliteMetadata(
        task=task, name=name or (src_name.rsplit(".", 1)[0] if src_name else "model"),
        preprocessing=deployed_spec, labels=tuple(labels) if labels else None,
        source=dataclasses.asdict(report.source),
        versions={"edgelite": edgelite.__version__, "tensorflow": conv.get("tensorflow")},
        calibration={"count": calib_set.count, "source": calib_set.source} if calib_set else {},
        quantization={"mode": opts.mode.value, "input_type": opts.input_type.value,
                      "output_type": opts.output_type.value, "per_channel": opts.per_channel,
                      "rewrites": report.rewrites},
        validation=_validation_summary(report.validation), extra=extra_metadata or {},
    )
    qbytes = embed_metadata(qbytes, meta)
    fmeta = dataclasses.replace(meta, preprocessing=preprocess, quantization={"mode": "float32"}, calibration={},
                                validation={})
    fbytes = embed_metadata(fbytes, fmeta)
    res = ConversionResult(qbytes, fbytes, dataclasses.replace(report, size_bytes=len(qbytes)))
    if output is not None:
        out = Path(output)
        atomic_write_bytes(out, qbytes)
        atomic_write_bytes(out.with_suffix(".report.json"), res.report.to_json().encode())
        res.path = out
    return res


def _degenerate_ranges(model_bytes: bytes, min_range: float = 1e-5) -> list[str]:
    """Activation tensors whose calibrated range is ~0 (the calibration data never excited them)."""
    from edgelite import read_model_info

    out = []
    for t in read_model_info(model_bytes).subgraphs[0].tensors:
        q = t.quantization
        if t.is_constant or q is None or not q.is_quantized or t.dtype not in ("int8", "uint8", "int16"):
            continue
        levels = 65535 if t.dtype == "int16" else 255
        if max(q.scales) * levels < min_range:
            out.append(t.name)
    return out


#: Why an op stays float in int8 mode, and what to do, per TFLite op type.
FLOAT_OP_FIXES: dict[str, str] = {
    "NEG": "a LayerNormalization (Keras) or x*-1: LayerNorm is rewritten when converting from ONNX; in Keras, "
           "replace the subtraction by an ADD of a negated constant, or allow mixed precision",
    "POW": "x**2: write x*x (the ONNX importer rewrites Pow(x, 2) itself); other exponents have no int8 kernel",
    "RSQRT": "normalisation (LayerNorm/InstanceNorm): fold it into a following layer, or keep this layer float "
             "(--keep-float) / allow mixed precision",
    "SQRT": "normalisation: as RSQRT",
    "DIV": "division by a tensor: multiply by a reciprocal computed from constants where possible",
    "EXP": "softmax/attention written by hand: use the SOFTMAX op (int8 kernel)",
    "LOG": "no int8 kernel: move it into post-processing",
    "CAST": "an integer/bool tensor path (indices, masks): compute it from constants (static shapes) or move it "
            "out of the model",
    "WHILE": "a recurrent layer (LSTM/GRU) with a dynamic loop: unroll it with a static sequence length "
             "(Keras: unroll=True)",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "unroll the recurrence (static sequence length; Keras: unroll=True)",
    "GATHER": "an embedding/index lookup on float data: move it before the model or quantize its table",
    "CUSTOM": "a custom op has no int8 kernel: re-export without it",
    "QUANTIZE": "conversions into the float ops listed above; they go away with them",
    "DEQUANTIZE": "conversions out of int8 into the float ops listed above; they go away with them",
    "SHAPE": "shape computations left by a dynamic batch: export with a static batch (shape=(1, ...))",
    "STRIDED_SLICE": "shape computations left by a dynamic batch: export with a static batch",
    "PACK": "shape computations left by a dynamic batch: export with a static batch",
}


def summarize_float_ops(model_bytes: bytes, float_ops) -> str:
    """'Not fully integer': float ops grouped by type with counts, node (output tensor) names and a fix."""
    from edgelite import read_model_info

    info = read_model_info(model_bytes)
    groups: dict[str, list[str]] = {}
    for f in float_ops:
        sg = info.subgraphs[f.subgraph]
        op = sg.operators[f.index]
        outs = [sg.tensors[t].name for t in op.outputs if t >= 0]
        groups.setdefault(f.op_name, []).append(outs[0] if outs else f"#{f.index}")
    lines = []
    boundary = ("QUANTIZE", "DEQUANTIZE")
    for op_name, names in sorted(groups.items(), key=lambda kv: (kv[0] in boundary, -len(kv[1]), kv[0])):
        shown = ", ".join(f"'{n}'" for n in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        key = "CUSTOM" if op_name.startswith("CUSTOM") else op_name
        fix = FLOAT_OP_FIXES.get(key, "no int8 kernel for it in this TensorFlow: replace it in the source model, "
                                      "or keep it float with allow_float_fallback")
        lines.append(f"  - {op_name} x{len(names)} ({shown}). Fix: {fix}.")
    total = sum(len(v) for v in groups.values())
    return (f"the converted model is not fully integer: {total} op(s) of {len(groups)} type(s) compute in float:\n"
            + "\n".join(lines) + "\nOr accept float ops: allow_float_fallback=True (--allow-float-fallback); "
            "the model is then slower on XNNPACK (see report['xnnpack_unsupported']).")


def _refuse_collapsed(validation: dict, opts: ConvertOptions, dead: list[str]) -> None:
    """Fail a quantized conversion whose outputs collapsed (see ``validate.collapsed_outputs``)."""
    from .validate import collapsed_outputs

    bad = collapsed_outputs(validation, opts.min_cosine, opts.min_snr_db)
    validation["collapsed_outputs"] = bad
    if not bad or opts.allow_collapsed:
        return
    detail = "; ".join(f"'{k}': {v}" for k, v in bad.items())
    if dead:
        detail += (f". {len(dead)} activation tensor(s) got a range of ~0 from calibration (never excited by it): "
                   + ", ".join(f"'{x}'" for x in dead[:6]) + (" ..." if len(dead) > 6 else ""))
    if validation.get("xnnpack_error"):
        detail += ". XNNPACK cannot even load it (its requantization scales are out of range)"
    raise ConversionError(
        f"the {opts.mode.value} model has collapsed on {validation['samples']} held-out samples: {detail}. "
        "The calibration data probably does not look like real inputs (for example a detector calibrated on "
        "images without the objects it detects, blank or synthetic images, or data preprocessed differently "
        "from what the model sees in use): the activation ranges it gives clip the real signal away. Fix: "
        "calibrate on real inputs after the same preprocessing (and validate on them, --validate). To keep "
        "this model anyway pass allow_collapsed=True (--allow-collapsed); the floors are min_cosine="
        f"{opts.min_cosine} and min_snr_db={opts.min_snr_db} (--min-cosine, --min-snr-db).")


def _keep_float_cost(full_int8: bytes, selective: bytes, num_threads=None) -> dict:
    """Median latency of the fully-int8 model vs the one with float layers, measured
    back to back here (indicative: measure on the target with ``edgelite bench``)."""
    from edgelite.bench import benchmark

    a = benchmark(full_int8, num_threads=num_threads, runs=30, min_seconds=0.5, warmup=3)
    b = benchmark(selective, num_threads=num_threads, runs=30, min_seconds=0.5, warmup=3)
    return {"full_int8_p50_ms": round(a.latency.p50, 4), "with_float_layers_p50_ms": round(b.latency.p50, 4),
            "slowdown": round(b.latency.p50 / a.latency.p50, 3) if a.latency.p50 > 0 else None,
            "note": "same machine, back to back; re-measure on the target"}


def _validation_summary(v: dict | None) -> dict:
    if not v:
        return {}
    return {"samples": v["samples"], "cosine_min_over_outputs": v["cosine_min_over_outputs"],
            "outputs": {k: {m: o[m] for m in ("cosine_global", "cosine_mean", "max_abs_error", "snr_db", "top1_agreement")
                            if m in o}
                        for k, o in v["outputs"].items()}}


def validate_against(float_bytes: bytes, quant_bytes: bytes, held: CalibrationSet, num_threads=None) -> dict:
    from .validate import validate_models

    return validate_models(float_bytes, quant_bytes, held.arrays, num_threads=num_threads)


def _precheck_onnx(path: Path) -> None:
    """Fail fast, before any subprocess or TensorFlow, on a file onnx cannot read: typed
    errors for garbage, a too-new IR/opset, or external data that does not match its
    declared sizes. The op check comes after folding (:func:`_fold_onnx`)."""
    from .onnx_check import check_onnx_file

    check_onnx_file(path)


def _fold_onnx(path: Path, input_shapes: dict | None, d: Path) -> tuple[str, list[str]]:
    """Fold shape-only subgraphs whose ops the importer lacks, then refuse what remains - all
    without TensorFlow. Returns the ONNX file to import (a folded copy in ``d`` when needed)."""
    import onnx

    from .onnx_fold import check_supported

    model, folded = check_supported(onnx.load(str(path)), input_shapes)
    if not folded:
        return str(path), []
    out = d / f"{path.stem}.folded.onnx"
    onnx.save(model, str(out))
    return str(out), folded


def _fmt_shape(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def resolve_onnx_input_shapes(path, input_shapes: dict | None, preprocess: PreprocessSpec | None) -> dict | None:
    """Static ONNX-layout shapes for every input of an ONNX model, before any TensorFlow work.

    Dynamic dims are resolved as follows: the ones named in ``input_shapes``
    (``--input-shape NAME:1x3x48x192``) win; a dynamic batch (dim 0) becomes 1;
    a dynamic height/width of the single 4-D (image) input comes from the
    preprocessing size (``--input-size H W``). Anything left dynamic is refused
    with the option that fixes it, listing every input and its declared shape.

    Returns:
        ``input_shapes`` completed with the inputs that had dynamic dims (None when
        the model is fully static and nothing was given).
    """
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    declared: dict[str, list] = {}
    for i in inputs:
        dims = i.type.tensor_type.shape.dim
        declared[i.name] = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    listing = ", ".join(f"'{n}' {_fmt_shape(s)}" for n, s in declared.items())
    given = {str(k): [int(d) for d in v] for k, v in (input_shapes or {}).items()}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConversionError(f"--input-shape / input_shapes names unknown input(s) {unknown}; the model's inputs "
                              f"are {listing}")
    for name, shape in given.items():
        want = declared[name]
        if len(shape) != len(want) or any(d <= 0 for d in shape):
            raise ConversionError(f"--input-shape {name}:{_fmt_shape(shape)}: input '{name}' has rank {len(want)} "
                                  f"(declared {_fmt_shape(want)}); give {len(want)} positive sizes in ONNX layout "
                                  "(NCHW for images), e.g. " + f"{name}:" + _fmt_shape(
                                      [d if d is not None else (1 if k == 0 else 224) for k, d in enumerate(want)]))
    images = [n for n, s in declared.items() if len(s) == 4]
    size = tuple(preprocess.size) if preprocess is not None else None
    out = dict(given)
    for name, shape in declared.items():
        if name in given:
            continue
        shape = list(shape)
        if shape and shape[0] is None:
            shape[0] = 1  # dynamic batch: one image (the converted model stays batch-polymorphic)
        if len(shape) == 4 and size is not None and len(images) == 1:
            if None in shape[2:]:
                shape[2:] = [shape[2] or size[0], shape[3] or size[1]]
            elif tuple(shape[2:]) != size:
                raise ConversionError(
                    f"--input-size {size[0]} {size[1]} does not match input '{name}', declared "
                    f"{_fmt_shape(shape)} (NCHW). Fix: --input-size {shape[2]} {shape[3]}, or, if the model is "
                    f"fully convolutional, convert it at another size with --input-shape "
                    f"{name}:{_fmt_shape(shape[:2] + list(size))} (input_shapes={{'{name}': "
                    f"{shape[:2] + list(size)}}} in Python)")
        if None in shape:
            dyn = [k for k, d in enumerate(shape) if d is None]
            hw = len(shape) == 4 and set(dyn) <= {2, 3}
            example = [d if d is not None else (size[k - 2] if hw and size else 224) for k, d in enumerate(shape)]
            hint = (f" or --input-size H W (sets height and width of the single image input)"
                    if hw and len(images) == 1 else "")
            raise ConversionError(
                f"Input '{name}' has dynamic dimension(s) {dyn} (declared {_fmt_shape(declared[name])}, ONNX "
                f"layout); the converter needs static sizes. Fix: pass --input-shape {name}:{_fmt_shape(example)}"
                f"{hint} on the command line, or input_shapes={{'{name}': {example}}} to convert(). "
                f"The model's inputs: {listing}.")
        if shape != declared[name]:
            out[name] = shape
    return out or None


def _onnx_parity(path: Path, float_bytes: bytes, held: CalibrationSet, prep: dict) -> dict:
    """End-to-end max error of the float TFLite against onnxruntime on held-out samples."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"skipped": "onnxruntime not installed"}
    from edgelite.model import Model

    so = ort.SessionOptions()
    so.log_severity_level = 3  # SFace lists its initializers as graph inputs: one warning per weight otherwise
    sess = ort.InferenceSession(_onnx_with_shapes(path, prep), so, providers=["CPUExecutionProvider"])
    fm = Model(float_bytes)
    layouts = prep.get("onnx_input_layouts", {})
    onnx_in = [i.name for i in sess.get_inputs()]
    tfl_names = list(held.arrays)
    errs = {}
    for i in range(held.count):
        feed_tfl = [held.arrays[k][i:i + 1] for k in tfl_names]
        feed_onnx = {}
        for oname, arr in zip(onnx_in, feed_tfl):
            feed_onnx[oname] = (np.transpose(arr, (0, 3, 1, 2)) if layouts.get(oname) == "NHWC" else arr
                                ).astype(np.float32)
        ref = sess.run(None, feed_onnx)
        ref_by_name = dict(zip([o.name for o in sess.get_outputs()], ref))
        got = fm.run(feed_tfl)
        got_sorted = _match_outputs(ref_by_name, got)
        for k, (r, g) in got_sorted.items():
            errs[k] = max(errs.get(k, 0.0), float(np.abs(r - g).max()))
    return {"max_abs_error": errs, "max_abs_error_overall": max(errs.values()) if errs else None,
            "samples": held.count}


def _onnx_with_shapes(path: Path, prep: dict) -> bytes | str:
    """The ONNX model with its input shapes set to the ones we converted at (YuNet's file
    declares 640x640 but is fully convolutional), output/intermediate shapes cleared."""
    import onnx

    shapes = prep.get("input_shapes") or {}
    if not shapes:
        return str(path)
    m = onnx.load(str(path))
    for i in m.graph.input:
        if i.name in shapes:
            dims = i.type.tensor_type.shape.dim
            for d, v in zip(dims, shapes[i.name]):
                d.ClearField("dim_param")
                d.dim_value = int(v)
    for o in m.graph.output:
        for k, d in enumerate(o.type.tensor_type.shape.dim):
            d.ClearField("dim_value")
            d.dim_param = f"{o.name}_d{k}"
    del m.graph.value_info[:]
    return m.SerializeToString()


def _onnx_with_shapes_bytes(path: Path, input_shapes: dict | None) -> bytes:
    got = _onnx_with_shapes(path, {"input_shapes": input_shapes})
    return Path(got).read_bytes() if isinstance(got, str) else got


def _match_outputs(ref_by_name: dict, got: dict) -> dict:
    """Pair ONNX outputs with TFLite outputs: by name when the TFLite name contains it, else by shape."""
    out = {}
    used = set()
    for name, r in ref_by_name.items():
        cand = [k for k in got if k not in used and (k == name or k.endswith(name) or name in k)
                and got[k].size == r.size]
        if not cand:
            cand = [k for k in got if k not in used and got[k].shape == r.shape]
        if cand:
            used.add(cand[0])
            out[name] = (r.reshape(-1), got[cand[0]].reshape(-1))
    return out
