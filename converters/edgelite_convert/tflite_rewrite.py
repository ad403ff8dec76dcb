"""Rewrites of a converted int8 TFLite model so XNNPACK runs every op in int8.

XNNPACK (TFLite's default CPU delegate) does not take, in int8, ``HARD_SWISH``,
``AVERAGE_POOL_2D`` or a standalone ``RELU``/``RELU6`` (measured with
``tests/data/probe_xnnpack.py`` on ai-edge-litert 2.3.0). Each such op runs on the
slow builtin kernels *and* splits the delegated graph in two: MobileNetV3 (a
HARD_SWISH per block) and NASNetMobile (average pools and standalone ReLUs
everywhere) came out slower in int8 than in float. This pass replaces them, in
the flatbuffer the converter produced, by ops XNNPACK runs in int8:

* ``HARD_SWISH(x)`` -> ``u = ADD(x, 3)`` with fused RELU6 (u in [0, 6]),
  ``v = MUL(u, 1/6)`` (v in [0, 1]), ``y = MUL(x, v)``: the definition
  ``x·relu6(x+3)/6`` in three int8 ops, each requantizing once;
* ``RELU``/``RELU6``/``RELU_N1_TO_1`` whose input comes from an ADD/SUB/MUL/
  CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED used by nothing else -> fused into
  that producer (one requantization less: slightly *more* accurate); otherwise
  -> ``MAX_POOL_2D`` 1x1 with the fused activation (XNNPACK turns it into a clamp);
* global ``AVERAGE_POOL_2D`` (window = input) -> ``MEAN`` over H, W;
* a float island ``DEQUANTIZE -> NEG -> QUANTIZE`` (Keras LayerNormalization computes
  ``-mean`` with a NEG that has no int8 kernel) -> one int8 ``MUL`` by -1, which makes
  LayerNorm and attention blocks fully integer;
* windowed ``AVERAGE_POOL_2D`` -> ``DEPTHWISE_CONV_2D`` with weights 1/(kh·kw),
  and, for SAME padding (TFLite's average excludes the padding), a ``MUL`` by a
  constant [1, H, W, 1] map of (kh·kw)/count.

* an int8 ``CONCATENATION`` whose inputs have other scales than its output (XNNPACK
  refuses it) -> the inputs are requantized to the output's scale by their producer
  or by an int8 ``QUANTIZE``.

Quantization parameters of the original tensors are kept, so every consumer
sees the same scales; only new intermediate tensors get new parameters.
Float models are left alone (XNNPACK runs all these ops in float).
"""
from __future__ import annotations

import functools
from collections import defaultdict

import numpy as np

__all__ = ["fold_channel_swap", "rewrite_for_xnnpack", "split_large_concats"]


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:  # pragma: no cover
        from tensorflow.lite.python import schema_py_generated as s
    return s


@functools.lru_cache(maxsize=1)
def _op_names() -> dict[int, str]:
    """Builtin operator code -> name (``CONV_2D``, ...)."""
    return {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}


