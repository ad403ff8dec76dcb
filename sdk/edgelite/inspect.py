"""``edgelite inspect``: what is inside a TFLite model, and will it run fast here?

:func:`inspect_model` answers the questions that matter before deploying an
int8 model to a Raspberry Pi-class CPU:

* its inputs/outputs (shape, dtype, quantisation);
* whether it is **fully integer**: a model with float ops left in it runs them in
  float32 (slow on small CPUs, impossible on the Edge TPU), usually because the
  converter had no int8 kernel for them or calibration was skipped;
* which ops the **XNNPACK** delegate (LiteRT's default CPU accelerator) runs *in
  the model's precision*. An op XNNPACK does not take falls back to the
  reference-quality builtin kernel and splits the graph into several delegate
  partitions, each costing a hand-over. PRELU in int8 is the classic case.
  When a LiteRT interpreter is importable the answer is measured (the model is
  loaded and the execution plan inspected); otherwise it comes from a static
  table, and the report says which;
* the model's metadata entries, with the ``edgelite`` JSON block parsed.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ._tflite import ModelInfo, QuantParams, TensorInfo, read_model_info
from .errors import MetadataError

__all__ = [
    "FloatOp", "InspectReport", "SubgraphSummary", "TensorSummary", "XnnpackOp",
    "delegated_ops", "inspect_model",
]

_FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})

# XNNPACK delegate coverage by precision: "qs8" = signed int8, "qu8" = uint8,
# "float" = float32. Measured with tests/data/probe_xnnpack.py on
# ai-edge-litert 2.3.0 (x86_64): one small TF-converted model per op, loaded
# with the default XNNPACK delegate, delegated nodes read back from the
# execution plan. Not taken in int8 on that runtime, contrary to what one might
# expect: AVERAGE_POOL_2D, SOFTMAX, HARD_SWISH, MAXIMUM, MINIMUM, PRELU, RELU,
# RELU6 (standalone; fused activations are fine), DIV, SQUARED_DIFFERENCE,
# GELU; RESIZE_NEAREST_NEIGHBOR and L2_NORMALIZATION in neither precision;
# STRIDED_SLICE only with unit strides. QU8 (uint8 internals) cannot be
# produced by current converters, so it is not measured; it mirrors QS8 here.
# Support also depends on parameters (strides, broadcast rank, dynamic
# shapes), which only the empirical check sees.
_XNNPACK_QS8 = frozenset({
    "ADD", "BATCH_MATMUL", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE", "DEQUANTIZE", "FULLY_CONNECTED", "LEAKY_RELU", "LOGISTIC",
    "MAX_POOL_2D", "MEAN", "MUL", "PAD", "QUANTIZE", "RESHAPE", "RESIZE_BILINEAR",
    "SLICE", "SPACE_TO_DEPTH", "SPLIT", "STRIDED_SLICE", "SUB", "SUM", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV",
})
_XNNPACK_QU8 = _XNNPACK_QS8
_XNNPACK_FLOAT = frozenset({
    "ABS", "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CEIL", "CONCATENATION",
    "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DIV", "ELU", "EXP",
    "FLOOR", "FULLY_CONNECTED", "GELU", "HARD_SWISH", "LEAKY_RELU", "LOG",
    "LOGISTIC", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "NEG", "PAD",
    "PRELU", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "ROUND", "RSQRT",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQRT", "SQUARE",
    "SQUARED_DIFFERENCE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
})
_XNNPACK_STATIC = {"qs8": _XNNPACK_QS8, "qu8": _XNNPACK_QU8, "float": _XNNPACK_FLOAT}


@dataclass(frozen=True)
class TensorSummary:
    """A graph input or output as the report shows it.

    ``quantization`` is None for unquantised tensors, ``{"scale", "zero_point"}``
    per-tensor, or ``{"per_channel": True, "count", "min_scale", "max_scale",
    "quantized_dimension"}`` per-channel (listing hundreds of scales helps no one).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    dtype: str
    quantization: dict | None


@dataclass(frozen=True)
class FloatOp:
    """An operator computing in floating point, and why it counts as one."""

    subgraph: int
    index: int
    op_name: str
    reason: str


@dataclass(frozen=True)
class XnnpackOp:
    """Whether XNNPACK runs one operator in its precision.

    ``precision`` is ``"qs8"`` (int8), ``"qu8"`` (uint8), ``"mixed"`` (int8 and
    uint8, e.g. a uint8<->int8 QUANTIZE), ``"float"`` or ``"other"``
    (int32/bool/string... ops, which XNNPACK never takes).
    """

    subgraph: int
    index: int
    op_name: str
    precision: str
    delegated: bool


