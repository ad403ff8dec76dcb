"""Subprocess worker for TensorFlow-heavy steps.

Why a subprocess: the TFLite converter leaks memory on every call and can abort
the whole process (MLIR ``LOG(FATAL)``) on models it does not like. Running it in
a child keeps the caller alive and its memory flat; a crash becomes a
:class:`~edgelite.errors.ConversionError` with the child's last output.

Phases (``python -m edgelite_convert._worker PHASE JOB_DIR``), each reading
``JOB_DIR/job.json`` and writing ``JOB_DIR/<phase>.json``:

* ``prepare``: load the source (Keras / SavedModel / ONNX), apply delegate-aware
  rewrites, save a SavedModel with a ``serving_default`` signature, record input
  and output specs.
* ``convert``: quantize with the calibration set (``calib.npz``), also produce the
  float32 reference model; optional QuantizationDebugger per-layer statistics and
  selective quantization (``keep_float``).
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from edgelite_convert.job import Job

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tf():
    import tensorflow as tf

    return tf


# ---------------------------------------------------------------- prepare ----
class _ShapeOnly:
    """A tensor stand-in that has a shape and absorbs arithmetic (for describing a rewrite)."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def _same(self, other):
        return self

    __add__ = __radd__ = __mul__ = __rmul__ = _same