class _Graph:
    """Editing helpers over the flatbuffer object API (subgraph 0)."""

    def __init__(self, model):
        self.s = _schema()
        self.m = model
        self.g = model.subgraphs[0]
        self.g.operators = list(self.g.operators or [])
        self.g.tensors = list(self.g.tensors or [])
        self.m.buffers = list(self.m.buffers or [])
        self.m.operatorCodes = list(self.m.operatorCodes or [])

    # -- op codes ---------------------------------------------------------
    def code(self, op: int) -> int:
        return max(self.m.operatorCodes[op.opcodeIndex].builtinCode,
                   self.m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)

    def opcode(self, builtin: int, version: int) -> int:
        for i, oc in enumerate(self.m.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin and oc.version == version:
                return i
        oc = self.s.OperatorCodeT()
        oc.builtinCode = builtin
        oc.deprecatedBuiltinCode = min(builtin, 127)
        oc.version = version
        self.m.operatorCodes.append(oc)
        return len(self.m.operatorCodes) - 1

    # -- tensors ----------------------------------------------------------
    def quant(self, scale, zp, dim: int = 0):
        q = self.s.QuantizationParametersT()
        q.scale = [float(x) for x in np.atleast_1d(scale)]
        q.zeroPoint = [int(x) for x in np.atleast_1d(zp)]
        q.quantizedDimension = dim
        return q

    def tensor(self, name: str, shape, ttype: int, q=None, data: np.ndarray | None = None) -> int:
        t = self.s.TensorT()
        t.name = name
        t.shape = [int(x) for x in shape]
        t.type = ttype
        t.quantization = q
        if data is not None:
            b = self.s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.m.buffers.append(b)
            t.buffer = len(self.m.buffers) - 1
        else:
            b = self.s.BufferT()
            self.m.buffers.append(b)
            t.buffer = len(self.m.buffers) - 1
        self.g.tensors.append(t)
        return len(self.g.tensors) - 1

    def qparams(self, ti: int) -> tuple[float, int]:
        q = self.g.tensors[ti].quantization
        return float(q.scale[0]), int(q.zeroPoint[0])

    def is_int8(self, ti: int) -> bool:
        t = self.g.tensors[ti]
        q = t.quantization
        return (t.type == self.s.TensorType.INT8 and q is not None and q.scale is not None
                and len(q.scale) == 1)

    def op(self, code: int, version: int, inputs, outputs, opt_type: int = 0, opts=None):
        o = self.s.OperatorT()
        o.opcodeIndex = self.opcode(code, version)
        o.inputs = [int(x) for x in inputs]
        o.outputs = [int(x) for x in outputs]
        o.builtinOptionsType = opt_type
        o.builtinOptions = opts
        return o

    def consumers(self) -> dict[int, list]:
        out: dict[int, list] = defaultdict(list)
        for op in self.g.operators:
            for i in op.inputs if op.inputs is not None else []:
                if i >= 0:
                    out[int(i)].append(op)
        return out


def _hard_swish(G: _Graph, op, name: str) -> list:
    s = G.s
    x, y = int(op.inputs[0]), int(op.outputs[0])
    if not (G.is_int8(x) and G.is_int8(y)):
        return [op]
    shape = list(G.g.tensors[x].shape)
    c3 = G.tensor(f"{name}/hswish_three", [1], s.TensorType.INT8, G.quant(3.0 / 127, 0), np.array([127], np.int8))
    u = G.tensor(f"{name}/hswish_relu6", shape, s.TensorType.INT8, G.quant(6.0 / 255, -128))
    c6 = G.tensor(f"{name}/hswish_sixth", [1], s.TensorType.INT8, G.quant(1.0 / 6 / 127, 0), np.array([127], np.int8))
    v = G.tensor(f"{name}/hswish_hsig", shape, s.TensorType.INT8, G.quant(1.0 / 255, -128))
    add_o = s.AddOptionsT()
    add_o.fusedActivationFunction = s.ActivationFunctionType.RELU6
    mul_o1, mul_o2 = s.MulOptionsT(), s.MulOptionsT()
    return [G.op(s.BuiltinOperator.ADD, 2, [x, c3], [u], s.BuiltinOptions.AddOptions, add_o),
            G.op(s.BuiltinOperator.MUL, 2, [u, c6], [v], s.BuiltinOptions.MulOptions, mul_o1),
            G.op(s.BuiltinOperator.MUL, 2, [x, v], [y], s.BuiltinOptions.MulOptions, mul_o2)]


_FUSABLE = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "CONV_2D": "Conv2DOptions",
            "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions", "FULLY_CONNECTED": "FullyConnectedOptions"}


_MOVES = {"RESHAPE", "STRIDED_SLICE", "SLICE", "PAD", "SQUEEZE", "EXPAND_DIMS"}