@dataclass(frozen=True)
class SubgraphSummary:
    """Inputs, outputs and operator counts of one subgraph."""

    index: int
    name: str
    num_tensors: int
    num_operators: int
    inputs: tuple[TensorSummary, ...]
    outputs: tuple[TensorSummary, ...]
    op_histogram: dict[str, int]


@dataclass(frozen=True)
class InspectReport:
    """Result of :func:`inspect_model`; see the module docstring for the meaning.

    Attributes:
        source: The path inspected, or ``"<bytes>"``.
        size_bytes: File size.
        schema_version: TFLite schema version.
        description: Producer description stored in the file.
        subgraphs: Per-subgraph summaries (0 = main graph).
        signatures: ``{key: {"subgraph", "inputs", "outputs"}}``.
        fully_integer: True when no operator computes in floating point, except
            a QUANTIZE of a float graph input and a DEQUANTIZE to a float graph
            output (the float I/O wrappers the converter adds on request).
        float_ops: The operators that make ``fully_integer`` False.
        xnnpack_method: ``"empirical"`` (measured with a loaded interpreter) or
            ``"static"`` (table of known XNNPACK coverage).
        xnnpack_note: Which runtime was measured, or why the table was used.
        xnnpack_ops: Per-operator verdicts.
        xnnpack_unsupported: Op types XNNPACK leaves (at least once) to the
            builtin kernels, e.g. ``"PRELU"``; ``xnnpack_ops`` has the precision.
        metadata: ``{"names": [...], "edgelite": {...} | None,
            "edgelite_error": str | None}``: the metadata entry names, the parsed
            ``edgelite`` JSON object when present and valid, else why it could
            not be parsed (a malformed block is reported, never raised).
    """

    source: str
    size_bytes: int
    schema_version: int
    description: str
    subgraphs: tuple[SubgraphSummary, ...]
    signatures: dict[str, dict]
    fully_integer: bool
    float_ops: tuple[FloatOp, ...]
    xnnpack_method: str
    xnnpack_note: str
    xnnpack_ops: tuple[XnnpackOp, ...]
    xnnpack_unsupported: tuple[str, ...]
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable builtins (lists, not tuples)."""
        return _jsonable(asdict(self))

    def to_text(self) -> str:
        """Return a human-readable multi-line summary (no trailing newline)."""
        lines = [
            f"Model: {self.source} ({_human_size(self.size_bytes)}), schema "
            f"v{self.schema_version}"
            + (f", {self.description!r}" if self.description else ""),
        ]
        for sg in self.subgraphs:
            title = f"Subgraph {sg.index}" + (f" {sg.name!r}" if sg.name else "")
            lines.append(f"{title}: {sg.num_operators} ops, {sg.num_tensors} tensors")
            for label, tensors in (("inputs", sg.inputs), ("outputs", sg.outputs)):
                lines.append(f"  {label}:")
                rows = [(t.name, _shape_text(t), t.dtype, _quant_text(t.quantization))
                        for t in tensors]
                lines.extend("    " + r for r in _table(rows))
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(
                sg.op_histogram.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"  ops: {ops or '(none)'}")
        if self.signatures:
            lines.append("Signatures:")
            for key, s in self.signatures.items():
                lines.append(f"  {key} (subgraph {s['subgraph']}): inputs "
                             f"{', '.join(s['inputs'])}; outputs {', '.join(s['outputs'])}")
        if self.fully_integer:
            lines.append("Fully integer: yes")
        else:
            lines.append(f"Fully integer: NO, {len(self.float_ops)} float op(s):")
            for f in self.float_ops:
                where = f"#{f.index}" if f.subgraph == 0 else f"subgraph {f.subgraph} #{f.index}"
                lines.append(f"  {where} {f.op_name}: {f.reason}")
        n_del = sum(o.delegated for o in self.xnnpack_ops)
        lines.append(f"XNNPACK ({self.xnnpack_method}; {self.xnnpack_note}): "
                     f"{n_del}/{len(self.xnnpack_ops)} ops run by XNNPACK")
        left = []
        for o in self.xnnpack_ops:
            label = f"{o.op_name} ({o.precision})"
            if not o.delegated and label not in left:
                left.append(label)
        if left:
            lines.append("  not run by XNNPACK (builtin kernels): " + ", ".join(left))
        md = self.metadata
        lines.append("Metadata: " + (", ".join(md.get("names", ())) or "(none)"))
        if md.get("edgelite") is not None:
            lines.append("  edgelite: " + json.dumps(md["edgelite"], sort_keys=True))
        if md.get("edgelite_error"):
            lines.append(f"  edgelite metadata is malformed: {md['edgelite_error']}")
        return "\n".join(lines)


def inspect_model(path_or_bytes, *, empirical: bool = True) -> InspectReport:
    """Inspect a TFLite model: I/O, ops, full-integer status, XNNPACK coverage.

    Args:
        path_or_bytes: Path to a ``.tflite`` file, or its bytes.
        empirical: Load the model in a LiteRT interpreter (when one is
            importable) and read which ops XNNPACK actually took. Costs one
            interpreter construction; with False, or without a runtime, the
            static coverage table is used instead.

    Returns:
        The report; use ``.to_text()`` or ``.to_dict()``.

    Raises:
        ModelNotFoundError: The path does not exist or is a directory.
        InvalidModelError: The file is not a valid TFLite model.
    """
    info = read_model_info(path_or_bytes)
    source = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray, memoryview)) \
        else str(path_or_bytes)
    subgraphs = tuple(_subgraph_summary(info, i) for i in range(len(info.subgraphs)))
    signatures = {
        s.key: {
            "subgraph": s.subgraph_index,
            "inputs": list(s.inputs),
            "outputs": list(s.outputs),
        }
        for s in info.signatures
    }
    float_ops = tuple(_float_ops(info))
    xops, method, note = _xnnpack(info, empirical)
    unsupported = []
    for o in xops:
        if not o.delegated and o.op_name not in unsupported:
            unsupported.append(o.op_name)
    meta, meta_err = _edgelite_metadata(info)
    return InspectReport(
        source=source,
        size_bytes=info.size_bytes,
        schema_version=info.schema_version,
        description=info.description,
        subgraphs=subgraphs,
        signatures=signatures,
        fully_integer=not float_ops,
        float_ops=float_ops,
        xnnpack_method=method,
        xnnpack_note=note,
        xnnpack_ops=tuple(xops),
        xnnpack_unsupported=tuple(unsupported),
        metadata={"names": list(info.metadata), "edgelite": meta,
                  "edgelite_error": meta_err},
    )


# --------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------


def _quant_summary(q: QuantParams | None) -> dict | None:
    if q is None or not q.is_quantized:
        return None
    if not q.per_channel:
        return {"scale": q.scales[0], "zero_point": q.zero_points[0]}
    return {
        "per_channel": True,
        "count": len(q.scales),
        "min_scale": min(q.scales),
        "max_scale": max(q.scales),
        "quantized_dimension": q.quantized_dimension,
    }


def _tensor_summary(t: TensorInfo) -> TensorSummary:
    return TensorSummary(index=t.index, name=t.name, shape=t.shape,
                         shape_signature=t.shape_signature, dtype=t.dtype,
                         quantization=_quant_summary(t.quantization))


def _subgraph_summary(info: ModelInfo, i: int) -> SubgraphSummary:
    sg = info.subgraphs[i]
    return SubgraphSummary(
        index=i, name=sg.name, num_tensors=len(sg.tensors),
        num_operators=len(sg.operators),
        inputs=tuple(_tensor_summary(sg.tensors[t]) for t in sg.inputs),
        outputs=tuple(_tensor_summary(sg.tensors[t]) for t in sg.outputs),
        op_histogram=info.op_histogram(i),
    )


def _float_ops(info: ModelInfo):
    """Yield the operators that compute in floating point.

    Only activations count (non-constant tensors): float *weights* feeding an
    op whose activations are integer do not make it a float op, and a float
    activation anywhere does. The converter's float I/O wrappers (QUANTIZE of a
    float graph input, DEQUANTIZE to a float graph output) are allowed because
    they run once at the boundary, not in the network.
    """
    for si, sg in enumerate(info.subgraphs):
        graph_in, graph_out = set(sg.inputs), set(sg.outputs)
        for op in sg.operators:
            float_in = [t for t in op.inputs
                        if t >= 0 and not sg.tensors[t].is_constant
                        and sg.tensors[t].dtype in _FLOAT_DTYPES]
            float_out = [t for t in op.outputs if sg.tensors[t].dtype in _FLOAT_DTYPES]
            if not float_in and not float_out:
                continue
            if (op.op_name == "QUANTIZE" and not float_out
                    and all(t in graph_in for t in float_in)):
                continue
            if (op.op_name == "DEQUANTIZE" and not float_in
                    and all(t in graph_out for t in float_out)):
                continue
            t = (float_in or float_out)[0]
            tensor = sg.tensors[t]
            side = "input" if float_in else "output"
            if op.op_name == "QUANTIZE":
                reason = (f"quantizes float tensor {t} {tensor.name!r}, which is not a "
                          f"graph input")
            elif op.op_name == "DEQUANTIZE":
                reason = (f"dequantizes to float tensor {t} {tensor.name!r}, which is "
                          f"not a graph output")
            else:
                reason = f"{tensor.dtype} {side} tensor {t} {tensor.name!r}"
            yield FloatOp(subgraph=si, index=op.index, op_name=op.op_name, reason=reason)


def _precision(sg, op) -> str:
    acts = [sg.tensors[t].dtype for t in (*op.inputs, *op.outputs)
            if t >= 0 and not sg.tensors[t].is_constant]
    if "int8" in acts and "uint8" in acts:
        return "mixed"  # uint8<->int8 requantisation: XNNPACK has no such kernel
    if "int8" in acts:
        return "qs8"
    if "uint8" in acts:
        return "qu8"
    if any(d in ("float32", "float16") for d in acts):
        return "float"
    return "other"


def _xnnpack(info: ModelInfo, empirical: bool):
    measured: dict[int, bool] | None = None
    note = "empirical check disabled; static table"
    if empirical:
        measured, note = delegated_ops(info)
    ops = []
    for si, sg in enumerate(info.subgraphs):
        for op in sg.operators:
            prec = _precision(sg, op)
            if measured is not None and si == 0:
                delegated = measured.get(op.index, False)
            else:
                delegated = op.op_name in _XNNPACK_STATIC.get(prec, ())
            ops.append(XnnpackOp(subgraph=si, index=op.index, op_name=op.op_name,
                                 precision=prec, delegated=delegated))
    if measured is None:
        return ops, "static", note
    if len(info.subgraphs) > 1:
        note += "; subgraphs other than 0 from the static table"
    return ops, "empirical", note


def _load_interpreter_module():
    """The LiteRT interpreter module, or None. Never TensorFlow (too heavy)."""
    try:
        from ai_edge_litert import interpreter as mod
        return mod, "ai-edge-litert"
    except Exception:  # noqa: BLE001 - any import failure just means "not available"
        pass
    try:
        from tflite_runtime import interpreter as mod
        return mod, "tflite-runtime"
    except Exception:  # noqa: BLE001
        return None, None


def delegated_ops(info: ModelInfo) -> tuple[dict[int, bool] | None, str]:
    """Measure which subgraph-0 operators the default XNNPACK delegate takes.

    Loads the (already verified) model in a LiteRT interpreter with its default
    delegate, allocates, and reads the node list: after delegation every
    partition XNNPACK claimed appears as an extra ``DELEGATE`` node whose
    inputs/outputs are the partition's boundary tensors. Walking back from a
    DELEGATE node's outputs to its inputs through the original nodes recovers
    exactly the nodes inside that partition.

    Args:
        info: A model from :func:`edgelite._tflite.parse_model` (its bytes are
            reused, not copied).

    Returns:
        ``({op index: delegated}, note)``, or ``(None, why)`` when no interpreter
        is importable or the model could not be loaded.
    """
    mod, name = _load_interpreter_module()
    if mod is None:
        return None, "no LiteRT interpreter installed; static table"
    try:
        version = _dist_version(name)
        itp = mod.Interpreter(model_content=bytes(info._data))
        itp.allocate_tensors()
        details = itp._get_ops_details()
    except Exception as exc:  # noqa: BLE001 - fall back to the table, say why
        return None, f"interpreter could not load the model ({exc}); static table"
    nodes = [d for d in details if d["op_name"] != "DELEGATE"]
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    producer = {}
    for d in nodes:
        for t in d["outputs"]:
            producer[int(t)] = d["index"]
    by_index = {d["index"]: d for d in nodes}
    taken: set[int] = set()
    for dn in delegates:
        boundary = {int(t) for t in dn["inputs"]}
        stack = [int(t) for t in dn["outputs"]]
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t in boundary or t in seen:
                continue
            seen.add(t)
            p = producer.get(t)
            if p is None or p in taken:
                continue
            taken.add(p)
            stack.extend(int(x) for x in by_index[p]["inputs"] if int(x) >= 0)
    result = {d["index"]: d["index"] in taken for d in nodes}
    return result, f"measured with {name} {version}"


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001 - informational only
        return "?"


def _edgelite_metadata(info: ModelInfo) -> tuple[dict | None, str | None]:
    raw = info.metadata.get("edgelite")
    if raw is None:
        return None, None
    from .metadata import loads_bounded

    try:
        obj = loads_bounded(raw, what="JSON")
    except MetadataError as exc:
        return None, str(exc).removeprefix("JSON is ")
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, None


# --------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and x != x:  # NaN is not JSON
        return None
    return x


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _shape_text(t: TensorSummary) -> str:
    sig = t.shape_signature
    dims = sig if sig is not None and -1 in sig else t.shape
    return "[" + ",".join("?" if d == -1 else str(d) for d in dims) + "]"


def _quant_text(q: dict | None) -> str:
    if q is None:
        return ""
    if q.get("per_channel"):
        return (f"per-channel x{q['count']} scale {q['min_scale']:.3g}..{q['max_scale']:.3g}"
                f" (axis {q['quantized_dimension']})")
    return f"scale {q['scale']:.6g} zero_point {q['zero_point']}"


def _table(rows) -> list[str]:
    if not rows:
        return ["(none)"]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
