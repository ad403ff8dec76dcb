"""TensorFlow-free checks of an ONNX model before import: fold shape subgraphs, then list unsupported ops.

Why before TensorFlow: importing TensorFlow takes ~7 s and prints log lines; a
model that cannot be converted must be refused without it.

Why fold first: exports of detectors (YOLOv8-style anchor grids, PaddleOCR
post-processing) compute constants from the input *shape* with ops such as
``Range``, ``Expand``, ``Tile``, ``Where``, ``Equal``, ``ConstantOfShape``. Once the
input size is fixed these are constants: :func:`fold_unsupported` evaluates them
with onnx's reference evaluator (numpy) and replaces every unsupported node whose
outputs are constant by initializers. What remains unsupported is refused, all at
once, with node names and a fix per op type (:func:`raise_unsupported`).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from edgelite.errors import ConversionError

__all__ = ["unsupported_ops", "raise_unsupported", "fold_unsupported", "check_supported", "OP_FIXES"]

#: Per op type (or family), how to get rid of an op the importer does not convert.
OP_FIXES: dict[str, str] = {
    "NonMaxSuppression": "post-processing: cut the model before it (onnx.utils.extract_model) and run NMS on "
                         "the raw outputs in numpy (edgelite.face.yunet does exactly this for YuNet)",
    "TopK": "post-processing: cut the model before it and sort the raw outputs in numpy",
    "NonZero": "data-dependent shape: cut the model before it and post-process in numpy",
    "Loop": "control flow: export with a fixed number of iterations (unrolled), e.g. torch.jit.trace instead "
            "of torch.jit.script",
    "If": "control flow: export with the branch fixed (tracing, static shapes)",
    "Scan": "recurrence: unroll it (static sequence length) or export LSTM/GRU as the ONNX LSTM/GRU op",
    "LSTM": "unroll the recurrence with a static sequence length (Keras: unroll=True) and re-export",
    "GRU": "unroll the recurrence with a static sequence length (Keras: unroll=True) and re-export",
    "RNN": "unroll the recurrence with a static sequence length and re-export",
    "Einsum": "re-export with the contraction written as MatMul/Transpose/Reshape",
    "GridSample": "no TFLite builtin: keep it out of the model and warp on the CPU (OpenCV)",
    "RoiAlign": "no TFLite builtin: crop/resize the regions outside the model",
    "DequantizeLinear": "an already-quantized (QDQ) model: convert the float model instead, edgelite quantizes it",
    "QuantizeLinear": "an already-quantized (QDQ) model: convert the float model instead, edgelite quantizes it",
}
_DOMAIN_FIX = ("an op of a non-standard domain (a runtime-specific fused op): re-export with the standard "
               "ONNX opset only (e.g. disable onnxruntime graph optimisations before saving)")
_GENERIC_FIX = ("replace it with supported equivalents in the source framework, or simplify/constant-fold the "
                "model with static input shapes (onnxsim)")


def _op_key(node: onnx.NodeProto) -> str:
    """Op type as reported to users: ``Conv``, or ``com.microsoft.FusedConv`` for other domains."""
    if node.domain in ("", "ai.onnx"):
        return node.op_type
    return f"{node.domain}.{node.op_type}"


def _iter_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for a in node.attribute:  # subgraphs of If/Loop/Scan are unsupported anyway, but list their ops
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _iter_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _iter_nodes(g)


def _handlers() -> set[str]:
    from edgelite_convert.onnx_ops import HANDLERS  # TensorFlow is imported lazily there

    return set(HANDLERS)


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Sorted unique op types of ``model`` the importer cannot convert (other domains prefixed)."""
    ok = _handlers()
    return sorted({_op_key(n) for n in _iter_nodes(model.graph) if _op_key(n) not in ok})


def raise_unsupported(model: onnx.ModelProto, bad: list[str], folded: Sequence[str] = ()) -> None:
    """Raise a :class:`ConversionError` listing every unsupported op with node names and a fix per op type."""
    names: dict[str, list[str]] = defaultdict(list)
    for i, n in enumerate(_iter_nodes(model.graph)):
        key = _op_key(n)
        if key in bad:
            names[key].append(n.name or f"#{i}")
    parts = []
    for op in bad:
        shown = ", ".join(f"'{x}'" for x in names[op][:5])
        more = f" and {len(names[op]) - 5} more" if len(names[op]) > 5 else ""
        fix = OP_FIXES.get(op.split(".")[-1] if "." not in op else op) or (_DOMAIN_FIX if "." in op else _GENERIC_FIX)
        parts.append(f"  - {op} ({len(names[op])} node{'s' if len(names[op]) != 1 else ''}: {shown}{more}). "
                     f"Fix: {fix}.")
    note = (f" ({len(folded)} node(s) that only computed constants from shapes/initializers were folded first: "
            f"{', '.join(folded[:5])}{' ...' if len(folded) > 5 else ''})") if folded else ""
    raise ConversionError(
        f"The ONNX model uses {len(bad)} op type{'s' if len(bad) != 1 else ''} the edgelite importer cannot "
        f"convert{note}:\n" + "\n".join(parts) + "\nSupported ops are listed in docs/converters.md and in "
        "edgelite_convert.onnx_import.SUPPORTED_OPS.")


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - shape inference is a help, not a requirement
        inferred = model
    out = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
        if None not in dims:
            out[vi.name] = tuple(int(d) for d in dims)
    return out