def _avg_pool(G: _Graph, op, name: str) -> list:
    s = G.s
    x, y = int(op.inputs[0]), int(op.outputs[0])
    if not (G.is_int8(x) and G.is_int8(y)):
        return [op]
    o = op.builtinOptions
    n, h, w, c = (int(d) for d in G.g.tensors[x].shape)
    _, oh, ow, _ = (int(d) for d in G.g.tensors[y].shape)
    kh, kw, sh, sw = o.filterHeight, o.filterWidth, o.strideH, o.strideW
    if o.fusedActivationFunction != 0:
        return [op]
    if oh == 1 and ow == 1 and kh >= h and kw >= w:
        # global average pool == MEAN over H, W (keep dims)
        axes = G.tensor(f"{name}/mean_axes", [2], s.TensorType.INT32, None, np.array([1, 2], np.int32))
        r = s.ReducerOptionsT()
        r.keepDims = True
        return [G.op(s.BuiltinOperator.MEAN, 2, [x, axes], [y], s.BuiltinOptions.ReducerOptions, r)]
    # windowed: depthwise conv with weights 1/(kh*kw) (+ border correction for SAME padding)
    k = kh * kw
    sx, _ = G.qparams(x)
    w_scale = np.full(c, 1.0 / k / 127, np.float32)
    wt = G.tensor(f"{name}/avg_weights", [1, kh, kw, c], s.TensorType.INT8, G.quant(w_scale, np.zeros(c), 3),
                  np.full((1, kh, kw, c), 127, np.int8))
    bias = G.tensor(f"{name}/avg_bias", [c], s.TensorType.INT32, G.quant(sx * w_scale, np.zeros(c)),
                    np.zeros(c, np.int32))
    d = s.DepthwiseConv2DOptionsT()
    d.padding, d.strideH, d.strideW, d.depthMultiplier = o.padding, sh, sw, 1
    d.dilationHFactor = d.dilationWFactor = 1
    d.fusedActivationFunction = 0
    if o.padding != s.Padding.SAME:
        return [G.op(s.BuiltinOperator.DEPTHWISE_CONV_2D, 3, [x, wt, bias], [y],
                     s.BuiltinOptions.DepthwiseConv2DOptions, d)]
    # counts of valid (non-padding) elements per output position, TFLite SAME convention
    def counts(size, kk, st, out):
        pad = max((out - 1) * st + kk - size, 0) // 2
        return np.array([min(i * st - pad + kk, size) - max(i * st - pad, 0) for i in range(out)], np.float64)

    cnt = np.outer(counts(h, kh, sh, oh), counts(w, kw, sw, ow))
    corr = k / cnt
    if np.all(corr == 1.0):
        return [G.op(s.BuiltinOperator.DEPTHWISE_CONV_2D, 3, [x, wt, bias], [y],
                     s.BuiltinOptions.DepthwiseConv2DOptions, d)]
    # quantize the correction map on a grid that represents the usual values exactly
    # (3x3: 1, 1.5, 2.25 with scale 1/16)
    cscale = 1.0 / 16 if np.allclose(corr * 16, np.round(corr * 16)) and corr.max() * 16 <= 127 else corr.max() / 127
    cq = np.clip(np.round(corr / cscale), 1, 127).astype(np.int8).reshape(1, oh, ow, 1)
    cmap = G.tensor(f"{name}/avg_border", [1, oh, ow, 1], s.TensorType.INT8, G.quant(cscale, 0), cq)
    sy, zy = G.qparams(y)
    mid = G.tensor(f"{name}/avg_sum", [n, oh, ow, c], s.TensorType.INT8, G.quant(sy, zy))
    return [G.op(s.BuiltinOperator.DEPTHWISE_CONV_2D, 3, [x, wt, bias], [mid],
                 s.BuiltinOptions.DepthwiseConv2DOptions, d),
            G.op(s.BuiltinOperator.MUL, 2, [mid, cmap], [y], s.BuiltinOptions.MulOptions, s.MulOptionsT())]


#: int8 ops whose output quantization is free (they requantize to whatever their output says).
_REQUANTIZING = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "MEAN",
                 "AVERAGE_POOL_2D", "TRANSPOSE_CONV", "BATCH_MATMUL"}


def _concat_requant(G: _Graph, op_name: dict, graph_outputs: set, done: dict) -> None:
    """XNNPACK takes an int8 CONCATENATION only when every input has the output's scale and
    zero point (NASNet's cells concatenate branches with different ranges: 12 partitions).
    An input made by a requantizing op used by nothing else gets the concat's parameters
    directly (its kernel requantizes there instead); any other input gets an int8->int8
    QUANTIZE (a requantization XNNPACK runs)."""
    s = G.s
    producer = {int(o): op for op in G.g.operators for o in (op.outputs if op.outputs is not None else [])}
    consumers = G.consumers()
    out_ops = []
    for op in G.g.operators:
        if G.code(op) != s.BuiltinOperator.CONCATENATION:
            out_ops.append(op)
            continue
        y = int(op.outputs[0])
        ins = [int(i) for i in op.inputs]
        if not G.is_int8(y) or not all(G.is_int8(i) for i in ins):
            out_ops.append(op)
            continue
        sy, zy = G.qparams(y)
        new_inputs = []
        for i in ins:
            si, zi = G.qparams(i)
            if np.isclose(si, sy, rtol=1e-6, atol=0) and zi == zy:
                new_inputs.append(i)
                continue
            p = producer.get(i)
            if (p is not None and len(consumers[i]) == 1 and i not in graph_outputs
                    and op_name.get(G.code(p), "") in _REQUANTIZING):
                G.g.tensors[i].quantization = G.quant(sy, zy)
                new_inputs.append(i)
                done["CONCATENATION input requantized by its producer to the concat's scale"] += 1
                continue
            t = G.g.tensors[i]
            nm = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            r = G.tensor(f"{nm}/requant", list(t.shape), s.TensorType.INT8, G.quant(sy, zy))
            out_ops.append(G.op(s.BuiltinOperator.QUANTIZE, 2, [i], [r]))
            new_inputs.append(r)
            done["CONCATENATION input requantized with an int8 QUANTIZE"] += 1
        op.inputs = new_inputs
        out_ops.append(op)
    G.g.operators = out_ops


