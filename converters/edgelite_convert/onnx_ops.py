"""Op handlers of the ONNX importer (see :mod:`edgelite_convert.onnx_import`).

Every handler turns one ONNX node into TensorFlow ops while the importer's
``tf.function`` is being traced. Values flow between handlers as :class:`Val`
objects which carry, besides the tensor, the *layout* the tensor is stored in:

* ``perm``: the stored tensor is ``np.transpose(onnx_tensor, perm)``. 4-D image
  tensors (NCHW in ONNX) are stored NHWC, ``perm == (0, 2, 3, 1)``, so that
  ``tf.nn.conv2d`` & co. run in their native layout and the TFLite converter emits
  ``CONV_2D`` without ``TRANSPOSE`` ops around it. An ONNX ``Transpose`` only
  changes ``perm`` (no runtime op): YuNet's ``Transpose(0,2,3,1)`` of an NCHW head
  therefore becomes free, because the stored NHWC tensor *is* the transposed one.
* ``colperm``: for 2-D ``[N, F]`` tensors made by flattening an NHWC tensor, the
  features are stored in HWC order while ONNX has them in CHW order;
  ``stored[:, j] == onnx[:, colperm[j]]``. A following ``Gemm``/``MatMul`` with
  constant weights absorbs it by permuting the weight rows once at import, so no
  runtime transpose is needed (SFace's ``Flatten -> Gemm``).

Layout-sensitive ops that cannot work on the stored layout convert with
:meth:`Ctx.to_onnx`/:meth:`Ctx.to_perm`; a conversion that really moves data is
counted in ``Ctx.transposes`` and described in ``Ctx.rewrites`` (the goal is zero
for the zoo models). A permutation that only moves size-1 axes is a ``reshape``
and is not counted.

Constants (initializers, ``Constant`` nodes and every node whose inputs are all
constant) are ``numpy`` arrays in ONNX layout; the importer folds constant nodes by
running the same handlers eagerly, so shape arithmetic (``Shape -> Gather ->
Concat -> Reshape``) needs no special code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from edgelite.errors import ConversionError

from .prelu import prelu_identity


class _LazyTF:
    """``tensorflow``, imported on first use.

    The handler registry (:data:`HANDLERS`, :data:`SUPPORTED_OPS`) is read by the
    TensorFlow-free pre-checks (:mod:`edgelite_convert.onnx_fold`), which must refuse
    an unconvertible model without paying TensorFlow's ~7 s import and log lines.
    Handlers only run while tracing, when TensorFlow is needed anyway.
    """

    def __getattr__(self, name: str) -> Any:
        import tensorflow

        globals()["tf"] = tensorflow
        return getattr(tensorflow, name)


tf: Any = _LazyTF()

#: ``perm`` of a 4-D NCHW ONNX tensor stored NHWC.
NHWC_PERM = (0, 2, 3, 1)


# ----------------------------------------------------------------------------
# Layout bookkeeping
# ----------------------------------------------------------------------------
def inverse_perm(perm: Sequence[int]) -> tuple[int, ...]:
    """Return the inverse of a permutation."""
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def identity_perm(rank: int) -> tuple[int, ...]:
    """Return ``(0, 1, ..., rank - 1)``."""
    return tuple(range(rank))


def is_identity(perm: Sequence[int]) -> bool:
    """Whether ``perm`` leaves every axis in place."""
    return all(i == p for i, p in enumerate(perm))


def moves_data(shape: Sequence[int], perm: Sequence[int]) -> bool:
    """Whether transposing a tensor of ``shape`` by ``perm`` changes memory order.

    It does not when the axes longer than 1 keep their relative order: then the
    transpose is a reshape, which TFLite executes for free.
    """
    big = [p for p in perm if shape[p] != 1]
    return big != sorted(big)


def batch_reshape(t: Any, target: Sequence[int]) -> Any:
    """``tf.reshape`` that keeps a leading batch dimension polymorphic.

    The importer traces with a static batch (1 by default), so every target shape
    it computes holds that batch size. When a reshape keeps the leading dimension
    (``target[0] == shape[0]`` and the rest has the same size), the leading
    dimension is written ``-1``: identical at the traced batch, and the converted
    model can then be resized to a batch of N (``RESHAPE`` targets with a baked
    batch of 1 make XNNPACK fail to reshape on ``allocate_tensors``). Other
    reshapes (that fold the batch into another axis) stay static.
    """
    target = [int(d) for d in target]
    if isinstance(t, np.ndarray):
        return t.reshape(target)
    shape = [int(d) for d in t.shape]
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        target[target.index(-1)] = int(np.prod(shape)) // max(known, 1)
    if (shape and target and target[0] == shape[0]
            and int(np.prod(target[1:])) == int(np.prod(shape[1:]))):
        target = [-1] + target[1:]
    return tf.reshape(t, target)


@dataclass
class Val:
    """A value flowing between handlers: a tensor or constant plus its layout.

    Attributes:
        t: ``np.ndarray`` for constants (always ONNX layout), else a ``tf.Tensor``.
        perm: ``t == transpose(onnx_value, perm)``.
        colperm: For 2-D values only: ``t[:, j] == onnx_value[:, colperm[j]]``.
    """

    t: Any
    perm: tuple[int, ...]
    colperm: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        """Whether the value is a numpy constant."""
        return isinstance(self.t, np.ndarray)

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Static shape of the stored tensor."""
        if self.is_const:
            return tuple(self.t.shape)
        return tuple(int(d) for d in self.t.shape)

    @property
    def rank(self) -> int:
        """Rank of the value (same in ONNX and stored layout)."""
        return len(self.perm)

    @property
    def shape(self) -> tuple[int, ...]:
        """Static shape of the value in ONNX layout."""
        stored = self.stored_shape
        out = [0] * len(stored)
        for i, p in enumerate(self.perm):
            out[p] = stored[i]
        return tuple(out)

    @property
    def dtype(self) -> tf.DType:
        """TensorFlow dtype of the value."""
        return tf.as_dtype(self.t.dtype)


def const(a: Any) -> Val:
    """Wrap a numpy-convertible value as a constant :class:`Val`."""
    a = np.asarray(a)
    return Val(a, identity_perm(a.ndim))


def tensor(t: Any, perm: Sequence[int] | None = None, colperm: np.ndarray | None = None) -> Val:
    """Wrap a tensor as a :class:`Val` (``perm`` defaults to identity)."""
    rank = len(t.shape)
    return Val(t, tuple(perm) if perm is not None else identity_perm(rank), colperm)