def _keras_prelu_rewrite(model, rewrites):
    """Replace every Keras PReLU layer by the exact, XNNPACK-friendly form used for
    ONNX too (:func:`edgelite_convert.prelu.prelu_identity`): one rewrite, one place."""
    import keras
    import numpy as np

    from edgelite_convert.prelu import prelu_identity

    @keras.saving.register_keras_serializable(package="edgelite")
    class ExactPReLU(keras.layers.Layer):
        def __init__(self, alpha=None, **kw):
            super().__init__(**kw)
            self.alpha = np.asarray(alpha, np.float32)

        def call(self, x):
            lo, hi = float(self.alpha.min()), float(self.alpha.max())
            return prelu_identity(x, self.alpha, lo, hi, relu=keras.ops.relu,
                                  leaky_relu=lambda t, a: keras.ops.leaky_relu(t, negative_slope=a))[0]

        def get_config(self):
            return {**super().get_config(), "alpha": self.alpha.tolist()}

    replaced = {}

    def clone(layer):
        if isinstance(layer, keras.layers.PReLU):
            alpha = layer.get_weights()[0]
            try:
                shape = tuple(layer.input.shape)
            except (AttributeError, ValueError):  # a layer used twice has no single input
                shape = ()
            replaced[layer.name] = (alpha, shape)
            return ExactPReLU(alpha, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    if not any(isinstance(l, keras.layers.PReLU) for l in model.layers):
        return model
    new = keras.models.clone_model(model, clone_function=clone)
    for old_l, new_l in zip(model.layers, new.layers):
        if old_l.name not in replaced and old_l.get_weights():
            new_l.set_weights(old_l.get_weights())
    for name, (a, shape) in replaced.items():
        lo, hi = float(a.min()), float(a.max())
        # a stand-in with only the layer's input shape, so the description says what the call builds
        form = prelu_identity(_ShapeOnly(shape), a, lo, hi, relu=lambda t: t, leaky_relu=lambda t, s: t)[1]
        rewrites.append(f"PReLU {name!r} ({a.size} slopes, α∈[{lo:.3g},{hi:.3g}]) -> {form}")
    return new


_RNN_HINT = ("recurrent layers (LSTM/GRU/SimpleRNN) convert to full-integer TFLite only unrolled, which needs a "
             "static sequence length. Fix: give the model input a fixed number of time steps "
             "(keras.Input((T, features))) and edgelite unrolls the layers itself (or build them with unroll=True). "
             "TensorFlow's SELECT_TF_OPS fallback is not offered: edgelite models run on the builtin kernels only")


class RecurrentLayerError(ValueError):
    """A recurrent layer that cannot be unrolled (dynamic sequence length)."""


def _unroll_rnns(model, rewrites: list | None):
    """Clone ``model`` with every LSTM/GRU/SimpleRNN (also inside Bidirectional) set to ``unroll=True``.

    The TFLite converter cannot lower the TensorList loop of a Keras recurrent layer
    to builtin ops; the same layer unrolled over a static number of steps converts
    to plain FULLY_CONNECTED/ADD/MUL/LOGISTIC/TANH ops, fully int8.
    """
    import keras

    def rnn_of(layer):
        return layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer

    rnns = [l for l in model.layers if isinstance(rnn_of(l), keras.layers.RNN) and not rnn_of(l).unroll]
    if not rnns:
        return model
    for l in rnns:
        steps = tuple(l.input.shape)[1] if getattr(l, "input", None) is not None else None
        if steps is None:
            raise RecurrentLayerError(f"layer {l.name!r} ({type(rnn_of(l)).__name__}) has a dynamic sequence length. "
                                      + _RNN_HINT)
    names = {l.name for l in rnns}

    def clone(layer):
        cfg = layer.get_config()
        if layer.name in names:
            if isinstance(layer, keras.layers.Bidirectional):
                for k in ("layer", "backward_layer"):
                    if cfg.get(k):
                        cfg[k]["config"]["unroll"] = True
            else:
                cfg["unroll"] = True
        return layer.__class__.from_config(cfg)

    new = keras.models.clone_model(model, clone_function=clone)
    new.set_weights(model.get_weights())
    if rewrites is not None:
        for l in rnns:
            rewrites.append(f"{type(rnn_of(l)).__name__} {l.name!r} unrolled over its {tuple(l.input.shape)[1]} "
                            "static time steps (the TFLite converter cannot lower the loop to builtin ops)")
    return new


def export_keras(model, path, static_batch: int | None = 1, rewrites: list | None = None) -> None:
    """``model.export`` to a SavedModel, with the batch dimension fixed when ``static_batch``.

    Keras models declare a variable batch; its export computes every batch-dependent
    shape at run time (``SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE`` per squeeze-excite
    block), which stays in the TFLite model as int32/float ops XNNPACK does not take,
    splitting its graph into many partitions (EfficientNetB0: 17). With a static batch
    those chains fold to constants at conversion.
    """
    import tensorflow as tf

    if hasattr(model, "layers") and getattr(model, "inputs", None):
        model = _unroll_rnns(model, rewrites)
    ins = list(model.inputs or [])
    if static_batch and len(ins) == 1 and ins[0].shape[0] is None and None not in tuple(ins[0].shape)[1:]:
        shape = [static_batch] + [int(d) for d in tuple(ins[0].shape)[1:]]
        spec = tf.TensorSpec(shape, ins[0].dtype, name=getattr(ins[0], "name", None) or "input")
        try:
            model.export(str(path), format="tf_saved_model", verbose=False, input_signature=[spec])
            if rewrites is not None:
                rewrites.append(f"Keras model exported with a static batch of {static_batch} (input {shape}): "
                                "batch-dependent shape computations fold to constants")
            return
        except Exception:  # noqa: BLE001 - fall back to the model's own signature
            import shutil

            shutil.rmtree(str(path), ignore_errors=True)
    model.export(str(path), format="tf_saved_model", verbose=False)


def phase_prepare(job: Job, d: Path) -> dict:
    tf = _tf()
    kind = job.source_kind
    src = job.source
    sm_dir = d / "saved_model"
    rewrites: list[str] = []
    extra: dict = {}
    if kind == "keras":
        import keras
        model = keras.models.load_model(src, compile=False)
        if job.prelu_rewrite:
            model = _keras_prelu_rewrite(model, rewrites)
        # Keras 3: TFLiteConverter.from_keras_model is broken since TF 2.16; go through SavedModel.
        export_keras(model, sm_dir, 1 if job.static_batch else None, rewrites)
    elif kind == "saved_model":
        sm_dir = Path(src)
    elif kind == "onnx":
        from edgelite_convert.onnx_import import import_onnx
        shapes = job.input_shapes or None
        imp = import_onnx(src, input_shapes=shapes, prelu_rewrite=job.prelu_rewrite)
        imp.save(str(sm_dir))
        rewrites.extend(imp.rewrites)
        extra["onnx_input_layouts"] = dict(imp.input_layouts)
        extra["onnx_input_names"] = list(imp.input_names)
        extra["onnx_output_names"] = list(imp.output_names)
    else:
        raise ValueError(f"unknown source kind {kind}")
    loaded = tf.saved_model.load(str(sm_dir))
    sigs = list(loaded.signatures.keys())
    if not sigs:
        raise ValueError("the SavedModel has no signatures; save it with a serving_default signature")
    key = "serving_default" if "serving_default" in sigs else sigs[0]
    fn = loaded.signatures[key]
    _, kw = fn.structured_input_signature
    inputs = [{"name": n, "shape": [(-1 if s is None else int(s)) for s in spec.shape.as_list()],
               "dtype": spec.dtype.name} for n, spec in sorted(kw.items())]
    outs = fn.structured_outputs
    outputs = [{"name": n, "shape": [(-1 if s is None else int(s)) for s in t.shape.as_list()],
                "dtype": t.dtype.name} for n, t in sorted(outs.items())]
    return {"saved_model": str(sm_dir), "signature": key, "inputs": inputs, "outputs": outputs,
            "rewrites": rewrites, **extra}


# ---------------------------------------------------------------- convert ----
def _make_converter(tf, prep: dict, job: Job, calib):
    sm = prep["saved_model"]
    conv = tf.lite.TFLiteConverter.from_saved_model(sm, signature_keys=[prep["signature"]])
    mode = job.mode
    names = [i["name"] for i in prep["inputs"]]

    def rep():
        n = len(calib[names[0]])
        for i in range(n):
            yield {k: calib[k][i:i + 1] for k in names}

    if mode in ("int8", "int16x8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        if mode == "int8":
            conv.target_spec.supported_ops = ([tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
                                              if job.allow_float_fallback else
                                              [tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
        else:
            ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            if job.allow_float_fallback:
                ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
            conv.target_spec.supported_ops = ops
        io = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32, "int16": tf.int16}
        conv.inference_input_type = io[job.input_type]
        conv.inference_output_type = io[job.output_type]
        # per-channel weights are the default; disabling is only for comparison
        conv._experimental_disable_per_channel = not job.per_channel
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "float32":
        pass
    else:
        raise ValueError(f"unknown mode {mode}")
    return conv


def phase_convert(job: Job, d: Path) -> dict:
    import numpy as np

    tf = _tf()
    prep = json.loads((d / "prepare.json").read_text())
    calib = None
    if (d / "calib.npz").exists():
        z = np.load(d / "calib.npz")
        calib = {k: z[k] for k in z.files}
    out: dict = {"tensorflow": tf.__version__}
    t0 = time.perf_counter()
    float_conv = tf.lite.TFLiteConverter.from_saved_model(prep["saved_model"], signature_keys=[prep["signature"]])
    (d / "float.tflite").write_bytes(float_conv.convert())
    out["float_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    conv = _make_converter(tf, prep, job, calib)
    keep = list(job.keep_float)
    explicit = job.mode == "int8" and (job.calibration_ranges != "minmax" or job.suggest_precision != "never")
    if explicit:
        # calibrate, then other activation ranges / a precision suggestion (edgelite_convert.precision)
        from edgelite_convert.precision import convert_int8

        out.update(convert_int8(job, d, lambda: _make_converter(tf, prep, job, calib), calib,
                                (d / "float.tflite").read_bytes()))
        keep = []  # model.tflite already keeps job.keep_float in float
    if (job.debug_layers or keep) and job.mode == "int8":
        names = [i["name"] for i in prep["inputs"]]
        n = min(len(calib[names[0]]), job.debug_samples)

        def dbg_data():
            # the debugger iterates samples positionally (a dict would yield its keys)
            for i in range(n):
                yield [calib[k][i:i + 1] for k in names]
        opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep) if keep else None
        # The debugger needs float I/O on its internal model; it builds its own.
        dconv = _make_converter(tf, prep, job.replace(input_type="float32", output_type="float32",
                                                       allow_float_fallback=True), calib)
        dbg = tf.lite.experimental.QuantizationDebugger(converter=dconv, debug_dataset=dbg_data,
                                                         debug_options=opts)
        if job.debug_layers:
            dbg.run()
            from edgelite_convert.precision import debugger_rows

            stats = [{k: v for k, v in r.items() if k != "raw"} for r in debugger_rows(dbg)]
            stats.sort(key=lambda s: -(s["rmse_over_scale"] or 0))
            out["layer_stats"] = stats[:50]
        if keep:
            conv = _make_converter(tf, prep, job.replace(allow_float_fallback=True), calib)
            # selective quantization: denylisted nodes stay float
            dconv2 = _make_converter(tf, prep, job.replace(allow_float_fallback=True), calib)
            dbg2 = tf.lite.experimental.QuantizationDebugger(converter=dconv2, debug_dataset=dbg_data,
                                                              debug_options=opts)
            (d / "model.tflite").write_bytes(dbg2.get_nondebug_quantized_model())
            # the fully quantized model too, so the report can say what keeping float costs
            (d / "full_int8.tflite").write_bytes(_make_converter(tf, prep, job, calib).convert())
            out["keep_float"] = keep
    if not (d / "model.tflite").exists():
        (d / "model.tflite").write_bytes(conv.convert())
    out["quant_seconds"] = time.perf_counter() - t0
    return out


def serve() -> int:
    """Run phases as the parent asks, one ``phase<TAB>folder`` line each, answering
    ``done`` when its files are written; exit at the end of input."""
    # The answers get their own descriptor; anything else written to stdout (by Python
    # or by native code) goes to stderr and cannot be mistaken for one.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        phase, _, folder = line.rstrip("\n").partition("\t")
        rc = run_phase(phase, Path(folder))
        answers.write(f"done {rc}\n")
    return 0


def main(argv=None) -> int:
    argv = argv or sys.argv[1:]
    if argv[0] == "serve":
        return serve()
    return run_phase(argv[0], Path(argv[1]))


def run_phase(phase: str, d: Path) -> int:
    """One phase in folder ``d``: ``<phase>.json`` on success, ``<phase>.error.json`` on failure."""
    try:
        job = Job.read(d)
        res = {"prepare": phase_prepare, "convert": phase_convert}[phase](job, d)
        (d / f"{phase}.json").write_text(json.dumps(res))
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the parent as a ConversionError
        etype, msg = type(e).__name__, str(e)
        if isinstance(e, RecurrentLayerError):
            etype = "ConversionError"
        elif "TensorList" in msg or "tf.While" in msg or "SELECT_TF_OPS" in msg:
            # the raw MLIR error of a recurrent loop: say what it means and what edgelite does about it
            etype, msg = "ConversionError", ("the model contains a loop (a recurrent layer or tf.while_loop) "
                                             "that the TFLite converter cannot lower to builtin ops: " + _RNN_HINT
                                             + ". Converter said: " + msg.splitlines()[0][:300])
        (d / f"{phase}.error.json").write_text(json.dumps(
            {"type": etype, "message": msg, "traceback": traceback.format_exc()[-4000:]}))
        return 3


if __name__ == "__main__":
    sys.exit(main())