#: Most inputs of one CONCATENATION the XNNPACK delegate takes (it has 2..5-input nodes;
#: NASNet's cells concatenate 6 branches, left to the builtin kernel in both precisions).
MAX_CONCAT_INPUTS = 4


def _split_concats(G: _Graph, done: dict) -> None:
    """CONCATENATION of more than MAX_CONCAT_INPUTS inputs -> a concatenation of concatenations
    (same axis; the partial results take the output's type and quantization, so nothing is
    requantized: an int8 concatenation with equal parameters copies bytes)."""
    s = G.s
    out_ops = []
    for op in G.g.operators:
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        if G.code(op) != s.BuiltinOperator.CONCATENATION or len(ins) <= MAX_CONCAT_INPUTS:
            out_ops.append(op)
            continue
        y = G.g.tensors[int(op.outputs[0])]
        axis = op.builtinOptions.axis
        rank = len(y.shape)
        ax = axis % rank
        parts = []
        for k in range(0, len(ins), MAX_CONCAT_INPUTS):
            chunk = ins[k:k + MAX_CONCAT_INPUTS]
            if len(chunk) == 1:
                parts.append(chunk[0])
                continue
            shape = list(G.g.tensors[chunk[0]].shape)
            shape[ax] = sum(int(G.g.tensors[i].shape[ax]) for i in chunk)
            q = y.quantization
            nm = y.name.decode() if isinstance(y.name, bytes) else str(y.name)
            t = G.tensor(f"{nm}/part{k // MAX_CONCAT_INPUTS}", shape, y.type,
                         G.quant(q.scale, q.zeroPoint) if q is not None and q.scale is not None else None)
            o = s.ConcatenationOptionsT()
            o.axis, o.fusedActivationFunction = axis, 0
            out_ops.append(G.op(s.BuiltinOperator.CONCATENATION, G.m.operatorCodes[op.opcodeIndex].version, chunk,
                                [t], s.BuiltinOptions.ConcatenationOptions, o))
            parts.append(t)
        op.inputs = parts
        out_ops.append(op)
        done[f"CONCATENATION of {len(ins)} inputs -> concatenation of <= {MAX_CONCAT_INPUTS}-input concatenations"] += 1
    G.g.operators = out_ops


def split_large_concats(model_bytes: bytes) -> tuple[bytes, list[str]]:
    """Only the CONCATENATION split (for float models too)."""
    import flatbuffers

    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if not m.subgraphs:
        return model_bytes, []
    G = _Graph(m)
    done: dict[str, int] = defaultdict(int)
    _split_concats(G, done)
    if not done:
        return model_bytes, []
    b = flatbuffers.Builder(len(model_bytes) + 65536)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output()), [f"for XNNPACK: {k} (x{v})" for k, v in done.items()]