@dataclass
class Node:
    """An ONNX node in the importer's own (rewritable) representation."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""

    @classmethod
    def from_proto(cls, proto: onnx.NodeProto, index: int) -> "Node":
        """Decode attributes (bytes -> str, tensors -> numpy) of a ``NodeProto``."""
        attrs: dict[str, Any] = {}
        for a in proto.attribute:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode() for x in v]
            elif isinstance(v, onnx.TensorProto):
                v = numpy_helper.to_array(v)
            attrs[a.name] = v
        name = proto.name or f"{proto.op_type}_{index}"
        return cls(proto.op_type, name, list(proto.input), list(proto.output), attrs,
                   proto.domain if proto.domain not in ("", "ai.onnx") else "")

    def label(self) -> str:
        """``"Conv 'conv1'"``: how messages name a node."""
        return f"{self.op_type} '{self.name}'"


class Ctx:
    """State shared by the handlers during one trace.

    Attributes:
        opset: The model's default-domain opset version.
        prelu_rewrite: See :func:`edgelite_convert.onnx_import.import_onnx`.
        folding: True while a constant node is evaluated eagerly (nothing is
            recorded then: the work happens at import, not at run time).
        rewrites: Human-readable list of rewrites applied.
        transposes: Number of data-moving transposes inserted at run time.
    """

    def __init__(self, opset: int, *, prelu_rewrite: bool = True):
        self.opset = opset
        self.prelu_rewrite = prelu_rewrite
        self.folding = False
        self.rewrites: list[str] = []
        self.transposes = 0

    def note(self, msg: str) -> None:
        """Record a rewrite (ignored while folding constants)."""
        if not self.folding:
            self.rewrites.append(msg)

    def note_transpose(self, reason: str) -> None:
        """Record a runtime transpose (ignored while folding constants)."""
        if not self.folding:
            self.transposes += 1
            self.rewrites.append(f"runtime transpose inserted: {reason}")

    # -- layout conversions -------------------------------------------------
    def permute(self, t: Any, r: Sequence[int], reason: str) -> Any:
        """Return ``transpose(t, r)``, as a reshape when no data moves."""
        r = tuple(r)
        if is_identity(r):
            return t
        if isinstance(t, np.ndarray):
            return np.transpose(t, r)
        shape = [int(d) for d in t.shape]
        if not moves_data(shape, r):
            return batch_reshape(t, [shape[p] for p in r]) if r[0] == 0 else tf.reshape(t, [shape[p] for p in r])
        self.note_transpose(reason)
        return tf.transpose(t, r)

    def to_perm(self, v: Val, perm: Sequence[int], reason: str) -> Any:
        """Return ``v`` stored with layout ``perm`` (numpy stays numpy)."""
        perm = tuple(perm)
        t = self.drop_colperm(v, reason)
        inv = inverse_perm(v.perm)
        return self.permute(t, [inv[p] for p in perm], reason)

    def to_onnx(self, v: Val, reason: str) -> Any:
        """Return ``v`` in ONNX layout (numpy stays numpy)."""
        return self.to_perm(v, identity_perm(v.rank), reason)

    def drop_colperm(self, v: Val, reason: str) -> Any:
        """Return ``v.t`` with any ``colperm`` undone (a runtime gather)."""
        if v.colperm is None:
            return v.t
        self.note_transpose(f"{reason} (feature order of a flattened NHWC tensor)")
        return tf.gather(v.t, np.argsort(v.colperm), axis=-1)

    def const_in(self, node: Node, ins: Sequence[Val | None], i: int, what: str) -> np.ndarray:
        """Return input ``i`` of ``node``, which must be a constant."""
        if i >= len(ins) or ins[i] is None:
            raise ConversionError(f"{node.label()}: missing input {i} ({what})")
        v = ins[i]
        if not v.is_const:
            raise ConversionError(
                f"{node.label()}: {what} (input '{node.inputs[i]}') must be a constant "
                "(an initializer or computable from initializers); dynamic values are "
                "not supported. Fix: export the model with static shapes/parameters.")
        return v.t


def opt_in(ins: Sequence[Val | None], i: int) -> Val | None:
    """Input ``i`` or None when absent/empty."""
    return ins[i] if i < len(ins) else None


def _np_dtype(v: Val) -> np.dtype:
    return np.dtype(v.t.dtype.as_numpy_dtype) if not v.is_const else v.t.dtype


def _match_dtype(c: np.ndarray, like: Val) -> np.ndarray:
    """Cast a constant to the dtype of the runtime tensor it combines with."""
    return np.asarray(c).astype(_np_dtype(like), copy=False)


def _layout_const(ctx: Ctx, c: np.ndarray, like: Val) -> np.ndarray:
    """Lay out an ONNX-layout constant so it broadcasts against ``like``'s stored tensor.

    Constants shaped for NCHW (``[C,1,1]``, ``[1,C,1,1]``) become ``[1,1,1,C]``
    for an NHWC tensor; a ``colperm`` is applied to the last axis.
    """
    c = np.asarray(c)
    c = c.reshape((1,) * (like.rank - c.ndim) + c.shape)
    c = np.transpose(c, like.perm)
    if like.colperm is not None and c.shape[-1] != 1:
        c = c[..., like.colperm]
    return c


# ----------------------------------------------------------------------------
# Elementwise
# ----------------------------------------------------------------------------
Handler = Callable[[Ctx, Node, list], list]
HANDLERS: dict[str, Handler] = {}


def handler(*op_types: str) -> Callable[[Handler], Handler]:
    """Register a handler for one or more ONNX op types."""

    def deco(fn: Handler) -> Handler:
        for op in op_types:
            HANDLERS[op] = fn
        return fn

    return deco


def _unary(op_type: str, fn: Callable[[Any, dict], Any]) -> None:
    def h(ctx: Ctx, node: Node, ins: list) -> list:
        v = ins[0]
        return [Val(fn(v.t, node.attrs), v.perm, v.colperm)]

    HANDLERS[op_type] = h


def _hard_sigmoid(x: Any, alpha: float, beta: float) -> Any:
    # clip(y, 0, 1) == relu6(6y) / 6: RELU6 is fused/delegated everywhere in int8,
    # MINIMUM/MAXIMUM pairs are not.
    return tf.nn.relu6(x * (6.0 * alpha) + 6.0 * beta) * (1.0 / 6.0)


_unary("Relu", lambda x, a: tf.nn.relu(x))
_unary("Sigmoid", lambda x, a: tf.math.sigmoid(x))
_unary("Tanh", lambda x, a: tf.math.tanh(x))
_unary("LeakyRelu", lambda x, a: tf.nn.leaky_relu(x, alpha=float(a.get("alpha", 0.01))))
_unary("Elu", lambda x, a: tf.nn.elu(x) if float(a.get("alpha", 1.0)) == 1.0
       else tf.where(x > 0, x, float(a.get("alpha", 1.0)) * (tf.exp(x) - 1.0)))
_unary("HardSigmoid", lambda x, a: _hard_sigmoid(x, float(a.get("alpha", 0.2)),
                                                 float(a.get("beta", 0.5))))
# x * relu6(x + 3) / 6 is the pattern the TFLite converter fuses into HARD_SWISH.
_unary("HardSwish", lambda x, a: x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0))
_unary("Neg", lambda x, a: tf.negative(x))
_unary("Abs", lambda x, a: tf.abs(x))
_unary("Exp", lambda x, a: tf.exp(x))
_unary("Log", lambda x, a: tf.math.log(x))
_unary("Sqrt", lambda x, a: tf.sqrt(x))
_unary("Reciprocal", lambda x, a: tf.math.reciprocal(x))
_unary("Floor", lambda x, a: tf.floor(x))
_unary("Ceil", lambda x, a: tf.math.ceil(x))
_unary("Softplus", lambda x, a: tf.nn.softplus(x))
_unary("Identity", lambda x, a: x)
_unary("Dropout", lambda x, a: x)  # inference: identity (a mask output is refused below)


@handler("Clip")
def _clip(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    if ctx.opset < 11 or "min" in node.attrs or "max" in node.attrs:
        lo = node.attrs.get("min", -np.inf)
        hi = node.attrs.get("max", np.inf)
    else:
        lo_v, hi_v = opt_in(ins, 1), opt_in(ins, 2)
        lo = ctx.const_in(node, ins, 1, "min").item() if lo_v is not None else -np.inf
        hi = ctx.const_in(node, ins, 2, "max").item() if hi_v is not None else np.inf
    x = v.t
    if lo == 0 and hi == 6:
        y = tf.nn.relu6(x)
    elif lo == 0 and hi == np.inf:
        y = tf.nn.relu(x)
    else:
        y = x
        dt = _np_dtype(v)
        if lo != -np.inf:
            y = tf.maximum(y, np.asarray(lo, dt))
        if hi != np.inf:
            y = tf.minimum(y, np.asarray(hi, dt))
    return [Val(y, v.perm, v.colperm)]


def _binary_align(ctx: Ctx, node: Node, a: Val, b: Val) -> tuple[Any, Any, tuple, Any]:
    """Bring two broadcastable values to one stored layout.

    Returns ``(ta, tb, perm, colperm)`` such that ``op(ta, tb)`` is the result
    stored with ``perm``/``colperm``.
    """
    reason = f"{node.label()} operands in different layouts"
    if a.is_const and b.is_const:
        return a.t, b.t, identity_perm(max(a.rank, b.rank)), None
    if b.is_const or a.is_const:
        var, c = (a, b) if b.is_const else (b, a)
        if c.rank <= var.rank:
            ct = _match_dtype(_layout_const(ctx, c.t, var), var)
            ta, tb = (var.t, ct) if b.is_const else (ct, var.t)
            return ta, tb, var.perm, var.colperm
        tv = ctx.to_onnx(var, reason)
        ct = _match_dtype(c.t, var)
        ta, tb = (tv, ct) if b.is_const else (ct, tv)
        return ta, tb, identity_perm(c.rank), None
    # Two runtime tensors: lay the lower-rank one out like the higher-rank one.
    lead, other = (a, b) if (a.rank, not is_identity(a.perm)) >= (b.rank, not is_identity(b.perm)) else (b, a)
    if a.colperm is not None or b.colperm is not None:
        if (a.colperm is not None and b.colperm is not None and a.rank == b.rank
                and np.array_equal(a.colperm, b.colperm)):
            return a.t, b.t, a.perm, a.colperm
        ta, tb = ctx.to_onnx(a, reason), ctx.to_onnx(b, reason)
        return ta, tb, identity_perm(max(a.rank, b.rank)), None
    if other.rank < lead.rank:
        o = ctx.to_onnx(other, reason)
        o_shape = (1,) * (lead.rank - other.rank) + other.shape
        o = tf.reshape(o, o_shape)
        o_val = Val(o, identity_perm(lead.rank))
    else:
        o_val = other
    to = ctx.to_perm(o_val, lead.perm, reason)
    ta, tb = (lead.t, to) if lead is a else (to, lead.t)
    return ta, tb, lead.perm, None


def _binary(op_type: str, fn: Callable[[Any, Any], Any]) -> None:
    def h(ctx: Ctx, node: Node, ins: list) -> list:
        a, b = ins[0], ins[1]
        if op_type == "Div" and b.is_const and not a.is_const and a.dtype.is_floating:
            # x * (1/c): MUL is delegated in int8 everywhere, DIV is not.
            b = const((1.0 / b.t.astype(np.float64)).astype(b.t.dtype))
            ta, tb, perm, colperm = _binary_align(ctx, node, a, b)
            return [Val(tf.multiply(ta, tb), perm, colperm)]
        if (op_type == "Div" and not b.is_const and not a.is_const and a.dtype.is_floating
                and getattr(getattr(b.t, "op", None), "type", None) == "Sqrt"):
            # x / sqrt(v) (LayerNorm exported by PyTorch < opset 17): x * rsqrt(v). RSQRT and MUL
            # have int8 kernels, DIV by a tensor has none; the orphaned SQRT is pruned.
            ctx.note(f"{node.label()}: x / sqrt(v) -> x * rsqrt(v) (int8 kernels)")
            b = Val(tf.math.rsqrt(b.t.op.inputs[0]), b.perm, b.colperm)
            ta, tb, perm, colperm = _binary_align(ctx, node, a, b)
            return [Val(tf.multiply(ta, tb), perm, colperm)]
        if op_type == "Pow" and b.is_const and b.t.size == 1 and not a.is_const and a.dtype.is_floating:
            p_ = float(b.t.reshape(-1)[0])
            powers = {1.0: lambda x: x, 2.0: lambda x: x * x, 3.0: lambda x: x * x * x,
                      0.5: tf.sqrt, -0.5: tf.math.rsqrt}
            if p_ in powers:
                # POW has no int8 kernel; x*x (MUL) and RSQRT/SQRT do.
                ctx.note(f"{node.label()}: x ** {p_:g} -> " + {1.0: "x", 2.0: "x*x", 3.0: "x*x*x",
                                                                 0.5: "sqrt(x)", -0.5: "rsqrt(x)"}[p_])
                return [Val(powers[p_](a.t), a.perm, a.colperm)]
        ta, tb, perm, colperm = _binary_align(ctx, node, a, b)
        return [Val(fn(ta, tb), perm, colperm)]

    HANDLERS[op_type] = h


def _div(x: Any, y: Any) -> Any:
    if tf.as_dtype(x.dtype).is_integer:
        return tf.math.truncatediv(x, y)  # ONNX integer Div truncates like C
    return tf.math.divide(x, y)


_binary("Add", lambda x, y: tf.add(x, y))
_binary("Sub", lambda x, y: tf.subtract(x, y))
_binary("Mul", lambda x, y: tf.multiply(x, y))
_binary("Div", _div)
_binary("Pow", lambda x, y: tf.pow(x, y))


@handler("Max", "Min", "Sum", "Mean")
def _variadic(ctx: Ctx, node: Node, ins: list) -> list:
    fn = {"Max": tf.maximum, "Min": tf.minimum, "Sum": tf.add, "Mean": tf.add}[node.op_type]
    acc = ins[0]
    for v in ins[1:]:
        ta, tb, perm, colperm = _binary_align(ctx, node, acc, v)
        acc = Val(fn(ta, tb), perm, colperm)
    if node.op_type == "Mean":
        acc = Val(acc.t * (1.0 / len(ins)), acc.perm, acc.colperm)
    return [acc]


# ----------------------------------------------------------------------------
# PRelu
# ----------------------------------------------------------------------------
def _prelu_naive(x: Any, alpha: np.ndarray) -> Any:
    """Keras' PReLU formula, which the TFLite converter fuses into one PRELU op.

    The converter's pattern only matches a slope of rank ``rank(x) - 1`` (Keras'
    ``(H, W, C)`` layout), so the leading batch axis of the slope is dropped.
    """
    if alpha.ndim == len(x.shape) and alpha.shape[0] == 1:
        alpha = alpha.reshape(alpha.shape[1:])
    return tf.nn.relu(x) + tf.nn.relu(-x) * (-alpha)


@handler("PRelu")
def _prelu(ctx: Ctx, node: Node, ins: list) -> list:
    """PRelu, rewritten (``prelu_rewrite``) into ops XNNPACK runs in int8.

    The forms (one place for both sources): :func:`edgelite_convert.prelu.prelu_identity`.

    Forms rejected after measuring:

    * ``max(x, α·x)`` (``MUL`` + ``MAXIMUM``): fast, but int8 ``MAXIMUM`` forces
      its operands and result to share one scale, and the TFLite quantizer then
      gives the conv output the PReLU *output* range, clamping the negative
      inputs: SFace's embedding cosine to float dropped to 0.93.
    * ``x + (α-1)·min(x, 0)`` (``MINIMUM`` + ``MUL`` + ``ADD``): correct (the
      shared scale only widens ``min``'s range) but one op more.
    * ``relu(x)·(1-α) + α·x``: its standalone ``RELU`` is not delegated.

    Measured on SFace (27 per-channel PReLUs, 2 of them with some α > 1),
    full-int8 with 16 ORL faces for calibration, ai_edge_litert 2.3, XNNPACK,
    num_threads=2, x86-64 (2 shared cores), median of 3x30 invokes; latency as a
    ratio to the float model measured in the same run (absolute times varied 2x
    with background load: float 8.4-28 ms), cosine = worst over 8 other faces of
    the int8 embedding vs onnxruntime's:

    ============================  ==========  ==========
    int8 form                     vs float    min cosine
    ============================  ==========  ==========
    naive PRELU                   2.2x-5.0x   0.989
    ``relu(x)·(1-α) + α·x``       2.9x        0.974
    ``max(x, α·x)``               0.50x       0.933
    ``x + (α-1)·min(x, 0)``       0.55x       0.985
    **chosen** (above)            0.44-0.47x  0.987
    ============================  ==========  ==========

    Measured later (ai_edge_litert 2.3.0, same machine; latency from
    ``bench_prelu.py --onnx <SFace> --threads 1 --clock thread``: CPU time of the
    invoking thread, median of 21 interleaved rounds, relative to the form above;
    cosine = mean / min of the int8 embedding vs float TFLite on 200 held-out crops,
    ORL s21..s40, models calibrated like the zoo's):

    ================================================  ==========  ===============
    int8 form                                         latency     cosine
    ================================================  ==========  ===============
    above, constant ``[1,1,1,C]`` (before)             1.00        0.9841 / 0.9679
    **chosen**: same, constant ``[1,1,W,C]`` at 112²   0.986       0.9841 / 0.9679
    ``MUL`` -> 1x1 ``DEPTHWISE_CONV_2D``               0.999       0.9846 / 0.9735
    every PReLU deleted (floor, not a valid model)     0.67        -
    ================================================  ==========  ===============

    ``device_tests/bench_prelu.py`` re-measures these forms, naive and float.
    """
    v = ins[0]
    slope = opt_in(ins, 1)
    if slope is None:
        raise ConversionError(f"{node.label()}: missing slope input")
    if not slope.is_const:
        # Runtime slope: the generic identity (no constant to lay out).
        ta, tb, perm, colperm = _binary_align(ctx, node, v, slope)
        return [Val(ta + (tb - 1.0) * tf.minimum(ta, 0.0), perm, colperm)]
    alpha_onnx = slope.t.astype(np.float32)
    if alpha_onnx.ndim > v.rank:
        raise ConversionError(f"{node.label()}: slope rank {alpha_onnx.ndim} > input rank {v.rank}")
    x = v.t
    alpha = _match_dtype(_layout_const(ctx, alpha_onnx, v), v)
    lo, hi = float(alpha_onnx.min()), float(alpha_onnx.max())
    desc = f"PRelu '{node.name}' ({alpha_onnx.size} ch, α∈[{lo:.3g},{hi:.3g}])"
    if not ctx.prelu_rewrite:
        y = _prelu_naive(x, alpha)
    else:
        y, form = prelu_identity(x, alpha, lo, hi, relu=tf.nn.relu,
                                 leaky_relu=lambda t, a: tf.nn.leaky_relu(t, alpha=a))
        ctx.note(f"{desc} -> {form}")
    return [Val(y, v.perm, v.colperm)]


# ----------------------------------------------------------------------------
# Convolution, pooling
# ----------------------------------------------------------------------------
def _ints(node: Node, name: str, n: int, default: int) -> list[int]:
    v = node.attrs.get(name)
    return [int(x) for x in v] if v is not None else [default] * n


@dataclass
class _Axis:
    """Geometry of one spatial axis of a window op (conv / pool)."""

    size: int
    kernel: int
    stride: int
    dilation: int
    pad_begin: int
    pad_end: int  # as given by the model
    out: int
    eff_end: int  # end padding the last window actually reaches

    @property
    def keff(self) -> int:
        return (self.kernel - 1) * self.dilation + 1

    def same(self) -> tuple[int, int, int]:
        """TF 'SAME' geometry: ``(out, pad_begin, pad_end)``."""
        out = -(-self.size // self.stride)
        total = max((out - 1) * self.stride + self.keff - self.size, 0)
        return out, total // 2, total - total // 2

    def is_same(self) -> bool:
        out, b, _ = self.same()
        return self.out == out and self.pad_begin == b

    def is_valid(self) -> bool:
        return self.pad_begin == 0 and self.eff_end <= 0


def _window_axes(node: Node, in_hw: Sequence[int], kernel: Sequence[int], ceil_mode: bool = False
                 ) -> list[_Axis]:
    """Resolve ONNX pads/auto_pad/strides/dilations into per-axis geometry."""
    n = len(kernel)
    strides = _ints(node, "strides", n, 1)
    dil = _ints(node, "dilations", n, 1)
    pads = _ints(node, "pads", 2 * n, 0)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    axes = []
    for i in range(n):
        size, k, s, d = in_hw[i], kernel[i], strides[i], dil[i]
        keff = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-size // s)
            total = max((out - 1) * s + keff - size, 0)
            small = total // 2
            pb = small if auto_pad == "SAME_UPPER" else total - small
            pe = total - pb
        elif auto_pad == "VALID":
            pb = pe = 0
        elif auto_pad in ("NOTSET", ""):
            pb, pe = pads[i], pads[i + n]
        else:
            raise ConversionError(f"{node.label()}: unknown auto_pad {auto_pad!r}")
        span = size + pb + pe - keff
        if ceil_mode:
            out = -(-span // s) + 1
            # The last window must start inside the input or the begin padding.
            if (out - 1) * s >= size + pb:
                out -= 1
        else:
            out = span // s + 1
        eff_end = (out - 1) * s + keff - size - pb
        axes.append(_Axis(size, k, s, d, pb, pe, out, eff_end))
    return axes


def _edge_pad(x: Any, axis: int, before: int, after: int) -> Any:
    """Pad by repeating the border slices (ONNX Pad mode 'edge').

    Built from SLICE + CONCATENATION, which every backend runs in int8; it also
    pads MaxPool exactly (a replicated border value never beats the real one in
    the same window) without the -inf that would wreck int8 calibration.
    """
    if before <= 0 and after <= 0:
        return x
    n = int(x.shape[axis])
    parts = []
    if before > 0:
        parts.extend([_slice_axis(x, axis, 0, 1)] * before)
    parts.append(x)
    if after > 0:
        parts.extend([_slice_axis(x, axis, n - 1, n)] * after)
    return tf.concat(parts, axis=axis)


def _slice_axis(x: Any, axis: int, start: int, stop: int) -> Any:
    # Python slicing -> STRIDED_SLICE with unit strides and begin/end masks on the other axes:
    # XNNPACK runs it in int8 (not SLICE), and no other axis size (the batch) is baked in.
    sl = [slice(None)] * len(x.shape)
    sl[axis] = slice(start, stop)
    return x[tuple(sl)]


def _pad_nhwc(x: Any, axes: Sequence[_Axis], mode: str = "zero") -> Any:
    """Apply the padding of ``axes`` (H, W) to an NHWC tensor explicitly."""
    (ah, aw) = axes
    ph = (max(ah.pad_begin, 0), max(ah.eff_end, 0))
    pw = (max(aw.pad_begin, 0), max(aw.eff_end, 0))
    if mode == "edge":
        x = _edge_pad(x, 1, *ph)
        return _edge_pad(x, 2, *pw)
    if ph == (0, 0) and pw == (0, 0):
        return x
    return tf.pad(x, [[0, 0], list(ph), list(pw), [0, 0]])


def _choose_padding(ctx: Ctx, node: Node, x: Any, axes: Sequence[_Axis], pad_mode: str = "zero"
                    ) -> tuple[Any, str]:
    """Pick TF 'SAME'/'VALID' when they reproduce ONNX's pads, else pad explicitly."""
    if all(a.is_valid() for a in axes):
        return x, "VALID"
    if all(a.is_same() for a in axes):
        return x, "SAME"
    ctx.note(f"{node.label()}: pads {[a.pad_begin for a in axes]}/{[a.eff_end for a in axes]} "
             f"have no SAME/VALID equivalent -> explicit {'PAD' if pad_mode == 'zero' else 'edge pad'}")
    return _pad_nhwc(x, axes, pad_mode), "VALID"


def _nhwc_input(ctx: Ctx, node: Node, v: Val) -> Any:
    if v.rank != 4:
        raise ConversionError(
            f"{node.label()}: only 2-D spatial ops on 4-D NCHW tensors are supported; "
            f"got rank {v.rank}. Fix: export 1-D/3-D ops as 2-D ones.")
    t = ctx.to_perm(v, NHWC_PERM, f"{node.label()} needs NHWC")
    if isinstance(t, np.ndarray):
        t = tf.constant(t)
    return t


@handler("Conv")
def _conv(ctx: Ctx, node: Node, ins: list) -> list:
    x = _nhwc_input(ctx, node, ins[0])
    w = ctx.const_in(node, ins, 1, "weights").astype(np.float32)
    bias_v = opt_in(ins, 2)
    bias = ctx.const_in(node, ins, 2, "bias") if bias_v is not None else None
    if w.ndim != 4:
        raise ConversionError(f"{node.label()}: only 2-D convolutions are supported (weights {w.shape})")
    group = int(node.attrs.get("group", 1))
    m, cin_g, kh, kw = w.shape
    c = int(x.shape[-1])
    if cin_g * group != c:
        raise ConversionError(f"{node.label()}: weights {w.shape} with group={group} do not match {c} input channels")
    axes = _window_axes(node, [int(x.shape[1]), int(x.shape[2])], [kh, kw])
    strides = [1, axes[0].stride, axes[1].stride, 1]
    dil = [1, axes[0].dilation, axes[1].dilation, 1]
    x_unpadded = x
    x, padding = _choose_padding(ctx, node, x, axes)
    w = w.astype(_np_dtype(tensor(x)))
    s0 = min(axes[0].stride, axes[1].stride)
    if (group == c and cin_g == 1 and axes[0].stride != axes[1].stride
            and axes[0].stride % s0 == 0 and axes[1].stride % s0 == 0
            and all(a.pad_begin >= 0 and a.eff_end >= -a.stride for a in axes)):
        # Depthwise with unequal strides (e.g. (2, 1) in text recognisers): TF's depthwise
        # kernel wants equal strides. One DEPTHWISE_CONV_2D at stride (s0, s0) on the
        # explicitly padded input, then keep every f-th row/column with RESHAPE + SLICE
        # (ops XNNPACK runs in int8) - instead of one CONV_2D per channel.
        mult = m // c
        filt = w.reshape(c, mult, kh, kw).transpose(2, 3, 0, 1)
        # pad so the stride-s0 output has exactly out * f rows/columns (no second PAD later)
        pads = [[0, 0]]
        for a in axes:
            end = max(a.eff_end, 0, (a.out * (a.stride // s0) - 1) * s0 + a.keff - a.size - a.pad_begin)
            pads.append([a.pad_begin, end])
        xp = tf.pad(x_unpadded, pads + [[0, 0]]) if any(p_ for pp in pads for p_ in pp) else x_unpadded
        y = tf.nn.depthwise_conv2d(xp, filt, [1, s0, s0, 1], "VALID", dilations=dil[1:3])
        if bias is not None:  # before subsampling, so it fuses into the DEPTHWISE_CONV_2D
            y = tf.nn.bias_add(y, bias.astype(_np_dtype(tensor(y))))
            bias = None
        for ax, a in ((1, axes[0]), (2, axes[1])):
            y = _subsample(y, ax, a.stride // s0, a.out)
        ctx.note(f"{node.label()}: depthwise conv with strides {[axes[0].stride, axes[1].stride]} -> one "
                 f"DEPTHWISE_CONV_2D at stride {s0} + subsampling (RESHAPE/SLICE)")
    elif group == 1:
        y = tf.nn.conv2d(x, w.transpose(2, 3, 1, 0), strides, padding, dilations=dil)
    elif group == c and cin_g == 1 and axes[0].stride == axes[1].stride:
        mult = m // c
        # ONNX output channel o = c * mult + j reads input channel c.
        filt = w.reshape(c, mult, kh, kw).transpose(2, 3, 0, 1)
        y = tf.nn.depthwise_conv2d(x, filt, strides, padding, dilations=dil[1:3])
    else:
        # Grouped conv as split + convs + concat: TFLite's grouped CONV_2D is not
        # supported by XNNPACK or most delegates, the split form is.
        xs = tf.split(x, group, axis=-1)
        mg = m // group
        ys = [tf.nn.conv2d(xs[g], w[g * mg:(g + 1) * mg].transpose(2, 3, 1, 0), strides, padding, dilations=dil)
              for g in range(group)]
        y = tf.concat(ys, axis=-1)
        ctx.note(f"{node.label()}: group={group} conv -> {group} CONV_2D + CONCATENATION")
    if bias is not None:
        y = tf.nn.bias_add(y, bias.astype(_np_dtype(tensor(y))))
    return [tensor(y, NHWC_PERM)]


def _subsample(y: Any, axis: int, f: int, n_out: int) -> Any:
    """Keep elements ``0, f, 2f, ...`` (``n_out`` of them) of ``axis`` of an NHWC tensor.

    Done as (pad/slice to ``n_out * f``) -> RESHAPE to split the axis into
    ``(n_out, f)`` -> SLICE index 0 -> RESHAPE: unit-stride ops only, which XNNPACK
    runs in int8 (a strided STRIDED_SLICE it does not).
    """
    n = int(y.shape[axis])
    if f == 1:
        return y if n == n_out else _slice_axis(y, axis, 0, n_out)
    need = n_out * f
    if n < need:
        pads = [[0, 0]] * 4
        pads[axis] = [0, need - n]
        y = tf.pad(y, pads)
    elif n > need:
        y = _slice_axis(y, axis, 0, need)
    shape = [int(d) for d in y.shape]
    inner = int(np.prod(shape[axis + 1:]))
    # [N, ..., n_out, f * inner] keeps the tensor 4-D at most (XNNPACK's SLICE)
    split = shape[:axis] + [n_out, f * inner]
    y = batch_reshape(y, split)
    y = y[..., :inner]  # STRIDED_SLICE with unit strides and masks: no batch size baked in
    return batch_reshape(y, shape[:axis] + [n_out] + shape[axis + 1:])


@handler("ConvTranspose")
def _conv_transpose(ctx: Ctx, node: Node, ins: list) -> list:
    x = _nhwc_input(ctx, node, ins[0])
    w = ctx.const_in(node, ins, 1, "weights").astype(np.float32)
    bias_v = opt_in(ins, 2)
    bias = ctx.const_in(node, ins, 2, "bias") if bias_v is not None else None
    if w.ndim != 4:
        raise ConversionError(f"{node.label()}: only 2-D transposed convolutions are supported")
    group = int(node.attrs.get("group", 1))
    c, m_g, kh, kw = w.shape
    n, h, wd, _ = (int(d) for d in x.shape)
    strides = _ints(node, "strides", 2, 1)
    dil = _ints(node, "dilations", 2, 1)
    if dil != [1, 1]:
        raise ConversionError(f"{node.label()}: dilated ConvTranspose is not supported (TFLite "
                              "TRANSPOSE_CONV has no dilation). Fix: export without dilation.")
    out_pad = _ints(node, "output_padding", 2, 0)
    pads = _ints(node, "pads", 4, 0)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    full = [strides[i] * ([h, wd][i] - 1) + out_pad[i] + (kh, kw)[i] for i in range(2)]
    out_shape = node.attrs.get("output_shape")
    if out_shape is not None:
        out_shape = [int(s) for s in out_shape][-2:]
    if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = out_shape if out_shape is not None else [[h, wd][i] * strides[i] for i in range(2)]
        pads = [0] * 4
        for i in range(2):
            total = full[i] - target[i]
            # onnxruntime: SAME_UPPER puts the extra padding at the end.
            if auto_pad == "SAME_LOWER":
                pads[i], pads[i + 2] = total - total // 2, total // 2
            else:
                pads[i], pads[i + 2] = total // 2, total - total // 2
    elif auto_pad == "VALID":
        pads = [0] * 4
    w = w.astype(_np_dtype(tensor(x)))

    def tconv(xg: Any, wg: np.ndarray) -> Any:
        # ONNX W[c, m, kh, kw] -> TF filter [kh, kw, m, c] (conv2d_transpose is the
        # gradient of conv2d, the same operation as ONNX ConvTranspose).
        return tf.nn.conv2d_transpose(xg, wg.transpose(2, 3, 1, 0), [n, full[0], full[1], wg.shape[1]],
                                      [1, strides[0], strides[1], 1], "VALID")

    if group == 1:
        y = tconv(x, w)
    else:
        xs = tf.split(x, group, axis=-1)
        cg = c // group
        y = tf.concat([tconv(xs[g], w[g * cg:(g + 1) * cg]) for g in range(group)], axis=-1)
    if any(pads):
        y = y[:, pads[0]:full[0] - pads[2], pads[1]:full[1] - pads[3], :]
    if bias is not None:
        y = tf.nn.bias_add(y, bias.astype(_np_dtype(tensor(y))))
    return [tensor(y, NHWC_PERM)]


def _pool_kernel(node: Node) -> list[int]:
    k = node.attrs.get("kernel_shape")
    if k is None or len(k) != 2:
        raise ConversionError(f"{node.label()}: only 2-D pooling is supported (kernel_shape={k})")
    if any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
        raise ConversionError(f"{node.label()}: dilated pooling is not supported")
    return [int(d) for d in k]


@handler("MaxPool")
def _maxpool(ctx: Ctx, node: Node, ins: list) -> list:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise ConversionError(f"{node.label()}: the Indices output of MaxPool is not supported")
    x = _nhwc_input(ctx, node, ins[0])
    k = _pool_kernel(node)
    axes = _window_axes(node, [int(x.shape[1]), int(x.shape[2])], k, bool(node.attrs.get("ceil_mode", 0)))
    x, padding = _choose_padding(ctx, node, x, axes, pad_mode="edge")
    y = tf.nn.max_pool2d(x, k, [axes[0].stride, axes[1].stride], padding)
    return [tensor(y, NHWC_PERM)]


def _avg_counts(a: _Axis, include_pad: bool) -> np.ndarray:
    """Number of elements each output window averages over, along one axis (as onnxruntime)."""
    counts = np.empty(a.out, np.float64)
    for o in range(a.out):
        start = o * a.stride - a.pad_begin
        end = start + a.kernel
        if include_pad:
            counts[o] = min(end, a.size + a.pad_end) - start
        else:
            counts[o] = min(end, a.size) - max(start, 0)
    return counts


@handler("AveragePool")
def _avgpool(ctx: Ctx, node: Node, ins: list) -> list:
    x = _nhwc_input(ctx, node, ins[0])
    k = _pool_kernel(node)
    axes = _window_axes(node, [int(x.shape[1]), int(x.shape[2])], k, bool(node.attrs.get("ceil_mode", 0)))
    include = bool(node.attrs.get("count_include_pad", 0))
    strides = [axes[0].stride, axes[1].stride]
    if all(a.is_valid() for a in axes):
        y = tf.nn.avg_pool2d(x, k, strides, "VALID")
    elif not include and all(a.is_same() for a in axes):
        # TF 'SAME' averages over the valid elements only == count_include_pad=0.
        y = tf.nn.avg_pool2d(x, k, strides, "SAME")
    else:
        # Zero-pad, average over whole windows, then rescale each output by
        # k_h*k_w / (elements ONNX counts) - a constant map computed here.
        y = tf.nn.avg_pool2d(_pad_nhwc(x, axes), k, strides, "VALID")
        ch, cw = _avg_counts(axes[0], include), _avg_counts(axes[1], include)
        scale = (k[0] * k[1]) / np.outer(ch, cw)
        if not np.allclose(scale, 1.0):
            y = y * scale[None, :, :, None].astype(_np_dtype(tensor(y)))
        ctx.note(f"{node.label()}: explicit pads -> PAD + AVERAGE_POOL_2D"
                 + (" + MUL (border divisor)" if not np.allclose(scale, 1.0) else ""))
    return [tensor(y, NHWC_PERM)]


@handler("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: Ctx, node: Node, ins: list) -> list:
    x = _nhwc_input(ctx, node, ins[0])
    fn = tf.reduce_mean if node.op_type == "GlobalAveragePool" else tf.reduce_max
    return [tensor(fn(x, axis=[1, 2], keepdims=True), NHWC_PERM)]


@handler("BatchNormalization")
def _batchnorm(ctx: Ctx, node: Node, ins: list) -> list:
    if node.attrs.get("training_mode", 0) or any(o for o in node.outputs[1:]):
        raise ConversionError(f"{node.label()}: training-mode BatchNormalization is not supported. "
                              "Fix: export the model in eval mode.")
    v = ins[0]
    gamma, beta, mean, var = (ctx.const_in(node, ins, i, n).astype(np.float64)
                              for i, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
    eps = float(node.attrs.get("epsilon", 1e-5))
    s = gamma / np.sqrt(var + eps)
    b = beta - mean * s
    # Per-channel along ONNX axis 1, laid out for the stored tensor.
    shape = [1] * v.rank
    shape[1] = s.size
    s_c = _match_dtype(_layout_const(ctx, s.reshape(shape), v), v)
    b_c = _match_dtype(_layout_const(ctx, b.reshape(shape), v), v)
    return [Val(v.t * s_c + b_c, v.perm, v.colperm)]


# ----------------------------------------------------------------------------
# Resize / Upsample
# ----------------------------------------------------------------------------
def _onnx_coords(mode: str, out: int, size: int, scale: float, roi: tuple[float, float] | None = None
                 ) -> np.ndarray:
    """Source coordinate of every output index, per ONNX ``coordinate_transformation_mode``."""
    x = np.arange(out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if mode == "align_corners":
        return x * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adj = out / (scale * size)
        center = size / 2.0
        offset = center * (1 - adj)
        return offset + (x + 0.5) / scale - 0.5
    raise ConversionError(f"Resize coordinate_transformation_mode {mode!r} is not supported")


def _nearest_index(coords: np.ndarray, mode: str, size: int, downsample: bool) -> np.ndarray:
    if mode == "round_prefer_floor":
        idx = np.where(coords - np.floor(coords) == 0.5, np.floor(coords), np.round(coords))
    elif mode == "round_prefer_ceil":
        idx = np.where(coords - np.floor(coords) == 0.5, np.ceil(coords), np.round(coords))
    elif mode == "floor":
        idx = np.floor(coords)
    elif mode == "ceil":
        idx = np.ceil(coords)
    elif mode == "simple":  # legacy Upsample (onnxruntime): ceil when downsampling
        idx = np.ceil(coords) if downsample else np.trunc(coords)
    else:
        raise ConversionError(f"Resize nearest_mode {mode!r} is not supported")
    return np.clip(idx, 0, size - 1).astype(np.int64)


def _tf_nearest_index(out: int, size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Source index TF/TFLite ResizeNearestNeighbor picks (mirrors their float32 kernels)."""
    scale = np.float32((size - 1) / (out - 1) if (align_corners and out > 1) else size / out)
    x = np.arange(out, dtype=np.float32) + np.float32(0.5 if half_pixel else 0.0)
    v = x * scale
    idx = np.round(v) if align_corners else np.floor(v)
    # TFLite rounds half away from zero; np.round is half-to-even.
    if align_corners:
        idx = np.floor(v + np.float32(0.5))
    return np.clip(idx, 0, size - 1).astype(np.int64)


def _linear_matrix(coords: np.ndarray, size: int) -> np.ndarray:
    """out x in interpolation matrix of 1-D linear resampling (coordinates clamped)."""
    c = np.clip(coords, 0, size - 1)
    lo = np.floor(c).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    w = c - lo
    m = np.zeros((len(coords), size))
    m[np.arange(len(coords)), lo] += 1 - w
    m[np.arange(len(coords)), hi] += w
    return m


def _tf_linear_coords(out: int, size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    scale = (size - 1) / (out - 1) if (align_corners and out > 1) else size / out
    x = np.arange(out, dtype=np.float64)
    return (x + 0.5) * scale - 0.5 if half_pixel else x * scale


_TF_RESIZE_VARIANTS = ((False, False), (True, False), (False, True))


def _repeat_upsample(x, kh: int, kw: int):
    """Nearest-neighbour upsample by integer factors with CONCATENATION + RESHAPE only.

    out[h, w] = x[h // kh, w // kw]: concatenating kw copies on the channel axis and
    reshaping (W, kw*C) -> (W*kw, C) repeats every column kw times; the same on the
    width axis then reshaping (H, kh*W') -> (H*kh, W') repeats every row. Exact, and
    the concatenated inputs share one quantization scale, so exact in int8 too.
    """
    _, h, w, c = (int(d) for d in x.shape)
    y = x
    if kw > 1:
        y = tf.reshape(tf.concat([y] * kw, axis=3), [-1, h, w * kw, c])
    if kh > 1:
        y = tf.reshape(tf.concat([y] * kh, axis=2), [-1, h * kh, w * kw, c])
    return y


def _resize_nhwc(ctx: Ctx, node: Node, v: Val, out_hw: Sequence[int], scales_hw: Sequence[float],
                 mode: str, coord_mode: str, nearest_mode: str) -> Val:
    x = _nhwc_input(ctx, node, v)
    in_hw = [int(x.shape[1]), int(x.shape[2])]
    if mode == "nearest":
        want = [_nearest_index(_onnx_coords(coord_mode, out_hw[i], in_hw[i], scales_hw[i]), nearest_mode,
                               in_hw[i], scales_hw[i] < 1) for i in range(2)]
        factors = [out_hw[i] // in_hw[i] if in_hw[i] and out_hw[i] % in_hw[i] == 0 else 0 for i in range(2)]
        if all(k >= 1 for k in factors) and any(k > 1 for k in factors) and all(
                np.array_equal(want[i], np.arange(out_hw[i]) // factors[i]) for i in range(2)):
            ctx.note(f"{node.label()}: nearest x{factors[0]}x{factors[1]} upsample -> CONCATENATION + RESHAPE "
                     "(XNNPACK runs no RESIZE_NEAREST_NEIGHBOR, in int8 or float; this form stays delegated)")
            return tensor(_repeat_upsample(x, factors[0], factors[1]), NHWC_PERM)
        for ac, hp in _TF_RESIZE_VARIANTS:
            got = [_tf_nearest_index(out_hw[i], in_hw[i], ac, hp) for i in range(2)]
            if all(np.array_equal(g, w) for g, w in zip(got, want)):
                y = tf.raw_ops.ResizeNearestNeighbor(images=x, size=list(out_hw), align_corners=ac,
                                                     half_pixel_centers=hp)
                return tensor(y, NHWC_PERM)
        ctx.note(f"{node.label()}: nearest ({coord_mode}, {nearest_mode}) has no TFLite "
                 "RESIZE_NEAREST_NEIGHBOR equivalent at this size -> GATHER along H and W")
        y = tf.gather(x, want[0], axis=1)
        return tensor(tf.gather(y, want[1], axis=2), NHWC_PERM)
    if mode in ("linear", "bilinear"):
        want = [_linear_matrix(_onnx_coords(coord_mode, out_hw[i], in_hw[i], scales_hw[i]), in_hw[i])
                for i in range(2)]
        for ac, hp in _TF_RESIZE_VARIANTS:
            got = [_linear_matrix(_tf_linear_coords(out_hw[i], in_hw[i], ac, hp), in_hw[i]) for i in range(2)]
            if all(np.allclose(g, w, atol=1e-6) for g, w in zip(got, want)):
                y = tf.raw_ops.ResizeBilinear(images=x, size=list(out_hw), align_corners=ac,
                                              half_pixel_centers=hp)
                return tensor(y, NHWC_PERM)
        ctx.note(f"{node.label()}: linear ({coord_mode}) has no TFLite RESIZE_BILINEAR equivalent "
                 "at this size -> GATHER + weighted sum along H and W")
        y = x
        for i, axis in enumerate((1, 2)):
            m = want[i]
            lo = np.argmax(m > 0, axis=1)
            hi = np.minimum(lo + 1, in_hw[i] - 1)
            wlo = m[np.arange(len(m)), lo]
            whi = np.where(hi != lo, m[np.arange(len(m)), hi], 0.0)
            shape = [1, 1, 1, 1]
            shape[axis] = len(m)
            dt = _np_dtype(tensor(y))
            y = (tf.gather(y, lo, axis=axis) * wlo.reshape(shape).astype(dt)
                 + tf.gather(y, hi, axis=axis) * whi.reshape(shape).astype(dt))
        return tensor(y, NHWC_PERM)
    raise ConversionError(f"{node.label()}: Resize mode {mode!r} is not supported (nearest, linear are). "
                          "Fix: export with mode='nearest' or 'linear'.")


def _resize_geometry(node: Node, v: Val, scales: np.ndarray | None, sizes: np.ndarray | None
                     ) -> tuple[list[int], list[float]]:
    shape = v.shape
    if v.rank != 4:
        raise ConversionError(f"{node.label()}: only 4-D NCHW resizing is supported (rank {v.rank})")
    if sizes is not None and sizes.size:
        sizes = [int(s) for s in sizes]
        if sizes[:2] != list(shape[:2]):
            raise ConversionError(f"{node.label()}: resizing N or C is not supported (sizes={sizes})")
        out = sizes[2:]
        return out, [out[i] / shape[2 + i] for i in range(2)]
    if scales is None or not scales.size:
        raise ConversionError(f"{node.label()}: neither scales nor sizes given")
    sc = [float(s) for s in scales]
    if sc[:2] != [1.0, 1.0]:
        raise ConversionError(f"{node.label()}: resizing N or C is not supported (scales={sc})")
    return [int(math.floor(shape[2 + i] * sc[2 + i])) for i in range(2)], sc[2:]


@handler("Resize")
def _resize(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    a = node.attrs
    if a.get("antialias", 0) or a.get("axes") is not None:
        raise ConversionError(f"{node.label()}: Resize antialias/axes (opset 18) are not supported")
    if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ConversionError(f"{node.label()}: keep_aspect_ratio_policy is not supported")
    if ctx.opset < 11:
        scales = ctx.const_in(node, ins, 1, "scales")
        sizes = None
    else:
        scales = ctx.const_in(node, ins, 2, "scales") if opt_in(ins, 2) is not None else None
        sizes = ctx.const_in(node, ins, 3, "sizes") if opt_in(ins, 3) is not None else None
    coord = a.get("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 11 else "asymmetric")
    if coord == "tf_crop_and_resize":
        raise ConversionError(f"{node.label()}: tf_crop_and_resize is not supported")
    out, sc = _resize_geometry(node, v, scales, sizes)
    mode = a.get("mode", "nearest")
    return [_resize_nhwc(ctx, node, v, out, sc, mode, coord, a.get("nearest_mode", "round_prefer_floor"))]


@handler("Upsample")
def _upsample(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    scales = node.attrs.get("scales")
    scales = np.asarray(scales, np.float32) if scales is not None else ctx.const_in(node, ins, 1, "scales")
    out, sc = _resize_geometry(node, v, scales, None)
    mode = node.attrs.get("mode", "nearest")
    return [_resize_nhwc(ctx, node, v, out, sc, mode, "asymmetric", "simple")]


# ----------------------------------------------------------------------------
# Shape ops
# ----------------------------------------------------------------------------
def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _flatten_colperm(v: Val) -> np.ndarray | None:
    """``colperm`` of flattening ``v`` from axis 1 in its stored layout (None if identity)."""
    shape = v.shape
    cp = np.arange(int(np.prod(shape[1:]))).reshape(shape[1:]).transpose([p - 1 for p in v.perm[1:]])
    cp = cp.ravel()
    return None if np.array_equal(cp, np.arange(cp.size)) else cp


def _flatten_2d(ctx: Ctx, node: Node, v: Val, axis: int) -> Val:
    shape = v.shape
    outer = int(np.prod(shape[:axis]))
    inner = int(np.prod(shape[axis:]))
    if v.is_const:
        return const(v.t.reshape(outer, inner))
    if v.colperm is None and is_identity(v.perm):
        return tensor(batch_reshape(v.t, [outer, inner]))
    if axis == 1 and v.perm[0] == 0 and v.colperm is None:
        # Keep the stored order; a following Gemm/MatMul permutes its weights.
        return tensor(batch_reshape(v.t, [outer, inner]), colperm=_flatten_colperm(v))
    t = ctx.to_onnx(v, f"{node.label()} flattens in ONNX order")
    return tensor(batch_reshape(t, [outer, inner]))


@handler("Flatten")
def _flatten(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    axis = _norm_axis(int(node.attrs.get("axis", 1)), v.rank)
    return [_flatten_2d(ctx, node, v, axis)]


@handler("Reshape")
def _reshape(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    target = [int(d) for d in ctx.const_in(node, ins, 1, "shape")]
    shape = v.shape
    allowzero = int(node.attrs.get("allowzero", 0))
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            target[i] = shape[i]
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        target[target.index(-1)] = int(np.prod(shape)) // max(known, 1)
    if v.is_const:
        return [const(v.t.reshape(target))]
    if len(target) == 2 and target[0] == shape[0] and v.rank > 2:
        return [_flatten_2d(ctx, node, v, 1)]
    if target == list(shape) and v.colperm is None:
        return [v]
    t = ctx.to_onnx(v, f"{node.label()} reshapes in ONNX order")
    return [tensor(batch_reshape(t, target))]


@handler("Transpose")
def _transpose(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    p = [int(a) for a in node.attrs.get("perm", list(range(v.rank))[::-1])]
    if v.is_const:
        return [const(np.transpose(v.t, p))]
    t = ctx.drop_colperm(v, f"{node.label()}")
    pinv = inverse_perm(p)
    # Only the bookkeeping changes: stored = transpose(out, new_perm).
    new_perm = tuple(pinv[q] for q in v.perm)
    return [Val(t, new_perm)]


@handler("Concat")
def _concat(ctx: Ctx, node: Node, ins: list) -> list:
    vals = [v for v in ins if v is not None]
    rank = vals[0].rank
    axis = _norm_axis(int(node.attrs["axis"]), rank)
    if all(v.is_const for v in vals):
        return [const(np.concatenate([v.t for v in vals], axis=axis))]
    runtime = [v for v in vals if not v.is_const]
    perm = runtime[0].perm if all(v.colperm is None for v in runtime) else identity_perm(rank)
    dt = _np_dtype(runtime[0])
    parts = [ctx.to_perm(v, perm, f"{node.label()} inputs in different layouts") for v in vals]
    parts = [p.astype(dt) if isinstance(p, np.ndarray) else p for p in parts]
    return [tensor(tf.concat(parts, axis=perm.index(axis)), perm)]


def _axes_arg(ctx: Ctx, node: Node, ins: list, idx: int) -> list[int] | None:
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if opt_in(ins, idx) is not None:
        return [int(a) for a in np.ravel(ctx.const_in(node, ins, idx, "axes"))]
    return None


def _drop_axes(v: Val, axes: Sequence[int]) -> tuple[list[int], tuple[int, ...]]:
    """Stored axes to remove for ONNX ``axes``, and the perm of what remains."""
    stored = [i for i, q in enumerate(v.perm) if q in axes]
    kept = [q for q in v.perm if q not in axes]
    order = sorted(kept)
    return stored, tuple(order.index(q) for q in kept)


@handler("Squeeze")
def _squeeze(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    axes = _axes_arg(ctx, node, ins, 1)
    shape = v.shape
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = [_norm_axis(a, v.rank) for a in axes]
    if v.is_const:
        return [const(np.squeeze(v.t, axis=tuple(axes)))]
    t = ctx.drop_colperm(v, node.label()) if v.colperm is not None else v.t
    stored, perm = _drop_axes(v, axes)
    return [tensor(tf.squeeze(t, axis=stored), perm)]


@handler("Unsqueeze")
def _unsqueeze(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    axes = _axes_arg(ctx, node, ins, 1)
    out_rank = v.rank + len(axes)
    axes = sorted(_norm_axis(a, out_rank) for a in axes)
    shape = list(v.shape)
    for a in axes:
        shape.insert(a, 1)
    if v.is_const:
        return [const(v.t.reshape(shape))]
    t = ctx.to_onnx(v, f"{node.label()} inserts axes in ONNX order")
    return [tensor(batch_reshape(t, shape) if axes[0] > 0 else tf.reshape(t, shape))]


@handler("Softmax", "LogSoftmax")
def _softmax(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    fn = tf.nn.softmax if node.op_type == "Softmax" else tf.nn.log_softmax
    if ctx.opset < 13:
        axis = _norm_axis(int(node.attrs.get("axis", 1)), v.rank)
        if axis != v.rank - 1:
            # Opset < 13 semantics: softmax over the flattened trailing block.
            shape = v.shape
            t = ctx.to_onnx(v, f"{node.label()} (opset<13) runs on the flattened [..., axis:] block")
            y = fn(tf.reshape(t, [-1, int(np.prod(shape[axis:]))]), axis=-1)
            return [tensor(tf.reshape(y, [-1] + list(shape[1:])))]
    else:
        axis = _norm_axis(int(node.attrs.get("axis", -1)), v.rank)
    if v.colperm is not None:
        t = ctx.drop_colperm(v, f"{node.label()} on a flattened NHWC tensor")
        v = tensor(t)
    stored_axis = v.perm.index(axis)
    if stored_axis != v.rank - 1:
        ctx.note(f"{node.label()}: softmax over a non-last stored axis (TFLite adds TRANSPOSEs)")
    return [Val(fn(v.t, axis=stored_axis), v.perm)]


@handler("Pad")
def _pad(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    mode = node.attrs.get("mode", "constant")
    if "pads" in node.attrs:
        pads = [int(p) for p in node.attrs["pads"]]
        value = float(node.attrs.get("value", 0.0))
    else:
        pads = [int(p) for p in ctx.const_in(node, ins, 1, "pads")]
        value = float(ctx.const_in(node, ins, 2, "constant_value")) if opt_in(ins, 2) is not None else 0.0
    if opt_in(ins, 3) is not None:
        raise ConversionError(f"{node.label()}: the axes input of Pad (opset 18) is not supported")
    r = v.rank
    begin, end = pads[:r], pads[r:]
    t = ctx.drop_colperm(v, node.label()) if v.colperm is not None else v.t
    if isinstance(t, np.ndarray):
        t = tf.constant(t)
    sb = [begin[q] for q in v.perm]
    se = [end[q] for q in v.perm]
    # Negative pads crop.
    if any(p < 0 for p in sb + se):
        shp = [int(d) for d in t.shape]
        t = t[tuple(slice(max(-sb[i], 0), shp[i] - max(-se[i], 0)) if sb[i] < 0 or se[i] < 0 else slice(None)
                    for i in range(r))]
        sb, se = [max(p, 0) for p in sb], [max(p, 0) for p in se]
    if mode == "constant":
        y = tf.pad(t, list(zip(sb, se)), constant_values=value)
    elif mode == "reflect":
        y = tf.pad(t, list(zip(sb, se)), mode="REFLECT")
    elif mode == "edge":
        y = t
        for i in range(r):
            y = _edge_pad(y, i, sb[i], se[i])
    else:
        raise ConversionError(f"{node.label()}: Pad mode {mode!r} is not supported")
    return [tensor(y, v.perm)]


@handler("Gemm")
def _gemm(ctx: Ctx, node: Node, ins: list) -> list:
    a, b = ins[0], ins[1]
    c = opt_in(ins, 2)
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    trans_a = int(node.attrs.get("transA", 0))
    trans_b = int(node.attrs.get("transB", 0))
    if b.is_const:
        w = b.t.T if trans_b else b.t
        if alpha != 1.0:
            w = w * alpha
        if a.colperm is not None and not trans_a:
            w = w[a.colperm]  # absorb the flattened NHWC feature order (no runtime op)
            x = a.t
        else:
            x = ctx.to_onnx(a, f"{node.label()} input")
            if trans_a:
                x = tf.transpose(x)
                ctx.note_transpose(f"{node.label()} transA=1")
        w = _match_dtype(w, a)
        y = tf.matmul(x, w)
    else:
        x = ctx.to_onnx(a, f"{node.label()} input")
        bt = ctx.to_onnx(b, f"{node.label()} input")
        y = tf.matmul(x, bt, transpose_a=bool(trans_a), transpose_b=bool(trans_b))
        if alpha != 1.0:
            y = y * alpha
    if c is not None and beta != 0.0:
        if c.is_const:
            y = y + _match_dtype(c.t * beta, a)
        else:
            y = y + ctx.to_onnx(c, node.label()) * beta
    return [tensor(y)]


@handler("MatMul")
def _matmul(ctx: Ctx, node: Node, ins: list) -> list:
    a, b = ins[0], ins[1]
    if b.is_const and b.rank == 2 and a.rank >= 2:
        w = _match_dtype(b.t, a)
        if a.colperm is not None:
            return [tensor(tf.matmul(a.t, w[a.colperm]))]
        if a.perm[-1] == a.rank - 1:
            # Contraction over the last axis works in any stored layout that keeps
            # it last; flatten the rest so TFLite gets one FULLY_CONNECTED.
            shp = list(a.stored_shape)
            y = tf.matmul(tf.reshape(a.t, [-1, shp[-1]]), w) if a.rank > 2 else tf.matmul(a.t, w)
            if a.rank > 2:
                y = tf.reshape(y, [-1] + shp[1:-1] + [w.shape[1]])  # leading (batch) dim left polymorphic
            return [tensor(y, a.perm)]
    if a.rank < 2 or b.rank < 2:
        raise ConversionError(f"{node.label()}: MatMul with a 1-D operand is not supported")
    ta = ctx.to_onnx(a, f"{node.label()} input")
    tb = ctx.to_onnx(b, f"{node.label()} input")
    if isinstance(tb, np.ndarray):
        tb = _match_dtype(tb, a)
    return [tensor(tf.matmul(ta, tb))]


# ----------------------------------------------------------------------------
# Small ops that mostly appear in constant (shape) subgraphs
# ----------------------------------------------------------------------------
@handler("Constant")
def _constant(ctx: Ctx, node: Node, ins: list) -> list:
    a = node.attrs
    if "value" in a:
        return [const(a["value"])]
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return [const(np.asarray(a[key], dt))]
    raise ConversionError(f"{node.label()}: only dense numeric Constant values are supported")


@handler("ConstantOfShape")
def _constant_of_shape(ctx: Ctx, node: Node, ins: list) -> list:
    shape = [int(d) for d in ctx.const_in(node, ins, 0, "shape")]
    value = node.attrs.get("value", np.zeros(1, np.float32))
    return [const(np.full(shape, np.ravel(value)[0], dtype=np.asarray(value).dtype))]


@handler("Shape")
def _shape(ctx: Ctx, node: Node, ins: list) -> list:
    shape = np.asarray(ins[0].shape, np.int64)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    return [const(shape[start:end] if end is not None else shape[start:])]


_ONNX_TO_NP: dict[int, np.dtype] = {}
for _t in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8,
           onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
           onnx.TensorProto.BOOL):
    _ONNX_TO_NP[_t] = onnx.helper.tensor_dtype_to_np_dtype(_t)


@handler("Cast")
def _cast(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    to = int(node.attrs["to"])
    if to not in _ONNX_TO_NP:
        raise ConversionError(f"{node.label()}: Cast to {onnx.TensorProto.DataType.Name(to)} is not supported")
    dt = _ONNX_TO_NP[to]
    if v.is_const:
        return [const(v.t.astype(dt))]
    return [Val(tf.cast(v.t, tf.as_dtype(dt)), v.perm, v.colperm)]


@handler("Gather")
def _gather(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    idx = ctx.const_in(node, ins, 1, "indices").astype(np.int64)
    axis = _norm_axis(int(node.attrs.get("axis", 0)), v.rank)
    idx = np.where(idx < 0, idx + v.shape[axis], idx)
    if v.is_const:
        return [const(np.take(v.t, idx, axis=axis))]
    if idx.ndim <= 1 and v.colperm is None:
        stored_axis = v.perm.index(axis)
        y = tf.gather(v.t, idx, axis=stored_axis)
        if idx.ndim == 0:
            _, perm = _drop_axes(v, [axis])
            return [tensor(y, perm)]
        return [tensor(y, v.perm)]
    t = ctx.to_onnx(v, node.label())
    return [tensor(tf.gather(t, idx, axis=axis))]


@handler("Slice")
def _slice(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    if ctx.opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = [int(s) for s in ctx.const_in(node, ins, 1, "starts")]
        ends = [int(s) for s in ctx.const_in(node, ins, 2, "ends")]
        axes = ([int(s) for s in ctx.const_in(node, ins, 3, "axes")] if opt_in(ins, 3) is not None
                else list(range(len(starts))))
        steps = [int(s) for s in ctx.const_in(node, ins, 4, "steps")] if opt_in(ins, 4) is not None \
            else [1] * len(starts)
    shape = v.shape
    sl = [slice(None)] * v.rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _norm_axis(int(a), v.rank)
        n = shape[a]
        # Clamp like ONNX (INT64_MAX / very negative ends are common).
        s, e = int(s), int(e)
        s = s + n if s < 0 else s
        e = e + n if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
        else:
            s, e = min(max(s, 0), n - 1), min(max(e, -1), n - 1)
        if st == 1 and s == 0 and e >= n:
            sl[a] = slice(None)  # whole axis: no size baked in (keeps the batch dim polymorphic)
            continue
        sl[a] = slice(s, e if e >= 0 else None, st)
    if v.is_const:
        return [const(v.t[tuple(sl)])]
    t = ctx.drop_colperm(v, node.label()) if v.colperm is not None else v.t
    stored = tuple(sl[q] for q in v.perm)
    return [tensor(t[stored], v.perm)]


@handler("Split")
def _split(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    axis = _norm_axis(int(node.attrs.get("axis", 0)), v.rank)
    n_out = len(node.outputs)
    if "split" in node.attrs:
        sizes = [int(s) for s in node.attrs["split"]]
    elif opt_in(ins, 1) is not None:
        sizes = [int(s) for s in ctx.const_in(node, ins, 1, "split")]
    else:
        dim = v.shape[axis]
        chunk = -(-dim // n_out)
        sizes = [min(chunk, dim - i * chunk) for i in range(n_out)]
    if v.is_const:
        return [const(p) for p in np.split(v.t, np.cumsum(sizes)[:-1], axis=axis)]
    t = ctx.drop_colperm(v, node.label()) if v.colperm is not None else v.t
    return [tensor(p, v.perm) for p in tf.split(t, sizes, axis=v.perm.index(axis))]


@handler("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd")
def _reduce(ctx: Ctx, node: Node, ins: list) -> list:
    v = ins[0]
    fn = {"ReduceMean": tf.reduce_mean, "ReduceMax": tf.reduce_max, "ReduceMin": tf.reduce_min,
          "ReduceSum": tf.reduce_sum, "ReduceProd": tf.reduce_prod}[node.op_type]
    axes = _axes_arg(ctx, node, ins, 1)
    keep = bool(node.attrs.get("keepdims", 1))
    if axes is None or not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return [v]
        axes = list(range(v.rank))
    axes = sorted(_norm_axis(a, v.rank) for a in axes)
    # Reducing the flattened feature axis does not care about its order.
    t = v.t if v.colperm is None or v.rank - 1 in axes else ctx.drop_colperm(v, node.label())
    stored = [v.perm.index(a) for a in axes]
    y = fn(t, axis=stored, keepdims=keep)
    if keep:
        return [tensor(y, v.perm)]
    _, perm = _drop_axes(v, axes)
    return [tensor(y, perm)]


@handler("LayerNormalization")
def _layer_norm(ctx: Ctx, node: Node, ins: list) -> list:
    """``(x - mean) * rsqrt(var + eps) * scale + bias`` over the axes from ``axis`` on.

    Built from MEAN, SUB, MUL, ADD and RSQRT, which all have int8 kernels (TF's own
    layer-norm lowering adds a NEG that has none), so transformer blocks convert
    fully integer.
    """
    v = ins[0]
    axis = _norm_axis(int(node.attrs.get("axis", -1)), v.rank)
    eps = float(node.attrs.get("epsilon", 1e-5))
    if len(node.outputs) > 1 and any(node.outputs[1:]):
        raise ConversionError(f"{node.label()}: the Mean/InvStdDev outputs of LayerNormalization are not supported")
    t = ctx.drop_colperm(v, node.label()) if v.colperm is not None else v.t
    axes = [v.perm.index(a) for a in range(axis, v.rank)]
    dt = _np_dtype(v)
    mean = tf.reduce_mean(t, axis=axes, keepdims=True)
    d = t - mean
    var = tf.reduce_mean(d * d, axis=axes, keepdims=True)
    y = d * tf.math.rsqrt(var + np.asarray(eps, dt))
    like = Val(y, v.perm)
    scale = ctx.const_in(node, ins, 1, "scale")
    y = y * _match_dtype(_layout_const(ctx, scale, like), like)
    if opt_in(ins, 2) is not None:
        y = y + _match_dtype(_layout_const(ctx, ctx.const_in(node, ins, 2, "B"), like), like)
    return [Val(y, v.perm)]


#: Every ONNX op type (default domain) the importer converts.
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(HANDLERS))
