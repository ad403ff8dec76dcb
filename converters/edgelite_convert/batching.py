"""Batch-polymorphic TFLite models: resizable to a batch of N, verified.

The ONNX importer traces with a static batch (1 by default) so that every shape
computation folds to a constant, and it writes the reshapes that keep the leading
dimension with a ``-1`` there (see :func:`edgelite_convert.onnx_ops.batch_reshape`).
What is left is the model's declared ``shape_signature``: the TFLite converter
writes ``[1, H, W, C]``, so ``Interpreter.resize_tensor_input(..., strict=True)``
- and therefore :class:`edgelite.Model`, which resizes only dims declared
dynamic and otherwise loops over the batch - refuses a batch of N.

:func:`make_batch_polymorphic` marks the batch dimension of the inputs and
outputs dynamic (``-1``) and then *proves* the result on the runtime: a batch of
``probe_batch`` different inputs must give exactly (int8) or within float
rounding (float32) the outputs of as many batch-1 runs. When the proof fails (a
reshape that folds the batch into another axis, an op that cannot resize), the
original model is returned unchanged, with the reason; ``Model`` then loops over
a batch as before, so nothing breaks.
"""
from __future__ import annotations

import numpy as np

__all__ = ["make_batch_polymorphic", "check_batch_equivalence"]


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:  # pragma: no cover - older installs
        from tensorflow.lite.python import schema_py_generated as s
    return s


def _probe_inputs(specs, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        shape = (n,) + tuple(s.shape[1:])
        dt = np.dtype(s.dtype)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            lo, hi = max(info.min, -128), min(info.max, 255)
            out.append(rng.integers(lo, hi + 1, size=shape).astype(dt))
        elif dt.kind == "b":
            out.append(rng.integers(0, 2, size=shape).astype(dt))
        else:
            out.append(rng.normal(0.0, 1.0, size=shape).astype(dt))
    return out


def check_batch_equivalence(model_bytes: bytes, batch: int = 4, *, num_threads: int = 1, seed: int = 0,
                            inputs: list[np.ndarray] | None = None) -> dict:
    """Run ``batch`` inputs as one batch and one by one; compare the outputs.

    Args:
        model_bytes: A ``.tflite`` model whose inputs are declared batch-dynamic.
        batch: Batch size to probe.
        num_threads: Interpreter threads.
        seed: Seed of the random probe inputs (raw values of the input dtype:
            int8 inputs get every int8 code, float inputs N(0, 1)).
        inputs: Probe inputs to use instead of random ones (one array per input,
            leading dim ``batch``).

    Returns:
        ``{"batch": N, "exact": bool, "max_abs_diff": {output: float}}``; raises
        :class:`edgelite.errors.InputError` when the model cannot be resized.
    """
    from edgelite.model import Model

    one = Model(model_bytes, num_threads=num_threads)
    many = Model(model_bytes, num_threads=num_threads)
    xs = inputs if inputs is not None else _probe_inputs(one.inputs, batch, seed)
    ref: dict[str, list[np.ndarray]] = {}
    for i in range(batch):
        for k, v in one.run([x[i:i + 1] for x in xs], quantize=False, dequantize=False).items():
            ref.setdefault(k, []).append(v)
    got = many.run(list(xs), quantize=False, dequantize=False)
    diffs, exact = {}, True
    for k, parts in ref.items():
        r = np.concatenate(parts, axis=0)
        g = got[k]
        if g.shape != r.shape:
            diffs[k] = float("inf")
            exact = False
            continue
        d = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
        diffs[k] = d
        exact = exact and d == 0.0
    return {"batch": batch, "exact": exact, "max_abs_diff": diffs,
            "_ref_scale": {k: float(np.max(np.abs(np.concatenate(v).astype(np.float64))) or 1.0)
                           for k, v in ref.items()}}


def make_batch_polymorphic(model_bytes: bytes, *, probe_batch: int = 3, num_threads: int = 1,
                           float_rtol: float = 1e-5) -> tuple[bytes, dict]:
    """Declare the batch dimension dynamic when the model really supports it.

    Args:
        model_bytes: A converted ``.tflite`` model.
        probe_batch: Batch size of the equivalence proof.
        num_threads: Interpreter threads for the proof.
        float_rtol: Tolerance for float outputs, relative to their largest
            magnitude (XNNPACK may tile a batch differently); quantized and
            integer outputs must match exactly.

    Returns:
        ``(bytes, info)``: the patched model, or ``model_bytes`` unchanged when the
        model's inputs do not have a leading batch of 1, already declare it
        dynamic, or fail the proof; ``info["batch_polymorphic"]`` says which, with
        ``info["reason"]`` when not.
    """
    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if not m.subgraphs:
        return model_bytes, {"batch_polymorphic": False, "reason": "no subgraph"}
    g = m.subgraphs[0]
    ins, outs = list(g.inputs if g.inputs is not None else []), list(g.outputs if g.outputs is not None else [])
    if not ins:
        return model_bytes, {"batch_polymorphic": False, "reason": "no inputs"}
    sigs = []
    for ti in ins:
        t = g.tensors[ti]
        shape = [int(x) for x in (t.shape if t.shape is not None else [])]
        sig = [int(x) for x in (t.shapeSignature if t.shapeSignature is not None and len(t.shapeSignature)
                                else shape)]
        if not shape or shape[0] != 1:
            return model_bytes, {"batch_polymorphic": False,
                                 "reason": f"input {t.name!r} has no leading batch of 1 (shape {shape})"}
        sigs.append(sig)
    if all(sig[0] == -1 for sig in sigs):
        return model_bytes, {"batch_polymorphic": True, "already": True}
    for ti in ins + outs:
        t = g.tensors[ti]
        shape = [int(x) for x in (t.shape if t.shape is not None else [])]
        if not shape or shape[0] != 1:
            continue  # an output without a leading batch (rare): leave it as it is
        sig = [int(x) for x in (t.shapeSignature if t.shapeSignature is not None and len(t.shapeSignature)
                                else shape)]
        sig[0] = -1
        t.shapeSignature = np.asarray(sig, np.int32)
    import flatbuffers

    b = flatbuffers.Builder(len(model_bytes) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    patched = bytes(b.Output())
    try:
        res = check_batch_equivalence(patched, probe_batch, num_threads=num_threads)
    except Exception as e:  # noqa: BLE001 - any refusal means: keep the batch-1 model
        return model_bytes, {"batch_polymorphic": False,
                             "reason": f"a batch of {probe_batch} does not run: {type(e).__name__}: {e}"[:500]}
    from edgelite.model import Model

    quantized = {o.name: (o.quantized or np.dtype(o.dtype).kind in "iub") for o in Model(patched).outputs}
    bad = {k: d for k, d in res["max_abs_diff"].items()
           if (d != 0.0 if quantized.get(k, True) else d > float_rtol * res["_ref_scale"][k])}
    if bad:
        return model_bytes, {"batch_polymorphic": False,
                             "reason": f"a batch of {probe_batch} differs from {probe_batch} single runs: {bad}"}
    return patched, {"batch_polymorphic": True, "probe_batch": probe_batch, "exact": res["exact"],
                     "max_abs_diff": res["max_abs_diff"]}