def rewrite_for_xnnpack(model_bytes: bytes) -> tuple[bytes, list[str]]:
    """Apply the rewrites of this module to an int8 model; return the new bytes and what was done."""
    import flatbuffers

    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if not m.subgraphs:
        return model_bytes, []
    G = _Graph(m)
    op_name = _op_names()
    act = {s.BuiltinOperator.RELU: s.ActivationFunctionType.RELU,
           s.BuiltinOperator.RELU6: s.ActivationFunctionType.RELU6,
           s.BuiltinOperator.RELU_N1_TO_1: s.ActivationFunctionType.RELU_N1_TO_1}
    graph_outputs = set(int(i) for i in (G.g.outputs if G.g.outputs is not None else []))
    done: dict[str, int] = defaultdict(int)
    # 1) fuse standalone activations into a sole-consumer producer
    producer = {int(o): op for op in G.g.operators for o in (op.outputs if op.outputs is not None else [])}
    consumers = G.consumers()
    removed: set[int] = set()
    for op in G.g.operators:
        code = G.code(op)
        if code not in act:
            continue
        x, y = int(op.inputs[0]), int(op.outputs[0])
        if not (G.is_int8(x) and G.is_int8(y)):
            continue
        # walk back through data-movement ops (they commute with an elementwise clamp; PAD pads
        # with the zero point, i.e. a real 0, which the clamp keeps)
        chain, t = [], x
        while True:
            p = producer.get(t)
            if (p is None or t in graph_outputs or len(consumers[t]) != 1 or id(p) in removed
                    or op_name.get(G.code(p), "") not in _MOVES or not G.is_int8(int(p.inputs[0]))):
                break
            chain.append(p)
            t = int(p.inputs[0])
        p = producer.get(t)
        if p is None or t in graph_outputs or len(consumers[t]) != 1 or id(p) in removed:
            continue
        pname = op_name.get(G.code(p), "")
        if pname not in _FUSABLE or p.builtinOptions is None or p.builtinOptions.fusedActivationFunction != 0:
            continue
        p.builtinOptions.fusedActivationFunction = act[code]
        if chain:
            # the producer now writes the clamped values: every tensor of the chain takes the
            # activation's quantization, and the last movement op writes the activation's output
            q = G.g.tensors[y].quantization
            for ti in [t] + [int(c.outputs[0]) for c in chain[1:]]:
                G.g.tensors[ti].quantization = G.quant(q.scale, q.zeroPoint)
            chain[0].outputs = [y]
        else:
            p.outputs = [y if int(o) == x else int(o) for o in p.outputs]
        removed.add(id(op))
        via = f" through {' + '.join(op_name.get(G.code(c), '?') for c in reversed(chain))}" if chain else ""
        done[f"{op_name[code]} fused into its {pname} producer{via}"] += 1
    G.g.operators = [o for o in G.g.operators if id(o) not in removed]
    # 1b) float islands DEQUANTIZE -> NEG -> QUANTIZE (Keras LayerNormalization's -mean) -> int8 MUL by -1
    producer = {int(o): op for op in G.g.operators for o in (op.outputs if op.outputs is not None else [])}
    consumers = G.consumers()
    removed = set()
    replace: dict[int, object] = {}
    for op in G.g.operators:
        if G.code(op) != s.BuiltinOperator.QUANTIZE:
            continue
        f_out, q_out = int(op.inputs[0]), int(op.outputs[0])
        neg = producer.get(f_out)
        if neg is None or G.code(neg) != s.BuiltinOperator.NEG or len(consumers[f_out]) != 1:
            continue
        f_in = int(neg.inputs[0])
        deq = producer.get(f_in)
        if deq is None or G.code(deq) != s.BuiltinOperator.DEQUANTIZE or len(consumers[f_in]) != 1:
            continue
        q_in = int(deq.inputs[0])
        if not (G.is_int8(q_in) and G.is_int8(q_out)) or f_out in graph_outputs or f_in in graph_outputs:
            continue
        m1 = G.tensor(f"{G.g.tensors[q_out].name}/minus_one", [1], s.TensorType.INT8, G.quant(1.0 / 127, 0),
                      np.array([-127], np.int8))
        replace[id(op)] = G.op(s.BuiltinOperator.MUL, 2, [q_in, m1], [q_out], s.BuiltinOptions.MulOptions,
                               s.MulOptionsT())
        removed.update({id(neg), id(deq)})
        done["float DEQUANTIZE -> NEG -> QUANTIZE (Keras LayerNorm) -> int8 MUL by -1"] += 1
    G.g.operators = [replace.get(id(o), o) for o in G.g.operators if id(o) not in removed]
    # 2) replace the ops XNNPACK does not take in int8
    new_ops = []
    for i, op in enumerate(G.g.operators):
        code = G.code(op)
        name = G.g.tensors[int(op.outputs[0])].name
        name = name.decode() if isinstance(name, bytes) else str(name)
        if code == s.BuiltinOperator.HARD_SWISH:
            rep = _hard_swish(G, op, name)
            if rep[0] is not op:
                done["HARD_SWISH -> ADD(+3, RELU6) + MUL(1/6) + MUL"] += 1
        elif code == s.BuiltinOperator.AVERAGE_POOL_2D:
            rep = _avg_pool(G, op, name)
            if rep[0] is not op:
                done[f"AVERAGE_POOL_2D -> {' + '.join(op_name.get(G.code(r), '?') for r in rep)}"] += 1
        elif (code in act and G.is_int8(int(op.inputs[0])) and G.is_int8(int(op.outputs[0]))
              and len(G.g.tensors[int(op.inputs[0])].shape) == 4):
            p = s.Pool2DOptionsT()
            p.padding, p.strideH, p.strideW, p.filterHeight, p.filterWidth = s.Padding.VALID, 1, 1, 1, 1
            p.fusedActivationFunction = act[code]
            rep = [G.op(s.BuiltinOperator.MAX_POOL_2D, 2, list(op.inputs), list(op.outputs),
                        s.BuiltinOptions.Pool2DOptions, p)]
            done[f"{op_name[code]} -> MAX_POOL_2D 1x1 with fused {op_name[code]} (a clamp)"] += 1
        else:
            rep = [op]
        new_ops.extend(rep)
    G.g.operators = new_ops
    _concat_requant(G, op_name, graph_outputs, done)
    _split_concats(G, done)
    if not done:
        return model_bytes, []
    b = flatbuffers.Builder(len(model_bytes) + 65536)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output()), [f"int8 for XNNPACK: {k} (x{v})" for k, v in done.items()]