def _with_input_shapes(model: onnx.ModelProto, input_shapes: dict | None) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        want = (input_shapes or {}).get(inp.name)
        for k, d in enumerate(dims):
            if want is not None and k < len(want):
                d.ClearField("dim_param")
                d.dim_value = int(want[k])
            elif k == 0 and not (d.HasField("dim_value") and d.dim_value > 0):
                d.ClearField("dim_param")
                d.dim_value = 1  # dynamic batch: 1, as the importer does
    return m


def fold_unsupported(model: onnx.ModelProto, input_shapes: dict | None = None
                     ) -> tuple[onnx.ModelProto, list[str]]:
    """Replace unsupported nodes whose outputs are constant (given static input shapes) by initializers.

    Only unsupported nodes and their ancestors are evaluated, so a model the importer
    fully supports is returned unchanged (the same object).

    Args:
        model: The ONNX model.
        input_shapes: Static ONNX-layout shapes per input (a dynamic batch becomes 1).

    Returns:
        ``(model, folded)``: the model with those nodes folded, and their labels
        (``"Range 'anchors/range'"``).
    """
    ok = _handlers()
    graph = model.graph
    nodes = list(graph.node)
    if all(_op_key(n) in ok for n in nodes):
        return model, []
    shaped = _with_input_shapes(model, input_shapes)
    shapes = _static_shapes(shaped)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    # ancestors of unsupported nodes: the only nodes worth evaluating
    need: set[int] = set()
    stack = [i for i, n in enumerate(nodes) if _op_key(n) not in ok]
    while stack:
        i = stack.pop()
        if i in need:
            continue
        need.add(i)
        if nodes[i].op_type in ("Shape", "Size"):
            continue  # needs only the static shape of its input
        stack.extend(producer[x] for x in nodes[i].input if x in producer)
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    from onnx.reference import ReferenceEvaluator

    for i in sorted(need):
        n = nodes[i]
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            continue
        if n.domain not in ("", "ai.onnx"):
            continue
        try:
            if n.op_type in ("Shape", "Size") and n.input[0] in shapes:
                shp = np.array(shapes[n.input[0]], np.int64)
                if n.op_type == "Size":
                    consts[n.output[0]] = np.array(int(np.prod(shp)), np.int64)
                    continue
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                start, end = attrs.get("start", 0), attrs.get("end", None)
                consts[n.output[0]] = shp[start:end]
                continue
            if n.op_type == "Constant":
                consts[n.output[0]] = ReferenceEvaluator(n).run(None, {})[0]
                continue
            ins = [x for x in n.input if x]
            if not all(x in consts for x in ins):
                continue
            outs = ReferenceEvaluator(n).run(None, {x: consts[x] for x in ins})
            for name, v in zip(n.output, outs):
                if name:
                    consts[name] = np.asarray(v)
        except Exception:  # noqa: BLE001 - not foldable: the op check reports it
            continue
    folded, keep = [], []
    new_inits = []
    for i, n in enumerate(nodes):
        if i in need and _op_key(n) not in ok and all((not o) or o in consts for o in n.output):
            folded.append(f"{n.op_type} '{n.name or f'#{i}'}'")
            for o in n.output:
                if o:
                    new_inits.append(numpy_helper.from_array(np.asarray(consts[o]), o))
            continue
        keep.append(n)
    if not folded:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    out.graph.initializer.extend(new_inits)
    return out, folded


def check_supported(model: onnx.ModelProto, input_shapes: dict | None = None
                    ) -> tuple[onnx.ModelProto, list[str]]:
    """Fold what only computes constants, then refuse what remains unsupported (no TensorFlow).

    Returns:
        ``(model, folded)`` as :func:`fold_unsupported`.

    Raises:
        ConversionError: listing every remaining unsupported op type, with node names and a fix.
    """
    model, folded = fold_unsupported(model, input_shapes)
    bad = unsupported_ops(model)
    if bad:
        raise_unsupported(model, bad, folded)
    return model, folded
