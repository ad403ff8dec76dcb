"""Our own ONNX -> TensorFlow importer, producing an NHWC graph ready for int8 TFLite.

Why our own: third-party converters (onnx-tf, onnx2tf) either keep ONNX's NCHW
layout - so every convolution is wrapped in ``TRANSPOSE`` ops that cost time and
int8 accuracy on device - or are large, fast-moving dependencies. This importer
covers the ops the edgelite zoo and typical vision CNNs need, and nothing more.

How it works:

* 4-D inputs (NCHW in ONNX) are taken NHWC by the TF function, and every 4-D image
  tensor stays NHWC inside (see :mod:`edgelite_convert.onnx_ops` for the layout
  bookkeeping), so ``CONV_2D``/``DEPTHWISE_CONV_2D`` appear without transposes.
  Layout-sensitive ops (``Transpose``, ``Reshape``, ``Flatten`` -> ``Gemm``,
  ``Concat``, ``Squeeze``, ``Softmax``, reductions...) translate their axes, absorb
  the permutation into constant weights, or - only where semantics require it -
  insert a transpose, which is counted in :attr:`ImportedOnnx.transposes_inserted`.
  YuNet and SFace import with zero.
* Constants (initializers, ``Constant`` nodes and everything computable from them)
  are folded with numpy/eager TF at import time.
* Graph rewrites made at import, each listed in :attr:`ImportedOnnx.rewrites`:
  ``BatchNormalization`` folded into the preceding ``Conv``/``ConvTranspose``/
  ``Gemm`` (when it is the only consumer) or into a following ``Gemm`` through
  ``Flatten``, and ``PRelu`` replaced by ``x + relu((α-1)·x)`` (XNNPACK does not run
  PRELU in int8; see ``prelu_rewrite`` and :mod:`edgelite_convert.prelu`).

Outputs keep ONNX semantics: same shapes and values as onnxruntime (4-D outputs
come back NCHW unless ``nhwc_outputs=True``).

Example::

    imported = import_onnx("face_recognition_sface_2021dec.onnx")
    emb = imported(np.zeros((1, 112, 112, 3), np.float32))["fc1"]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [imported.concrete_function()], imported)
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import onnx
import tensorflow as tf
from onnx import numpy_helper

from edgelite.errors import ConversionError
from edgelite_convert import onnx_fold, onnx_ops
from edgelite_convert.onnx_ops import NHWC_PERM, SUPPORTED_OPS, Ctx, Node, Val

__all__ = ["ImportedOnnx", "SUPPORTED_OPS", "import_onnx", "unsupported_ops"]

#: Opset range the importer is tested on (default ONNX domain).
MIN_OPSET, MAX_OPSET = 7, 18


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """List the op types of ``model`` this importer cannot convert.

    Args:
        model: A loaded ONNX model.

    Returns:
        Sorted unique op types (other domains prefixed, e.g. ``"com.microsoft.FusedConv"``);
        empty when everything is supported. (TensorFlow-free: :mod:`edgelite_convert.onnx_fold`.)
    """
    return onnx_fold.unsupported_ops(model)


# ----------------------------------------------------------------------------
# Import-time graph rewrites
# ----------------------------------------------------------------------------
def _consumers(nodes: Sequence[Node]) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = defaultdict(list)
    for n in nodes:
        for i in n.inputs:
            if i:
                out[i].append(n)
    return out


def _bn_params(bn: Node, consts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel ``(scale, shift)`` of an inference BatchNormalization, if constant."""
    if len(bn.inputs) < 5 or not all(i in consts for i in bn.inputs[1:5]):
        return None
    if bn.attrs.get("training_mode", 0) or any(o for o in bn.outputs[1:]):
        return None
    gamma, beta, mean, var = (consts[i].astype(np.float64) for i in bn.inputs[1:5])
    s = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return s, beta - mean * s


