"""Parity of the zoo models on this device with the outputs recorded at build time.

The model build (``edgelite models build``, on a workstation) writes beside each
``<name>-<precision>.tflite`` a ``<name>-<precision>.golden.npz``: ``input`` is the
raw input tensor (int8 for int8 models) and ``out:<output name>`` the raw outputs
the workstation computed with ``num_threads=1``. Here the same bytes go through
``edgelite.Model`` (``quantize=False, dequantize=False``) on *this* CPU and the
raw outputs are compared.

Tolerances, and why they are not "bit-exact":

* **int8 outputs**: within ±1 quantization step on at least 99.9 % of the
  elements and within ±2 on all of them. XNNPACK has different int8 kernels per
  CPU (x86 AVX2/AVX-512/VNNI, ARM NEON, NEON dot-product, i8mm) and they may
  requantize with different fixed-point rounding (e.g. rounding-half-away vs
  rounding-half-up of the 32-bit accumulator times the multiplier); one flipped
  rounding in an early layer can move a few later values by one step, rarely two.
  A real bug (wrong scale, wrong zero point, a broken op) moves many values by
  many steps, so these bounds still catch it.
* **float32 outputs**: ``|got - want| <= 1e-4 * |want| + 1e-4 * max|want|``, i.e.
  1e-4 relative, with the second term keeping near-zero elements from failing on
  differences far below the output's scale. Different SIMD widths and FMA change
  the order and rounding of float sums; 1e-4 is orders of magnitude above that
  noise (~1e-6) and far below anything that would change a detection or a match.

Run: ``pytest device_tests -m device`` (``EDGELITE_CACHE_DIR`` picks the model
folder). Models that are not built are skipped, not failed, with the command
that builds them.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite import zoo

pytestmark = pytest.mark.device

INT8_STEP_FRACTION = 0.999  # share of elements that must be within ±1 step
INT8_MAX_STEPS = 2          # no element may differ by more
FLOAT_RTOL = 1e-4

BUILD_HINT = ("build the zoo on a workstation: pip install 'edgelite[convert]' && edgelite models build; "
              "then copy ~/.cache/edgelite/models to this device or set EDGELITE_CACHE_DIR")
CASES = [(n, p) for n in zoo.ZOO_MODELS for p in zoo.PRECISIONS]


def _thread_counts() -> list[int]:
    # The golden was made with 1 thread; also run with several to show the thread
    # pool changes nothing (XNNPACK splits work by output tiles, not by sums).
    env = os.environ.get("EDGELITE_PARITY_THREADS")
    if env:
        return [int(t) for t in env.split(",")]
    n = min(os.cpu_count() or 1, 4)
    return [1] if n == 1 else [1, n]


def golden_path(model: Path) -> Path:
    return model.with_name(model.stem + ".golden.npz")


def compare_int(got: np.ndarray, want: np.ndarray) -> dict:
    """Quantization-step differences between two integer tensors."""
    d = np.abs(got.astype(np.int32) - want.astype(np.int32))
    return {"n": int(d.size), "max_steps": int(d.max()) if d.size else 0,
            "within_1": float(np.mean(d <= 1)) if d.size else 1.0,
            "exact": float(np.mean(d == 0)) if d.size else 1.0}


def compare_float(got: np.ndarray, want: np.ndarray) -> dict:
    g, w = got.astype(np.float64), want.astype(np.float64)
    scale = float(np.max(np.abs(w))) if w.size else 0.0
    err = np.abs(g - w)
    bound = FLOAT_RTOL * np.abs(w) + FLOAT_RTOL * scale
    return {"n": int(err.size), "exact": float(np.mean(g == w)) if err.size else 1.0,
            "max_abs": float(err.max()) if err.size else 0.0, "scale": scale,
            "worst_over_bound": float(np.max(err / np.maximum(bound, 1e-30))) if err.size else 0.0,
            "ok": bool(np.all(err <= bound)) and bool(np.all(np.isfinite(g)))}


def _record(entry: dict) -> None:
    """Append one case's statistics to ``$EDGELITE_PARITY_REPORT`` (JSON lines), if set.

    The emulated run (``device_tests/emulated/run.sh``) collects these into a
    readable report; a normal run leaves the variable unset and writes nothing.
    """
    path = os.environ.get("EDGELITE_PARITY_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _present_any() -> bool:
    return any(zoo.model_path(n, p).is_file() for n, p in CASES)


def test_some_zoo_model_present():
    """Says (as a skip) how to get models when none is built, instead of passing silently."""
    if not _present_any():
        pytest.skip(f"no zoo model in {zoo.models_dir()}: {BUILD_HINT}")


@pytest.mark.parametrize("threads", _thread_counts(), ids=lambda t: f"t{t}")
@pytest.mark.parametrize("name,precision", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_raw_outputs_match_golden(name, precision, threads):
    path = zoo.model_path(name, precision)
    if not path.is_file():
        pytest.skip(f"{path.name} not built: {BUILD_HINT}")
    gpath = golden_path(path)
    if not gpath.is_file():
        pytest.skip(f"{gpath.name} missing beside {path.name}: rebuild the zoo (edgelite models build) and copy "
                    "the .golden.npz files along with the models")
    with np.load(gpath) as z:
        golden = {k: z[k] for k in z.files}
    x = golden["input"]
    m = edgelite.Model(path, num_threads=threads)
    spec = m.inputs[0]
    assert tuple(x.shape) == tuple(spec.shape) and x.dtype == np.dtype(spec.dtype), \
        f"golden input {x.dtype}{x.shape} does not fit the model input {np.dtype(spec.dtype)}{tuple(spec.shape)}"
    outs = m.run(x, quantize=False, dequantize=False)
    want_names = sorted(k[4:] for k in golden if k.startswith("out:"))
    assert want_names, f"{gpath.name} has no out:<name> arrays"
    assert sorted(outs) == want_names, f"output names differ: model {sorted(outs)} vs golden {want_names}"
    failures = []
    entry = {"model": path.name, "sha256": zoo.sha256_file(path), "threads": threads, "backend": m.backend,
             "backend_version": m.backend_status.version, "machine": platform.machine(), "outputs": {}}
    for spec in m.outputs:
        got, want = outs[spec.name], golden[f"out:{spec.name}"]
        assert got.shape == want.shape and got.dtype == want.dtype, \
            f"{spec.name}: got {got.dtype}{got.shape}, golden {want.dtype}{want.shape}"
        if np.issubdtype(want.dtype, np.integer):
            s = compare_int(got, want)
            entry["outputs"][spec.name] = s
            if s["within_1"] < INT8_STEP_FRACTION or s["max_steps"] > INT8_MAX_STEPS:
                failures.append(f"{spec.name}: {s['within_1']:.3%} within ±1 step (need "
                                f"{INT8_STEP_FRACTION:.1%}), max {s['max_steps']} steps (limit {INT8_MAX_STEPS}), "
                                f"{s['exact']:.3%} exact of {s['n']}")
        else:
            s = compare_float(got, want)
            entry["outputs"][spec.name] = s
            if not s["ok"]:
                failures.append(f"{spec.name}: max |diff| {s['max_abs']:.3g} at output scale {s['scale']:.3g} "
                                f"({s['worst_over_bound']:.2f}x the {FLOAT_RTOL:g}-relative bound)")
    entry["ok"] = not failures
    _record(entry)
    assert not failures, f"{path.name} (threads={threads}, backend {m.backend}) differs from the golden:\n  " \
        + "\n  ".join(failures)
