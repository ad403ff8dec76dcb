"""Interpreter backends: which TFLite interpreter runs the model.

Chain, first that imports *and works* wins:

1. ``ai_edge_litert`` (LiteRT, the successor of tflite-runtime; wheels for
   Linux x86_64/aarch64 and macOS, Python 3.10-3.13),
2. ``tflite_runtime`` (legacy; 2.14 is the last release and is built against
   numpy 1: under numpy 2 its import fails with "numpy.core.multiarray failed to
   import" / "_ARRAY_API not found" -- we detect that, record the reason and move on),
3. ``tensorflow.lite`` (only if installed; the last resort because importing
   TensorFlow costs seconds and hundreds of MB on a Pi).

"Works" means: the module imports, and a tiny built-in model (x + 1) loads,
allocates and gives the right answer. A backend can be forced with the
``backend=`` argument of :class:`edgelite.Model` or the ``EDGELITE_BACKEND``
environment variable.
"""
from __future__ import annotations

import base64
import dataclasses
import importlib
import os
import threading

import numpy as np

from .errors import BackendError

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
ENV_BACKEND = "EDGELITE_BACKEND"

# A 728-byte TFLite model computing y = x + 1 for x: float32[1, 4], made with
# TensorFlow; used to check that a backend does not just import but runs.
_PROBE_MODEL = base64.b64decode(
    "HAAAAFRGTDMUACAAHAAYABQAEAAMAAAACAAEABQAAAAcAAAAHAAAAHQAAAA8AQAATAEAAJQCAAADAAAAAAAAAAIAAAA0AAAABAAAANz///8FAAAABAAAABMAAABDT05WRVJTSU9OX01FVEFEQVRBAAgADAAIAAQACAAAAAQAAAAEAAAAEwAAAG1pbl9ydW50aW1lX3ZlcnNpb24ABgAAAMQAAAC8AAAAqAAAAJgAAAB0AAAABAAAAG7///8EAAAAYAAAABAAAAAAAAAACAAOAAgABAAIAAAAEAAAACQAAAAAAAYACAAEAAYAAAAEAAAAAAAAAAwAGAAUABAADAAEAAwAAAA6VMixfLduQgMAAAACAAAABAAAAAYAAAAyLjIxLjAAANr///8EAAAAEAAAADEuNS4wAAAAAAAAAAAAAAAEAAYABAAAAAAABgAIAAQABgAAAAQAAAAEAAAAAACAP5D+//+U/v//DwAAAE1MSVIgQ29udmVydGVkLgABAAAAFAAAAAAADgAYABQAEAAMAAgABAAOAAAAFAAAABwAAABcAAAAYAAAAGQAAAAEAAAAbWFpbgAAAAABAAAAFAAAAAAADgAUAAAAEAAMAAsABAAOAAAAEAAAAAAAAAsMAAAAEAAAABT///8BAAAAAgAAAAIAAAAAAAAAAQAAAAEAAAACAAAAAQAAAAAAAAADAAAAiAAAAEAAAAAEAAAAmv///wAAAAEQAAAAEAAAAAMAAAAYAAAAZP///wgAAABJZGVudGl0eQAAAAACAAAAAQAAAAQAAADS////AAAAARAAAAAQAAAAAgAAABQAAACc////BQAAAGFkZC95AAAAAAAAAAAAFgAYABQAAAAQAAwACAAAAAAAAAAHABYAAAAAAAABEAAAABAAAAABAAAAEAAAAOD///8BAAAAeAAAAAIAAAABAAAABAAAAAEAAAAIAAAABAAEAAQAAAA="
)

_lock = threading.Lock()
_status_cache: dict[str, "BackendStatus"] = {}


@dataclasses.dataclass(frozen=True)
class BackendStatus:
    """Whether a backend is usable here, and why not."""

    name: str
    ok: bool
    version: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _import_interpreter_module(name: str):
    if name == "ai_edge_litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        ver = getattr(importlib.import_module("ai_edge_litert"), "__version__", None)
    elif name == "tflite_runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        ver = getattr(importlib.import_module("tflite_runtime"), "__version__", None)
    elif name == "tensorflow":
        tf = importlib.import_module("tensorflow")
        mod = tf.lite
        ver = getattr(tf, "__version__", None)
    else:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if ver is None:
        try:
            from importlib.metadata import version
            ver = version(name.replace("_", "-"))
        except Exception:  # noqa: BLE001 - version is informational only
            ver = None
    return mod, ver