def _fold_batchnorms(nodes: list[Node], consts: dict[str, np.ndarray], graph_outputs: set[str],
                     rewrites: list[str]) -> list[Node]:
    """Fold each BatchNormalization into the Conv/ConvTranspose/Gemm feeding only it.

    Folding in float64 at import makes the BN free at run time and, for int8,
    lets the conv's per-channel weight scales absorb the BN scale instead of
    quantizing an extra MUL/ADD pair.
    """
    producer = {o: n for n in nodes for o in n.outputs}
    consumers = _consumers(nodes)
    removed: set[int] = set()
    for bn in nodes:
        if bn.op_type != "BatchNormalization":
            continue
        prev = producer.get(bn.inputs[0])
        params = _bn_params(bn, consts)
        if (prev is None or params is None or prev.op_type not in ("Conv", "ConvTranspose", "Gemm")
                or len(consumers[prev.outputs[0]]) != 1 or prev.outputs[0] in graph_outputs
                or len(prev.inputs) < 2 or prev.inputs[1] not in consts
                or (len(prev.inputs) > 2 and prev.inputs[2] and prev.inputs[2] not in consts)):
            continue
        s, b = params
        w = consts[prev.inputs[1]].astype(np.float64)
        bias = consts[prev.inputs[2]].astype(np.float64) if len(prev.inputs) > 2 and prev.inputs[2] else None
        if prev.op_type == "Conv":
            if w.shape[0] != s.size:
                continue
            w = w * s[:, None, None, None]
        elif prev.op_type == "ConvTranspose":
            g = int(prev.attrs.get("group", 1))
            c_in, m_g = w.shape[:2]
            if m_g * g != s.size:
                continue
            w = (w.reshape(g, c_in // g, m_g, *w.shape[2:]) * s.reshape(g, 1, m_g, 1, 1)).reshape(w.shape)
        else:  # Gemm: y = alpha*op(A)@op(B) + beta*C; normalise to transB=0, alpha=beta=1
            a = prev.attrs
            if w.ndim != 2 or a.get("transA", 0):
                continue
            w = (w.T if a.get("transB", 0) else w) * float(a.get("alpha", 1.0))
            if w.shape[1] != s.size or (bias is not None and bias.size not in (1, s.size)):
                continue
            if bias is not None:
                bias = np.broadcast_to(bias.reshape(-1) * float(a.get("beta", 1.0)), (s.size,))
            w = w * s[None, :]
            prev.attrs = {"transB": 0}
        n_out = s.size
        bias = (np.zeros(n_out) if bias is None else bias) * s + b
        wname, bname = f"{prev.name}__bnfold_w", f"{prev.name}__bnfold_b"
        consts[wname] = w.astype(np.float32)
        consts[bname] = bias.astype(np.float32)
        prev.inputs = [prev.inputs[0], wname, bname]
        prev.outputs = [bn.outputs[0]]
        removed.add(id(bn))
        rewrites.append(f"BatchNormalization '{bn.name}' folded into {prev.op_type} '{prev.name}'")
        consumers = _consumers([n for n in nodes if id(n) not in removed])
    return [n for n in nodes if id(n) not in removed]


def _fold_batchnorms_forward(nodes: list[Node], consts: dict[str, np.ndarray], graph_outputs: set[str],
                             rewrites: list[str]) -> list[Node]:
    """Fold a BatchNormalization into a *following* Gemm through Dropout/Flatten.

    SFace ends with ``PRelu -> BN -> Dropout -> Flatten -> Gemm``: the BN cannot
    go into a preceding conv (a PRelu sits between), but an affine per-channel
    map followed by a linear layer is itself linear, so it folds into the Gemm's
    weights and bias: ``(x·s + b) @ W = x @ (s·W) + b @ W``.
    """
    consumers = _consumers(nodes)
    removed: set[int] = set()
    for bn in nodes:
        if bn.op_type != "BatchNormalization" or id(bn) in removed:
            continue
        params = _bn_params(bn, consts)
        if params is None:
            continue
        chain, cur, flatten = [bn], bn, None
        while True:
            out = cur.outputs[0]
            users = consumers.get(out, [])
            if out in graph_outputs or len(users) != 1:
                break
            nxt = users[0]
            if nxt.op_type in ("Dropout", "Identity") and flatten is None:
                if len(nxt.outputs) > 1 and nxt.outputs[1]:
                    break
                chain.append(nxt)
                cur = nxt
                continue
            if nxt.op_type == "Flatten" and flatten is None and int(nxt.attrs.get("axis", 1)) == 1:
                flatten = nxt
                chain.append(nxt)
                cur = nxt
                continue
            if (nxt.op_type == "Gemm" and flatten is not None and nxt.inputs[0] == out
                    and len(nxt.inputs) > 1 and nxt.inputs[1] in consts and not nxt.attrs.get("transA", 0)
                    and (len(nxt.inputs) < 3 or not nxt.inputs[2] or nxt.inputs[2] in consts)):
                s, b = params
                a = nxt.attrs
                w = consts[nxt.inputs[1]].astype(np.float64)
                w = (w.T if a.get("transB", 0) else w) * float(a.get("alpha", 1.0))
                k, n_out = w.shape
                if k % s.size:
                    break
                rep = k // s.size  # flattened CHW: each channel spans H*W features
                s_f, b_f = np.repeat(s, rep), np.repeat(b, rep)
                c = np.zeros(n_out)
                if len(nxt.inputs) > 2 and nxt.inputs[2]:
                    c = np.broadcast_to(consts[nxt.inputs[2]].astype(np.float64) * float(a.get("beta", 1.0)),
                                        (n_out,)) if consts[nxt.inputs[2]].size in (1, n_out) else None
                if c is None:
                    break
                wname, bname = f"{nxt.name}__bnfold_w", f"{nxt.name}__bnfold_b"
                consts[wname] = (w * s_f[:, None]).astype(np.float32)
                consts[bname] = (c + b_f @ w).astype(np.float32)
                nxt.inputs = [nxt.inputs[0], wname, bname]
                nxt.attrs = {"transB": 0}
                # The BN becomes a no-op: rewire its consumer to its input.
                chain[1].inputs = [bn.inputs[0] if i == bn.outputs[0] else i for i in chain[1].inputs]
                removed.add(id(bn))
                rewrites.append(f"BatchNormalization '{bn.name}' folded into the following Gemm '{nxt.name}'")
            break
        if id(bn) in removed:
            consumers = _consumers([n for n in nodes if id(n) not in removed])
    return [n for n in nodes if id(n) not in removed]


# ----------------------------------------------------------------------------
# The imported module
# ----------------------------------------------------------------------------
_TF_NAME = re.compile(r"[^A-Za-z0-9_.\-/]")


def _tf_name(name: str) -> str:
    """A valid TF op name for an ONNX tensor name (TensorSpec names are op names)."""
    s = _TF_NAME.sub("_", name)
    return s if re.match(r"[A-Za-z]", s) else f"input_{s}"


class _State:
    """Plain holder of the importer's state.

    Kept out of ``tf.Module`` attribute tracking on purpose: tracked dicts and
    lists become checkpoint dependencies, and a constant dict mutated by the
    import-time rewrites would make ``tf.saved_model.save`` (which the TFLite
    converter uses internally) refuse the module.
    """

    def __init__(self) -> None:
        self.opset = 0
        self.consts: dict[str, np.ndarray] = {}
        self.nodes: list[Node] = []
        self.import_rewrites: list[str] = []
        self.prelu_rewrite = True
        self.nhwc_outputs = False
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.input_layouts: dict[str, str] = {}
        self.onnx_input_shapes: dict[str, tuple] = {}
        self.tf_input_specs: list[tf.TensorSpec] = []
        self.rewrites: list[str] = []
        self.transposes_inserted = 0


class ImportedOnnx(tf.Module):
    """An ONNX model imported as a TensorFlow function with an NHWC graph.

    Attributes:
        input_names: ONNX graph inputs (initializers excluded), in order.
        output_names: ONNX graph outputs, in order; the keys of the result dict.
        input_layouts: Per input, ``'NHWC'`` when a 4-D NCHW ONNX input is taken
            NHWC by the TF function, else ``'AS_IS'``.
        onnx_input_shapes: Per input, the static ONNX shape used (NCHW for images).
        tf_input_specs: The ``tf.TensorSpec`` of each positional argument.
        rewrites: Human-readable list of the rewrites applied (BN folds, PReLU
            rewrites, explicit pads, runtime transposes...).
        transposes_inserted: Number of data-moving transposes in the graph due
            to layout conversions, including returning a 4-D output NCHW (0 for
            YuNet and SFace, whose outputs are 2-D/3-D).
    """

    def __init__(self, model: onnx.ModelProto, *, input_shapes: dict[str, Sequence[int]] | None,
                 prelu_rewrite: bool, nhwc: bool, nhwc_outputs: bool):
        super().__init__(name="imported_onnx")
        st = _State()
        self._st = st
        graph = model.graph
        st.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if not MIN_OPSET <= st.opset <= MAX_OPSET:
            raise ConversionError(
                f"ONNX default-domain opset {st.opset} is outside the supported range "
                f"{MIN_OPSET}..{MAX_OPSET}. Fix: re-export with an opset in that range "
                "(e.g. torch.onnx.export(..., opset_version=13)).")
        st.consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        nodes = [Node.from_proto(n, i) for i, n in enumerate(graph.node)]
        outs = {o.name for o in graph.output}
        nodes = _fold_batchnorms(nodes, st.consts, outs, st.import_rewrites)
        st.nodes = _fold_batchnorms_forward(nodes, st.consts, outs, st.import_rewrites)
        st.prelu_rewrite = prelu_rewrite
        st.nhwc_outputs = nhwc_outputs

        # Old exporters list initializers as graph inputs too (SFace does): not inputs.
        inputs = [i for i in graph.input if i.name not in st.consts]
        input_shapes = dict(input_shapes or {})
        unknown = sorted(set(input_shapes) - {i.name for i in inputs})
        if unknown:
            raise ConversionError(f"input_shapes names unknown inputs {unknown}; the model's inputs are "
                                  f"{[i.name for i in inputs]}")
        st.input_names = [i.name for i in inputs]
        st.output_names = [o.name for o in graph.output]
        for inp in inputs:
            tt = inp.type.tensor_type
            dtype = tf.as_dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
            shape = self._static_shape(inp, input_shapes.get(inp.name))
            st.onnx_input_shapes[inp.name] = shape
            is_image = len(shape) == 4 and nhwc
            st.input_layouts[inp.name] = "NHWC" if is_image else "AS_IS"
            tf_shape = [shape[0], shape[2], shape[3], shape[1]] if is_image else list(shape)
            st.tf_input_specs.append(tf.TensorSpec(tf_shape, dtype, name=_tf_name(inp.name)))
        self._fn = tf.function(self._run, input_signature=st.tf_input_specs, autograph=False)
        self._concrete = self._fn.get_concrete_function()

    # Read-only views of the state (copies, so callers cannot corrupt it).
    @property
    def input_names(self) -> list[str]:
        return list(self._st.input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._st.output_names)

    @property
    def input_layouts(self) -> dict[str, str]:
        return dict(self._st.input_layouts)

    @property
    def onnx_input_shapes(self) -> dict[str, tuple]:
        return dict(self._st.onnx_input_shapes)

    @property
    def tf_input_specs(self) -> list[tf.TensorSpec]:
        return list(self._st.tf_input_specs)

    @property
    def rewrites(self) -> list[str]:
        return list(self._st.rewrites)

    @property
    def transposes_inserted(self) -> int:
        return self._st.transposes_inserted

    @staticmethod
    def _static_shape(inp: onnx.ValueInfoProto, override: Sequence[int] | None) -> tuple[int, ...]:
        dims = inp.type.tensor_type.shape.dim
        if override is not None:
            override = tuple(int(d) for d in override)
            if len(override) != len(dims) or any(d <= 0 for d in override):
                raise ConversionError(
                    f"input_shapes['{inp.name}'] = {override} must have {len(dims)} positive dims "
                    f"(ONNX layout, NCHW for images)")
            return override
        shape = []
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(1)  # dynamic batch: default 1 (on-device models run one image)
            else:
                raise ConversionError(
                    f"Input '{inp.name}' has a dynamic dimension {i} ('{d.dim_param or '?'}'). "
                    f"Fix: give static sizes (ONNX layout, NCHW for images): on the command line "
                    f"--input-shape {inp.name}:1x3xHxW (or --input-size H W for a single image input), "
                    f"in Python input_shapes={{'{inp.name}': [...]}}.")
        return tuple(shape)

    # -- tracing ------------------------------------------------------------
    def _run(self, *args: tf.Tensor) -> dict[str, tf.Tensor]:
        st = self._st
        ctx = Ctx(st.opset, prelu_rewrite=st.prelu_rewrite)
        env: dict[str, Val] = {name: onnx_ops.const(a) for name, a in st.consts.items()}
        for name, arg in zip(st.input_names, args):
            if st.input_layouts[name] == "NHWC":
                env[name] = Val(arg, NHWC_PERM)
            else:
                env[name] = onnx_ops.tensor(arg)
        for node in st.nodes:
            ins: list[Val | None] = []
            for name in node.inputs:
                if not name:
                    ins.append(None)
                elif name in env:
                    ins.append(env[name])
                else:
                    raise ConversionError(f"{node.label()}: input '{name}' is not produced by any "
                                          "earlier node (the graph is not topologically sorted?)")
            outs = self._convert_node(ctx, node, ins)
            for name, v in zip(node.outputs, outs):
                if name:
                    env[name] = v
        result = {}
        for name in st.output_names:
            if name not in env:
                raise ConversionError(f"Graph output '{name}' is not produced by any node")
            v = env[name]
            if v.rank == 4 and st.nhwc_outputs:
                t = ctx.to_perm(v, NHWC_PERM, f"output '{name}' returned NHWC")
            else:
                t = ctx.to_onnx(v, f"output '{name}' returned in ONNX layout")
            result[name] = tf.identity(t, name=_tf_name(name))
        # Recorded per trace: the module is traced once, at construction.
        st.rewrites = st.import_rewrites + ctx.rewrites
        st.transposes_inserted = ctx.transposes
        return result

    def _convert_node(self, ctx: Ctx, node: Node, ins: list[Val | None]) -> list[Val]:
        fn = onnx_ops.HANDLERS[node.op_type]
        if node.op_type == "Dropout" and len(node.outputs) > 1 and node.outputs[1]:
            raise ConversionError(f"{node.label()}: the mask output of Dropout is not supported")
        try:
            if all(v is None or v.is_const for v in ins):
                # Constant subgraph: evaluate now, eagerly, outside the traced graph.
                ctx.folding = True
                try:
                    with tf.init_scope():
                        outs = fn(ctx, node, ins)
                        return [onnx_ops.const(np.asarray(ctx.to_onnx(v, "fold"))) for v in outs]
                finally:
                    ctx.folding = False
            return fn(ctx, node, ins)
        except ConversionError:
            raise
        except Exception as e:  # a handler bug or an unusual attribute combination
            shapes = [None if v is None else v.shape for v in ins]
            raise ConversionError(f"Could not convert {node.label()} (input shapes {shapes}): "
                                  f"{type(e).__name__}: {e}") from e

    # -- public API ---------------------------------------------------------
    def __call__(self, *inputs: Any) -> dict[str, tf.Tensor]:
        """Run the imported model.

        Args:
            *inputs: One array per ONNX input, in :attr:`input_names` order, shaped
                like :attr:`tf_input_specs` (NHWC for 4-D image inputs).

        Returns:
            Outputs keyed by ONNX output name, with onnxruntime's shapes.
        """
        return self._fn(*inputs)

    def concrete_function(self) -> tf.types.experimental.ConcreteFunction:
        """The traced function, e.g. for ``TFLiteConverter.from_concrete_functions``."""
        return self._concrete

    def save(self, saved_model_dir: str | os.PathLike) -> None:
        """Save as a SavedModel whose ``serving_default`` signature is this function."""
        tf.saved_model.save(self, os.fspath(saved_model_dir), signatures={"serving_default": self._concrete})


def import_onnx(model: str | os.PathLike | onnx.ModelProto, *,
                input_shapes: dict[str, Sequence[int]] | None = None,
                prelu_rewrite: bool = True, nhwc: bool = True, nhwc_outputs: bool = False) -> ImportedOnnx:
    """Import an ONNX model as an NHWC TensorFlow function.

    Args:
        model: Path to an ``.onnx`` file, or a loaded ``onnx.ModelProto``.
        input_shapes: Static ONNX-layout (NCHW) shapes per input name, overriding
            the model's; dynamic batch dims default to 1, other dynamic dims must
            be given here.
        prelu_rewrite: Replace PRelu by an exact identity made of ops XNNPACK
            runs in int8: ``x + relu((α-1)·x)`` (MUL with fused RELU + ADD), or
            ``x + (1-α)·relu(-x)`` when some α > 1, or LEAKY_RELU for a single
            slope; the per-channel constant is stored ``[1,1,W,C]`` (same values,
            fewer XNNPACK broadcast calls). XNNPACK, TFLite's default CPU backend,
            does not run PRELU in int8: naive int8 SFace runs 2-5x slower than
            float, rewritten ~0.45x float (see ``onnx_ops._prelu``). Exact in
            float; turn off only to compare.
        nhwc: Take 4-D inputs NHWC (the TFLite/camera convention). With False the
            function takes ONNX's NCHW and transposes once at the input (counted
            in ``transposes_inserted``).
        nhwc_outputs: Return 4-D outputs NHWC instead of ONNX's NCHW.

    Returns:
        The imported model; call it, convert its :meth:`~ImportedOnnx.concrete_function`
        or :meth:`~ImportedOnnx.save` it.

    Raises:
        ConversionError: The model uses unsupported ops (all are listed), an
            unsupported attribute combination, dynamic shapes, or an opset outside
            7..18.
        ModelNotFoundError: ``model`` is a path that does not exist.
    """
    if not isinstance(model, onnx.ModelProto):
        path = os.fspath(model)
        if not os.path.isfile(path):
            from edgelite.errors import ModelNotFoundError

            raise ModelNotFoundError(f"ONNX model not found: {path!r}")
        try:
            model = onnx.load(path)
        except Exception as e:
            raise ConversionError(f"Could not read ONNX model {path!r}: {e}") from e
    # Shape-only subgraphs (anchor grids...) with ops we do not convert fold to constants first;
    # what is left unsupported is refused with node names (no TensorFlow work done yet).
    model, folded = onnx_fold.check_supported(model, input_shapes)
    imported = ImportedOnnx(model, input_shapes=input_shapes, prelu_rewrite=prelu_rewrite, nhwc=nhwc,
                        nhwc_outputs=nhwc_outputs)
    if folded:
        imported._st.rewrites = [f"constant-folded before import (only computes constants once the input shape "
                                 f"is fixed): {x}" for x in folded] + imported._st.rewrites
    return imported
