"""Layer 1: :class:`Model`, a thin, checked wrapper over a TFLite interpreter.

What it adds over the bare interpreter:

* the flatbuffer is verified in pure Python before the interpreter sees it, so a
  corrupt or truncated file is a typed :class:`~edgelite.errors.InvalidModelError`
  and never a segfault of the host process;
* typed input/output specs, with quantization parameters;
* automatic quantization of float inputs and dequantization of outputs, using the
  model's own parameters (opt out with ``quantize=False`` / ``dequantize=False``);
* input checking (count, names, rank, shape, dtype) with messages that say the fix;
* batching: resizes the batch dimension when the model allows it, else loops;
* delegates by name (XNNPACK default, Coral Edge TPU, any external delegate .so);
* the edgelite metadata block (preprocessing, labels...) when present.

Threading: a TFLite interpreter holds its tensors in place and is **not**
re-entrant; two threads calling ``invoke`` on one interpreter corrupt each other's
inputs. :meth:`Model.run` therefore takes a lock (safe, but serialised). For real
parallelism create one ``Model`` per thread, or use :class:`ModelPool`. With
XNNPACK, ``num_threads`` already parallelises *inside* one inference: on a 4-core
Pi, prefer one model with 4 threads for latency, or 4 single-threaded models in a
pool for throughput.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import platform
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from . import quant
from .backends import select_backend
from .errors import (DelegateError, InputError, InvalidModelError, ModelNotFoundError,
                     UnsupportedModelError)

_EDGETPU_LIB = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """An input or output of a model.

    ``scale``/``zero_point`` are the per-tensor quantization parameters
    (``scale == 0`` means not quantized). ``shape_signature`` has ``-1`` where a
    dimension is dynamic.
    """

    name: str
    index: int
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @functools.cached_property  # read on every output of every run
    def quantized(self) -> bool:
        return self.scale > 0 and np.dtype(self.dtype).kind in "iu"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "shape_signature": list(self.shape_signature),
                "dtype": np.dtype(self.dtype).name, "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def _from_details(cls, d: dict) -> "TensorSpec":
        scale, zp = d.get("quantization", (0.0, 0))
        sig = d.get("shape_signature")
        return cls(d["name"], int(d["index"]), tuple(int(x) for x in d["shape"]),
                   tuple(int(x) for x in (sig if sig is not None and len(sig) else d["shape"])),
                   np.dtype(d["dtype"]), float(scale), int(zp))


def _read_source(model) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<bytes>"
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if not p.exists():
            raise ModelNotFoundError(f"model file {str(p)!r} does not exist; check the path "
                                     "(zoo models: `edgelite models list`)")
        if not p.is_file():
            raise ModelNotFoundError(f"{str(p)!r} is not a file (a SavedModel directory? convert it first "
                                     "with `edgelite convert`)")
        return p.read_bytes(), str(p)
    raise InputError(f"model must be a path or bytes, got {type(model).__name__}")


#: Custom ops registered only by the MediaPipe framework (its TFLite calculators), which no
#: ai-edge-litert / tflite-runtime version can run.
MEDIAPIPE_CUSTOM_OPS = frozenset({
    "Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "TransformLandmarks",
    "TransformTensorBilinear", "Landmarks2TransformMatrix", "Resampler", "KerasLayerNormalization",
})


def _unsupported_fix(msg: str) -> str:
    """The fix for an op the interpreter does not have, by kind of op."""
    import re

    m = re.search(r"unresolved custom op: ([A-Za-z0-9_.:]+)", msg) or re.search(r"\((Flex[A-Za-z0-9_]+)\)", msg)
    name = m.group(1).rstrip(".") if m else ("Flex" if "Select TensorFlow op" in msg else None)
    if name in MEDIAPIPE_CUSTOM_OPS:
        return (f"'{name}' is a MediaPipe custom op: only the MediaPipe framework registers it, so no "
                "ai-edge-litert version can run it (upgrading does not help). Fix: run this model with MediaPipe, "
                "or use/convert a model without MediaPipe ops (a float source model converted with edgelite "
                "uses builtin ops only)")
    if name and name.startswith("Flex"):
        return (f"'{name}' is a TensorFlow (Select TF ops) op, which needs the Flex delegate of full "
                "TensorFlow. Fix: re-convert with builtin ops only (edgelite's converter never emits them)")
    if name:
        return (f"'{name}' is a custom op this runtime does not register. Fix: re-convert with builtin ops only, "
                "or load the custom op's delegate library (Model(..., delegates=[path]))")
    return "Fix: upgrade ai-edge-litert (the op or op version is newer than this runtime), or re-convert with " \
           "builtin ops only"


def _map_interpreter_error(e: Exception, where: str) -> Exception:
    msg = str(e)
    if "Didn't find op" in msg or "Encountered unresolved custom op" in msg or "not supported" in msg.lower():
        return UnsupportedModelError(f"{where}: this runtime cannot run the model: {msg.strip()[:500]}. "
                                     f"{_unsupported_fix(msg)}.")
    return InvalidModelError(f"{where}: the interpreter rejected the model: {msg.strip()[:500]}. "
                             "The file may be corrupt; re-convert it.")


class Model:
    """A TFLite model ready to run.

    Args:
        model: path to a ``.tflite`` file, or its bytes.
        num_threads: CPU threads for the interpreter / XNNPACK (default: all cores,
            capped at 4 — beyond that, small models get slower from synchronisation).
        delegates: sequence of delegate names or library paths: ``"xnnpack"``
            (default, the CPU delegate), ``"edgetpu"`` (Coral, ``libedgetpu.so.1``),
            a path to any external delegate ``.so``, or ``()`` / ``"none"`` for the
            plain builtin kernels (useful to compare against XNNPACK).
        backend: force ``"ai_edge_litert"``, ``"tflite_runtime"`` or ``"tensorflow"``
            (default: first that works; also ``EDGELITE_BACKEND``).
        delegate_options: options dict per external delegate (by position).

    Raises:
        ModelNotFoundError, InvalidModelError, UnsupportedModelError, DelegateError, BackendError.
    """

    def __init__(self, model: str | os.PathLike | bytes, *, num_threads: int | None = None,
                 delegates: Sequence[str] | str | None = ("xnnpack",), backend: str | None = None,
                 delegate_options: Sequence[Mapping[str, Any]] | None = None):
        from ._tflite import parse_model
        from .metadata import metadata_from_info

        data, self.source = _read_source(model)
        self.info = parse_model(data)  # raises InvalidModelError before any C++ code sees the bytes
        self._data = data
        try:
            self.metadata = metadata_from_info(self.info)
        except Exception as e:  # noqa: BLE001 - malformed metadata must not stop the model from running
            self.metadata = None
            self.metadata_error = str(e)
        else:
            self.metadata_error = None
        if num_threads is None:
            num_threads = min(os.cpu_count() or 1, 4)
        if not isinstance(num_threads, int) or num_threads < 1:
            raise InputError(f"num_threads must be a positive int, got {num_threads!r}")
        self.num_threads = num_threads
        if delegates is None or delegates == "none":
            delegates = ()
        elif isinstance(delegates, str):
            delegates = (delegates,)
        self._mod, self.backend_status = select_backend(backend)
        self.backend = self.backend_status.name
        self.delegates = tuple(self._resolve_delegates(delegates, delegate_options))
        self._build()
        self._lock = threading.RLock()

    # -- construction ------------------------------------------------------------
    def _resolve_delegates(self, names, options):
        self._use_xnnpack = False
        self._external = []
        out = []
        for i, d in enumerate(names):
            if not isinstance(d, str):
                self._external.append(d)  # a ready Delegate object
                out.append(type(d).__name__)
                continue
            key = d.lower()
            if key == "xnnpack":
                self._use_xnnpack = True
                out.append("xnnpack")
                continue
            lib = _EDGETPU_LIB.get(platform.system(), "libedgetpu.so.1") if key in ("edgetpu", "coral") else d
            opts = dict(options[i]) if options and i < len(options) and options[i] else None
            try:
                # Probe with ctypes first: when the library is missing, ai_edge_litert's
                # Delegate.__init__ fails before setting ``_library`` and its ``__del__`` then
                # raises AttributeError ("Exception ignored in Delegate.__del__", ai-edge-litert 2.3).
                import ctypes
                ctypes.CDLL(lib)
                self._external.append(self._mod.load_delegate(lib, opts) if opts else self._mod.load_delegate(lib))
            except (ValueError, OSError, RuntimeError) as e:
                hint = ("install the Edge TPU runtime (libedgetpu1-std from Coral's apt repository) and plug in "
                        "the accelerator" if key in ("edgetpu", "coral") else "check the path and that the library "
                        "matches this platform")
                raise DelegateError(f"could not load delegate {d!r} (library {lib!r}): {e}. Fix: {hint}.") from e
            out.append(key if key in ("edgetpu", "coral") else os.path.basename(lib))
        return out

    def _build(self):
        kwargs: dict[str, Any] = {"model_content": self._data, "num_threads": self.num_threads}
        if self._external:
            kwargs["experimental_delegates"] = self._external
        ort = getattr(self._mod, "OpResolverType", None)
        if not self._use_xnnpack and ort is not None:
            # AUTO applies XNNPACK by default; this opts out for a builtin-kernels baseline.
            kwargs["experimental_op_resolver_type"] = ort.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self._itp = self._mod.Interpreter(**kwargs)
            self._itp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            if self._external:
                raise DelegateError(f"{self.source}: delegate(s) {self.delegates} could not be applied: {e}") from e
            raise _map_interpreter_error(e, self.source) from e
        in_names, out_names = self._signature_names()
        self.inputs = tuple(TensorSpec._from_details({**d, "name": in_names.get(d["index"], d["name"])})
                            for d in self._itp.get_input_details())
        self.outputs = tuple(TensorSpec._from_details({**d, "name": out_names.get(d["index"], d["name"])})
                             for d in self._itp.get_output_details())
        self._cur_shapes = {s.index: s.shape for s in self.inputs}

    def _signature_names(self) -> tuple[dict[int, str], dict[int, str]]:
        """Tensor index -> signature name, when the model has exactly one signature.

        Converters name graph outputs after internal ops (``PartitionedCall:3``); the
        signature keeps the names the model was exported with (``cls_8``), which is
        what users (and ONNX-converted models) expect.
        """
        try:
            sigs = self._itp.get_signature_list()
            if len(sigs) != 1:
                return {}, {}
            runner = self._itp.get_signature_runner(next(iter(sigs)))
            ins = {int(d["index"]): n for n, d in runner.get_input_details().items()}
            outs = {int(d["index"]): n for n, d in runner.get_output_details().items()}
        except Exception:  # noqa: BLE001 - names are cosmetic; fall back to tensor names
            return {}, {}
        if len(set(ins.values())) != len(ins) or len(set(outs.values())) != len(outs):
            return {}, {}
        return ins, outs

    # -- introspection -----------------------------------------------------------
    @property
    def interpreter(self):
        """The underlying interpreter (visible on purpose: layer 1 hides nothing)."""
        return self._itp

    @property
    def signatures(self) -> tuple[str, ...]:
        try:
            return tuple(self._itp.get_signature_list().keys())
        except Exception:  # noqa: BLE001 - old backends without signatures
            return ()

    @property
    def preprocessing(self):
        return self.metadata.preprocessing if self.metadata else None

    def prepare(self, image: np.ndarray):
        """An image → this model's input tensor, by the preprocessing embedded in it.

        The converter calibrated the model through the same
        :meth:`~edgelite.preprocess.PreprocessSpec.prepare`, so the device sees
        exactly the tensors calibration saw. For a quantized input the integer tensor
        is produced directly (one lookup table per channel).

        Returns:
            ``(tensor, plan)``: the batch-of-one input and the
            :class:`~edgelite.preprocess.ResizePlan` that maps output coordinates
            back to the image.

        Raises:
            InputError: the model has no embedded preprocessing, or several inputs.
        """
        spec = self.preprocessing
        if spec is None:
            raise InputError(f"{self.source}: the model embeds no preprocessing; convert it with "
                             "`edgelite convert --input-size H W ...` (or build the tensor yourself)")
        if len(self.inputs) != 1:
            raise InputError(f"{self.source}: prepare() is for single-input models; this one has "
                             f"{len(self.inputs)} inputs")
        return spec.prepare(image, self.inputs[0])

    def run_image(self, image: np.ndarray, plan: Any, spec: Any = None, *, dequantize: bool = True,
                  timings: dict | None = None) -> dict[str, np.ndarray]:
        """:meth:`prepare` and :meth:`run` in one step, for a per-frame loop: the
        image goes through ``spec`` (default: the embedded preprocessing) with
        ``plan`` straight into the interpreter's own input buffer — no intermediate
        tensor, no copy into the interpreter.

        Args:
            image: HWC ``uint8`` RGB, already validated (:func:`edgelite.image.as_rgb`).
            plan: ``spec.plan(image.shape[:2])``, the plan that maps results back.
            spec: a :class:`~edgelite.preprocess.PreprocessSpec` (e.g. the embedded
                one with another resize mode).
            timings: a dict to receive ``preprocess`` and ``inference`` milliseconds.
        """
        spec = spec or self.preprocessing
        if spec is None or len(self.inputs) != 1:
            return self.run(self.prepare(image)[0], quantize=False, dequantize=dequantize)  # says what is wrong
        s = self.inputs[0]
        t0 = time.perf_counter()
        with self._lock:
            itp = self._itp
            direct = itp is not None and self._cur_shapes[s.index] == s.shape  # not closed, not resized
            if direct:
                buf = itp.tensor(s.index)()  # a view of the input tensor: no view may outlive invoke()
                try:
                    spec.tensor_of(image, plan, s, out=buf)
                finally:
                    del buf
                t1 = time.perf_counter()
                raw = self._invoke(())
        if not direct:
            x = spec.tensor_of(image, plan, s)
            t1 = time.perf_counter()
            raw = self.run(x, quantize=False, dequantize=False)
        if timings is not None:
            timings["preprocess"] = (t1 - t0) * 1e3
            timings["inference"] = (time.perf_counter() - t1) * 1e3
        return self._dequantize(raw) if dequantize else raw

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}:{np.dtype(s.dtype).name}{list(s.shape)}" for s in self.inputs)
        outs = ", ".join(f"{s.name}:{np.dtype(s.dtype).name}{list(s.shape)}" for s in self.outputs)
        return f"Model({self.source!r}, backend={self.backend}, delegates={self.delegates}, in=[{ins}], out=[{outs}])"

    # -- running -----------------------------------------------------------------
    def __call__(self, inputs, **kw):
        """Like :meth:`run`, but returns the array itself when the model has one output."""
        out = self.run(inputs, **kw)
        return next(iter(out.values())) if len(out) == 1 else out

    def run(self, inputs, *, quantize: bool = True, dequantize: bool = True) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            inputs: one array (single-input models), a list in input order, or a dict
                by input name. Arrays include the batch dimension.
            quantize: float (or other non-matching dtype) inputs to a quantized input
                are quantized with the input's scale/zero-point. Integer arrays of the
                model's own dtype always pass through untouched (raw int8 / uint8 images).
            dequantize: quantized outputs are returned as float32 reals.

        Returns:
            dict output name -> array, in output order.
        """
        specs = self.inputs
        if (len(specs) == 1 and type(inputs) is np.ndarray and inputs.dtype == specs[0].dtype
                and inputs.flags.c_contiguous):
            # The per-frame case (one array of the model's dtype and current shape):
            # every check of _prepare holds by construction.
            with self._lock:
                raw = self._invoke([inputs]) if inputs.shape == self._cur_shapes[specs[0].index] else None
            if raw is not None:
                return self._dequantize(raw) if dequantize else raw
        arrays = self._match_inputs(inputs)
        prepared = [self._prepare(spec, a, quantize) for spec, a in zip(specs, arrays)]
        n = self._batch_of(prepared)
        with self._lock:
            if self._needs_loop(prepared, n):
                parts = [self._invoke([p[i:i + 1] for p in prepared]) for i in range(n)]
                raw = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
            else:
                raw = self._invoke(prepared)
        return self._dequantize(raw) if dequantize else raw

    def _dequantize(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for spec in self.outputs:
            if spec.quantized:
                raw[spec.name] = quant.dequantize(raw[spec.name], spec.scale, spec.zero_point)
        return raw

    def warmup(self, runs: int = 1) -> None:
        """Run on zeros ``runs`` times so first-call costs (XNNPACK weight packing,
        page faults) are paid before the first real frame."""
        zeros = [np.zeros(s.shape, s.dtype) for s in self.inputs]
        for _ in range(max(0, runs)):
            self.run(zeros)

    def _match_inputs(self, inputs) -> list[np.ndarray]:
        specs = self.inputs
        if isinstance(inputs, Mapping):
            names = [s.name for s in specs]
            unknown = [k for k in inputs if k not in names]
            missing = [n for n in names if n not in inputs]
            if unknown or missing:
                raise InputError(f"input names do not match the model: unknown {unknown}, missing {missing}; "
                                 f"the model's inputs are {names}")
            return [inputs[n] for n in names]
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != len(specs):
                raise InputError(f"the model has {len(specs)} input(s) "
                                 f"({', '.join(s.name for s in specs)}) but {len(inputs)} were given")
            return list(inputs)
        if len(specs) != 1:
            raise InputError(f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                             "pass a list in that order or a dict by name")
        return [inputs]

    def _prepare(self, spec: TensorSpec, a, quantize: bool) -> np.ndarray:
        if not isinstance(a, np.ndarray):
            try:
                a = np.asarray(a)
            except Exception as e:  # noqa: BLE001
                raise InputError(f"input {spec.name!r}: cannot convert {type(a).__name__} to an array") from e
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise InputError(f"input {spec.name!r}: dtype {a.dtype} is not numeric")
        want = np.dtype(spec.dtype)
        if a.ndim != len(spec.shape):
            hint = " (add the batch dimension: x[None])" if a.ndim == len(spec.shape) - 1 else ""
            raise InputError(f"input {spec.name!r}: rank {a.ndim} (shape {a.shape}) but the model expects rank "
                             f"{len(spec.shape)} {list(spec.shape_signature)}{hint}")
        for i, (got, sig, cur) in enumerate(zip(a.shape[1:], spec.shape_signature[1:], spec.shape[1:]), 1):
            if sig != -1 and got != cur:
                raise InputError(f"input {spec.name!r}: shape {a.shape} does not match the model's "
                                 f"{list(spec.shape_signature)} at dimension {i} ({got} != {cur})")
        if a.dtype == want:
            return np.ascontiguousarray(a)
        if spec.quantized:
            if not quantize:
                raise InputError(f"input {spec.name!r}: dtype {a.dtype} given but the model takes {want.name} and "
                                 "quantize=False; pass quantize=True to quantize real values with the model's "
                                 f"scale {spec.scale:g} / zero-point {spec.zero_point}")
            if not np.all(np.isfinite(a)):
                raise InputError(f"input {spec.name!r}: contains NaN or inf")
            return quant.quantize(a, spec.scale, spec.zero_point, want)
        if want.kind == "f":
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise InputError(f"input {spec.name!r}: contains NaN or inf")
            return a.astype(want)
        if want.kind in "iub" and a.dtype.kind in "iub":
            info = np.iinfo(want) if want.kind in "iu" else None
            if info is not None and a.size and (a.min() < info.min or a.max() > info.max):
                raise InputError(f"input {spec.name!r}: values out of range for {want.name}")
            return a.astype(want)
        raise InputError(f"input {spec.name!r}: dtype {a.dtype} cannot be fed to a {want.name} input "
                         "that has no quantization parameters; convert the data yourself")

    def _batch_of(self, arrays: list[np.ndarray]) -> int:
        if not arrays:
            return 1
        batches = {a.shape[0] if a.ndim else 1 for a in arrays}
        if len(batches) > 1:
            raise InputError(f"inputs have different batch sizes {sorted(batches)}")
        return batches.pop()

    def _needs_loop(self, arrays, n) -> bool:
        specs = self.inputs
        if all(a.shape == self._cur_shapes[s.index] for s, a in zip(specs, arrays)):
            return False
        # Resize when the model declares the dims dynamic (-1); else loop over a batch-1 model.
        resizable = all(all(sig == -1 or got == shp for got, sig, shp in
                            zip(a.shape, s.shape_signature, s.shape)) for s, a in zip(specs, arrays))
        if resizable:
            try:
                for s, a in zip(specs, arrays):
                    self._itp.resize_tensor_input(s.index, list(a.shape), strict=True)
                self._itp.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise InputError(f"the model could not be resized to input shapes "
                                 f"{[a.shape for a in arrays]}: {e}") from e
            self._cur_shapes = {s.index: tuple(a.shape) for s, a in zip(specs, arrays)}
            return False
        if all(s.shape[0] == 1 for s in specs) and n > 1:
            return True
        raise InputError(f"input shapes {[a.shape for a in arrays]} do not fit the model "
                         f"{[list(s.shape_signature) for s in specs]}")

    def _invoke(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        itp = self._itp
        if itp is None:
            raise InputError(f"{self.source}: the model was closed; create a new Model")
        try:
            for s, a in zip(self.inputs, arrays):
                itp.set_tensor(s.index, a)
            itp.invoke()
            return {s.name: itp.get_tensor(s.index) for s in self.outputs}  # get_tensor copies
        except ValueError as e:  # set_tensor: dtype/shape refused by the interpreter
            raise InputError(f"{self.source}: the interpreter refused the input: {e}") from e
        except RuntimeError as e:  # a kernel failed at run time (e.g. an index out of bounds in GATHER)
            raise InvalidModelError(f"{self.source}: inference failed inside the interpreter: {e}. "
                                    "The model or its inputs are inconsistent.") from e

    def run_signature(self, key: str, *, quantize: bool = True, dequantize: bool = True,
                      **inputs) -> dict[str, np.ndarray]:
        """Run a named signature of a multi-signature model (inputs by name)."""
        if key not in self.signatures:
            raise InputError(f"signature {key!r} not in the model; available: {list(self.signatures)}")
        with self._lock:
            runner = self._itp.get_signature_runner(key)
            in_det = runner.get_input_details()
            out_det = runner.get_output_details()
            missing = [k for k in in_det if k not in inputs]
            unknown = [k for k in inputs if k not in in_det]
            if missing or unknown:
                raise InputError(f"signature {key!r}: unknown inputs {unknown}, missing {missing}; "
                                 f"expects {list(in_det)}")
            feed = {}
            for name, d in in_det.items():
                spec = TensorSpec._from_details({**d, "name": name})
                feed[name] = self._prepare(spec, inputs[name], quantize)
            try:
                out = runner(**feed)
            except (ValueError, RuntimeError) as e:
                raise InputError(f"signature {key!r}: {e}") from e
        if dequantize:
            for name, d in out_det.items():
                spec = TensorSpec._from_details({**d, "name": name})
                if spec.quantized:
                    out[name] = quant.dequantize(out[name], spec.scale, spec.zero_point)
        return dict(out)

    # -- context manager -----------------------------------------------------------
    def close(self) -> None:
        self._itp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ModelPool:
    """A fixed set of :class:`Model` instances for multi-threaded serving.

    Each worker thread borrows an instance (``with pool.acquire() as m``) so no
    interpreter is ever used by two threads at once. Use ``num_threads=1`` per
    instance and ``size`` = cores for throughput.
    """

    def __init__(self, model, size: int = 2, **model_kwargs):
        if not isinstance(size, int) or size < 1:
            raise InputError(f"pool size must be a positive int, got {size!r}")
        data, _ = _read_source(model) if not isinstance(model, (bytes, bytearray)) else (bytes(model), None)
        self._q: queue.Queue[Model] = queue.Queue()
        self.models = [Model(data, **model_kwargs) for _ in range(size)]
        for m in self.models:
            self._q.put(m)

    @contextlib.contextmanager
    def acquire(self, timeout: float | None = None) -> Iterator[Model]:
        try:
            m = self._q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no free model in the pool within {timeout}s") from None
        try:
            yield m
        finally:
            self._q.put(m)

    def run(self, inputs, **kw):
        with self.acquire() as m:
            return m.run(inputs, **kw)