def fold_channel_swap(model_bytes: bytes) -> tuple[bytes | None, str]:
    """Reverse the channel order a model takes, by reversing the input-channel axis of
    the filters that read its image input: a model trained on BGR then takes RGB, and
    the device skips a per-frame colour swap (a pass over every input pixel).

    Exact: a convolution sums over input channels, so permuting the image's channels
    and the filters' together changes no int8 accumulator (the per-output-channel
    weight scales are unchanged); float sums may round in another order.

    Applies when the model has one ``(1, H, W, 3)`` input and every path from it
    reaches a ``CONV_2D`` (constant int8 or float32 filter) through ``PAD`` ops only
    (they treat the channels alike). Returns ``(new bytes, what was done)`` or
    ``(None, why not)``.
    """
    import flatbuffers

    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if not m.subgraphs:
        return None, "no subgraph"
    G = _Graph(m)
    ins = [int(i) for i in (G.g.inputs if G.g.inputs is not None else [])]
    if len(ins) != 1 or len(G.g.tensors[ins[0]].shape) != 4 or int(G.g.tensors[ins[0]].shape[-1]) != 3:
        return None, "the model does not have one (N, H, W, 3) image input"
    graph_outputs = set(int(i) for i in (G.g.outputs if G.g.outputs is not None else []))
    consumers = G.consumers()
    dtypes = {s.TensorType.INT8: np.int8, s.TensorType.FLOAT32: np.float32}
    frontier, convs = [ins[0]], []
    while frontier:
        t = frontier.pop()
        if t in graph_outputs:
            return None, "the image input reaches a model output"
        for op in consumers[t]:
            code = G.code(op)
            if code == s.BuiltinOperator.PAD and int(op.inputs[0]) == t:
                frontier.append(int(op.outputs[0]))
            elif code == s.BuiltinOperator.CONV_2D and int(op.inputs[0]) == t:
                f = G.g.tensors[int(op.inputs[1])]
                data = m.buffers[f.buffer].data if f.buffer < len(m.buffers) else None
                if f.type not in dtypes or data is None or len(data) == 0 or int(f.shape[-1]) != 3:
                    return None, "a first convolution's filter is not a constant int8/float32 (O, H, W, 3) tensor"
                convs.append(op)
            else:
                name = _op_names().get(code, code)
                return None, f"the image input feeds a {name}, not only convolutions"
    if not convs:
        return None, "no convolution reads the image input"
    users = defaultdict(int)
    for t in G.g.tensors:
        users[int(t.buffer)] += 1
    for fi in dict.fromkeys(int(op.inputs[1]) for op in convs):  # a filter shared by two convs: once
        f = G.g.tensors[fi]
        w = np.frombuffer(bytes(m.buffers[f.buffer].data), dtypes[f.type]).reshape([int(x) for x in f.shape])
        data = np.frombuffer(np.ascontiguousarray(w[..., ::-1]).tobytes(), np.uint8)
        if users[int(f.buffer)] == 1:
            m.buffers[f.buffer].data = data
        else:  # a buffer shared with another tensor keeps its bytes
            b = s.BufferT()
            b.data = data
            m.buffers.append(b)
            f.buffer = len(m.buffers) - 1
    out = flatbuffers.Builder(len(model_bytes) + 65536)
    out.Finish(m.Pack(out), file_identifier=b"TFL3")
    return bytes(out.Output()), (f"input channel order reversed in the filters of {len(convs)} first "
                                 "convolution(s): the model takes RGB where it was trained on BGR")