def _probe(name: str) -> BackendStatus:
    # tflite-runtime 2.14 under numpy 2 prints numpy's "compiled using NumPy 1.x"
    # traceback to stderr while importing; keep it out of the user's console and use
    # it to explain the failure.
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        st = _probe_quiet(name)
    if not st.ok and name == "tflite_runtime" and (
            "NumPy 1.x" in buf.getvalue() or "_ARRAY_API" in buf.getvalue() or "numpy" in (st.reason or "").lower()):
        st = BackendStatus(name, False, st.version,
                           f"{st.reason}; tflite-runtime {st.version or ''} is built against numpy 1 and cannot run "
                           f"under numpy {np.__version__} (use ai-edge-litert, or numpy<2)")
    return st


def _probe_quiet(name: str) -> BackendStatus:
    try:
        mod, ver = _import_interpreter_module(name)
    except BackendError:
        raise
    except BaseException as e:  # noqa: BLE001 - any import failure means "not usable", incl. numpy ABI errors
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        msg = f"{type(e).__name__}: {e}".strip()
        if "numpy" in msg.lower() and name == "tflite_runtime":
            msg += " (tflite-runtime 2.14 is built against numpy 1 and does not import under numpy 2)"
        return BackendStatus(name, False, None, msg.splitlines()[0][:300] if msg else "import failed")
    try:
        itp = mod.Interpreter(model_content=_PROBE_MODEL)
        itp.allocate_tensors()
        inp = itp.get_input_details()[0]["index"]
        out = itp.get_output_details()[0]["index"]
        itp.set_tensor(inp, np.arange(4, dtype=np.float32)[None])
        itp.invoke()
        y = itp.get_tensor(out)
        if not np.allclose(y, np.arange(1, 5, dtype=np.float32)[None]):
            return BackendStatus(name, False, ver, f"probe model gave wrong result {y!r}")
    except Exception as e:  # noqa: BLE001
        return BackendStatus(name, False, ver, f"imports but cannot run a model: {type(e).__name__}: {e}"[:300])
    return BackendStatus(name, True, ver, None)


def backend_status(name: str, *, refresh: bool = False) -> BackendStatus:
    """Probe one backend (cached per process)."""
    with _lock:
        if refresh or name not in _status_cache:
            _status_cache[name] = _probe(name)
        return _status_cache[name]


def available_backends(*, include_tensorflow: bool | None = None) -> list[BackendStatus]:
    """Status of the backends in chain order.

    Probing ``tensorflow`` imports it (seconds, and hundreds of MB), so it is
    probed only when asked for (``include_tensorflow=True``) or, by default, when
    no lighter backend works (then it is the only candidate and worth the cost).
    ``False`` never probes it.
    """
    out = [backend_status(n) for n in BACKENDS[:-1]]
    if include_tensorflow or (include_tensorflow is None and not any(s.ok for s in out)):
        out.append(backend_status("tensorflow"))
    return out


def select_backend(name: str | None = None):
    """Return ``(module, BackendStatus)`` for the forced or first working backend.

    Raises:
        BackendError: the forced backend is unusable (with the reason), or none is.
    """
    forced = name or os.environ.get(ENV_BACKEND) or None
    if forced:
        if forced not in BACKENDS:
            raise BackendError(f"unknown backend {forced!r}; choose one of {', '.join(BACKENDS)}")
        st = backend_status(forced)
        if not st.ok:
            raise BackendError(f"backend {forced!r} was asked for but is unusable: {st.reason}. "
                               "Fix: install it (pip install ai-edge-litert) or choose another backend.")
        return _import_interpreter_module(forced)[0], st
    reasons = []
    for n in BACKENDS:
        st = backend_status(n)
        if st.ok:
            return _import_interpreter_module(n)[0], st
        reasons.append(f"{n}: {st.reason}")
    raise BackendError("no TFLite interpreter backend works here:\n  " + "\n  ".join(reasons)
                       + "\nFix: pip install ai-edge-litert (64-bit Linux/macOS, Python 3.10-3.13).")
