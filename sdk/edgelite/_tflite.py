"""A pure-Python reader and verifier for TFLite flatbuffer models.

Why this exists: the TFLite interpreter trusts its input. A truncated download or
a corrupt file handed to it can read out of bounds, divide by zero in a kernel's
``Prepare`` or recurse forever, and take the whole host process down with a
signal that Python cannot catch. :func:`parse_model` walks every byte the
interpreter would read (flatbuffer structure, then the model's semantics: tensor
and buffer indices, shapes, quantisation, operator wiring and the options of the
operators whose kernels divide by them) and raises
:class:`edgelite.InvalidModelError` naming what is wrong, *before* anything
native sees the bytes.

The reader uses only the standard library and numpy (no TensorFlow, no
``flatbuffers`` package) and never copies weight bytes: it reads with
``struct.unpack_from`` and keeps a reference to the caller's buffer, so parsing a
10 MB model takes milliseconds.

Format facts (field slots, enum values) follow the public TFLite schema
(``tensorflow/compiler/mlir/lite/schema/schema.fbs``); flatbuffer layout rules
follow the public FlatBuffers binary-format documentation.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .errors import InvalidModelError, ModelNotFoundError, UnsupportedModelError

__all__ = [
    "BUILTIN_OP_NAMES",
    "ModelInfo",
    "OperatorInfo",
    "QuantParams",
    "SignatureInfo",
    "SubgraphInfo",
    "TensorInfo",
    "parse_model",
    "read_model_info",
]

# --------------------------------------------------------------------------
# Schema facts
# --------------------------------------------------------------------------

_SCHEMA_VERSION = 3
_FILE_IDENTIFIER = b"TFL3"

#: The ``BuiltinOperator`` enum of the public TFLite schema, code -> name.
BUILTIN_OP_NAMES: dict[int, str] = dict(enumerate((
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE", "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED",
    "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM",
    "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH",
    "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE",
    "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN",
    "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX", "MINIMUM",
    "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT",
    "SLICE", "SIN", "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS",
    "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN",
    "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT",
    "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY",
    "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR",
    "LEAKY_RELU", "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE",
    "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK", "ELU",
    "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND",
    "HARD_SWISH", "IF", "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO",
    "RFFT2D", "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE",
    "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "REDUCE_ALL",
    "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE",
    "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM",
    "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1",
    "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2",
    "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT",
    "STABLEHLO_LOGISTIC", "STABLEHLO_ADD", "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY",
    "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE", "STABLEHLO_CLAMP",
    "STABLEHLO_CONCATENATE", "STABLEHLO_BROADCAST_IN_DIM", "STABLEHLO_CONVOLUTION",
    "STABLEHLO_SLICE", "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE", "STABLEHLO_ABS",
    "STABLEHLO_AND", "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL", "STABLEHLO_FLOOR",
    "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR",
    "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT", "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    "STABLEHLO_PAD", "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL",
    "STABLEHLO_REDUCE_WINDOW", "STABLEHLO_SORT", "STABLEHLO_WHILE",
    "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE",
    "STABLEHLO_SHIFT_LEFT", "STABLEHLO_CBRT", "STABLEHLO_CASE",
)))
_OP = {name: code for code, name in BUILTIN_OP_NAMES.items()}
_CUSTOM = _OP["CUSTOM"]

# TensorType code -> (dtype name, item size in bytes or None when variable/packed).
# Sub-byte types (int4, int2, uint4) store packed constants; see _PACKED_BITS.
_TENSOR_TYPES: dict[int, tuple[str, int | None]] = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1),
    4: ("int64", 8), 5: ("string", None), 6: ("bool", 1), 7: ("int16", 2),
    8: ("complex64", 8), 9: ("int8", 1), 10: ("float64", 8), 11: ("complex128", 16),
    12: ("uint64", 8), 13: ("resource", None), 14: ("variant", None),
    15: ("uint32", 4), 16: ("uint16", 2), 17: ("int4", None), 18: ("bfloat16", 2),
    19: ("int2", None), 20: ("uint4", None), 21: ("float8_e4m3fn", 1),
    22: ("float8_e5m2", 1),
}
_PACKED_BITS = {17: 4, 19: 2, 20: 4}
# numpy can represent these directly; the others are returned as raw bytes.
_NUMPY_DTYPES = {
    "float32", "float16", "int32", "uint8", "int64", "bool", "int16", "complex64",
    "int8", "float64", "complex128", "uint64", "uint32", "uint16",
}
# Zero-point ranges of the integer types that carry affine quantisation.
_QUANT_RANGES = {
    "int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
    "int4": (-8, 7), "uint4": (0, 15), "int2": (-2, 1),
}

# BuiltinOptions union member ids used by the checks below.
_OPT_CONV2D = 1
_OPT_DEPTHWISE = 2
_OPT_POOL2D = 5
_OPT_FULLY_CONNECTED = 8
_OPT_CALL = 16
_OPT_TRANSPOSE_CONV = 49
_OPT_IF = 92
_OPT_WHILE = 93
_OPT_CALL_ONCE = 103
_OPT_CONV3D = 106
_OPT_SPLIT = 35
_OPT_SPLIT_V = 79

# The options table each kernel casts its parameters from. When the union type
# stored in the file differs, TFLite silently falls back to zero-filled params
# (stride 0, filter 0...), which the kernels then divide by.
_REQUIRED_OPTIONS = {
    _OP["CONV_2D"]: _OPT_CONV2D,
    _OP["DEPTHWISE_CONV_2D"]: _OPT_DEPTHWISE,
    _OP["AVERAGE_POOL_2D"]: _OPT_POOL2D,
    _OP["MAX_POOL_2D"]: _OPT_POOL2D,
    _OP["L2_POOL_2D"]: _OPT_POOL2D,
    _OP["TRANSPOSE_CONV"]: _OPT_TRANSPOSE_CONV,
    _OP["CONV_3D"]: _OPT_CONV3D,
    _OP["CONV_3D_TRANSPOSE"]: _OPT_CONV3D,
    _OP["IF"]: _OPT_IF,
    _OP["WHILE"]: _OPT_WHILE,
    _OP["CALL_ONCE"]: _OPT_CALL_ONCE,
    _OP["SPLIT"]: _OPT_SPLIT,
    _OP["SPLIT_V"]: _OPT_SPLIT_V,
}

# Inputs that may be omitted (tensor index -1), by operator: the bias of the
# convolution family, and every input but the first of the recurrent ops (their
# peephole/projection/layer-norm tensors are optional). Custom ops decide for
# themselves.
_ANY_BUT_FIRST: tuple[int, ...] = (-1,)
_OPTIONAL_INPUTS: dict[int, tuple[int, ...]] = {
    _OP["CONV_2D"]: (2,),
    _OP["DEPTHWISE_CONV_2D"]: (2,),
    _OP["FULLY_CONNECTED"]: (2,),
    _OP["TRANSPOSE_CONV"]: (3,),
    _OP["CONV_3D"]: (2,),
    _OP["CONV_3D_TRANSPOSE"]: (3,),
    _OP["SVDF"]: (3,),
    **{_OP[n]: _ANY_BUT_FIRST for n in (
        "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM",
        "RNN", "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN",
    )},
}

# Ops whose output shape (and operand types) _check_shapes verifies.
_SHAPE_RULES: dict[int, str] = {
    _OP["CONV_2D"]: "conv",
    _OP["DEPTHWISE_CONV_2D"]: "depthwise",
    _OP["AVERAGE_POOL_2D"]: "pool",
    _OP["MAX_POOL_2D"]: "pool",
    _OP["L2_POOL_2D"]: "pool",
    _OP["FULLY_CONNECTED"]: "fc",
    _OP["RESHAPE"]: "reshape",
    _OP["CONCATENATION"]: "concat",
    _OP["FAKE_QUANT"]: "same",
    **{_OP[n]: "same" for n in (
        "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH",
        "HARD_SWISH", "LEAKY_RELU", "ELU", "GELU", "QUANTIZE", "DEQUANTIZE", "ABS",
        "NEG", "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "FLOOR", "CEIL", "ROUND",
        "SIN", "COS", "SIGN", "SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION", "CAST",
        "LOCAL_RESPONSE_NORMALIZATION",
    )},
    **{_OP[n]: "broadcast" for n in (
        "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE",
        "POW", "FLOOR_DIV", "FLOOR_MOD", "PRELU",
    )},
}
# Ops whose output type may differ from the input's: input dtype -> allowed
# output dtypes (None = the kernel checks every combination itself). A float
# SOFTMAX writing into an int8 output overruns the output buffer (found by
# tests/test_fuzz.py's operator-code sweep).
_QINT = ("int8", "uint8", "int16")
_SOFTMAX_TYPES = {"float32": ("float32",), "int8": ("int8", "int16"),
                  "uint8": ("uint8", "int16"), "int16": ("int16",)}
_DTYPE_CHANGING: dict[int, dict[str, tuple[str, ...]] | None] = {
    _OP["QUANTIZE"]: {d: _QINT for d in ("float32", "float16", *_QINT)},
    _OP["DEQUANTIZE"]: {d: ("float32",) for d in (*_QINT, "float16", "int4")},
    _OP["SOFTMAX"]: _SOFTMAX_TYPES,
    _OP["LOG_SOFTMAX"]: _SOFTMAX_TYPES,
    _OP["CAST"]: None,
}

# Operand counts the builtin kernels assume: "NAME min_in max_in min_out max_out"
# (* = unbounded). Several kernels (SPLIT, SLICE, STRIDED_SLICE, BATCH_MATMUL,
# ASSIGN_VARIABLE...) fetch operands by position without checking how many
# there are, so a corrupted operator code or operand list segfaults them
# (found by tests/test_fuzz.py's operator-code sweep). Ops not listed (LSTM
# family, control flow, custom ops) are left to the interpreter.
_ARITY_SPEC = """
ADD 2 2 1 1; SUB 2 2 1 1; MUL 2 2 1 1; DIV 2 2 1 1; MAXIMUM 2 2 1 1; MINIMUM 2 2 1 1
POW 2 2 1 1; SQUARED_DIFFERENCE 2 2 1 1; FLOOR_DIV 2 2 1 1; FLOOR_MOD 2 2 1 1
ATAN2 2 2 1 1; BITWISE_XOR 2 2 1 1; RIGHT_SHIFT 2 2 1 1; PRELU 2 2 1 1
LESS 2 2 1 1; LESS_EQUAL 2 2 1 1; GREATER 2 2 1 1; GREATER_EQUAL 2 2 1 1
EQUAL 2 2 1 1; NOT_EQUAL 2 2 1 1; LOGICAL_AND 2 2 1 1; LOGICAL_OR 2 2 1 1
AVERAGE_POOL_2D 1 1 1 1; MAX_POOL_2D 1 1 1 1; L2_POOL_2D 1 1 1 1
CONV_2D 2 3 1 1; DEPTHWISE_CONV_2D 2 3 1 1; FULLY_CONNECTED 2 3 1 2
TRANSPOSE_CONV 3 4 1 1; CONV_3D 2 3 1 1; CONV_3D_TRANSPOSE 3 4 1 1
CONCATENATION 1 * 1 1; PACK 1 * 1 1; ADD_N 1 * 1 1; UNPACK 1 1 1 *
SPLIT 2 2 1 *; SPLIT_V 3 3 1 *; TOPK_V2 2 2 2 2; UNIQUE 1 1 2 2
RESHAPE 1 2 1 1; SQUEEZE 1 1 1 1; EXPAND_DIMS 2 2 1 1; TRANSPOSE 2 2 1 1
SLICE 3 3 1 1; STRIDED_SLICE 4 4 1 1; GATHER 2 2 1 1; GATHER_ND 2 2 1 1
PAD 2 3 1 1; PADV2 2 3 1 1; MIRROR_PAD 2 2 1 1; TILE 2 2 1 1; BROADCAST_TO 2 2 1 1
SPACE_TO_DEPTH 1 1 1 1; DEPTH_TO_SPACE 1 1 1 1
SPACE_TO_BATCH_ND 3 3 1 1; BATCH_TO_SPACE_ND 3 3 1 1
RESIZE_BILINEAR 2 2 1 1; RESIZE_NEAREST_NEIGHBOR 2 2 1 1
MEAN 2 2 1 1; SUM 2 2 1 1; REDUCE_PROD 2 2 1 1; REDUCE_MAX 2 2 1 1
REDUCE_MIN 2 2 1 1; REDUCE_ANY 2 2 1 1; REDUCE_ALL 2 2 1 1
ARG_MAX 2 2 1 1; ARG_MIN 2 2 1 1; CUMSUM 2 2 1 1; BATCH_MATMUL 2 2 1 1
SELECT 3 3 1 1; SELECT_V2 3 3 1 1; ONE_HOT 4 4 1 1; FILL 2 2 1 1; RANGE 3 3 1 1
REVERSE_V2 2 2 1 1; REVERSE_SEQUENCE 2 2 1 1; SCATTER_ND 3 3 1 1
SEGMENT_SUM 2 2 1 1; MATRIX_DIAG 1 1 1 1; MATRIX_SET_DIAG 2 2 1 1
DYNAMIC_UPDATE_SLICE 3 3 1 1; BROADCAST_ARGS 2 2 1 1; EMBEDDING_LOOKUP 2 2 1 1
NON_MAX_SUPPRESSION_V4 5 5 2 2; NON_MAX_SUPPRESSION_V5 6 6 3 3
VAR_HANDLE 0 0 1 1; READ_VARIABLE 1 1 1 1; ASSIGN_VARIABLE 2 2 0 0
RELU 1 1 1 1; RELU6 1 1 1 1; RELU_N1_TO_1 1 1 1 1; RELU_0_TO_1 1 1 1 1
LOGISTIC 1 1 1 1; TANH 1 1 1 1; HARD_SWISH 1 1 1 1; LEAKY_RELU 1 1 1 1
ELU 1 1 1 1; GELU 1 1 1 1; SOFTMAX 1 1 1 1; LOG_SOFTMAX 1 1 1 1
QUANTIZE 1 1 1 1; DEQUANTIZE 1 1 1 1; FAKE_QUANT 1 1 1 1; CAST 1 1 1 1
ABS 1 1 1 1; NEG 1 1 1 1; EXP 1 1 1 1; LOG 1 1 1 1; SQRT 1 1 1 1; RSQRT 1 1 1 1
SQUARE 1 1 1 1; FLOOR 1 1 1 1; CEIL 1 1 1 1; ROUND 1 1 1 1; SIN 1 1 1 1
COS 1 1 1 1; SIGN 1 1 1 1; LOGICAL_NOT 1 1 1 1; ZEROS_LIKE 1 1 1 1
SHAPE 1 1 1 1; RANK 1 1 1 1; WHERE 1 1 1 1; DENSIFY 1 1 1 1; BITCAST 1 1 1 1
L2_NORMALIZATION 1 1 1 1; LOCAL_RESPONSE_NORMALIZATION 1 1 1 1
"""
_ARITY: dict[int, tuple[int, float, int, float]] = {}
for _line in _ARITY_SPEC.replace(";", "\n").splitlines():
    if _line.strip():
        _n, *_v = _line.split()
        _ARITY[_OP[_n]] = tuple(math.inf if x == "*" else int(x) for x in _v)

# Inputs that carry axes/shapes/paddings/permutations: XNNPACK and several
# kernels read them as int32/int64 straight from the buffer. A float tensor
# there (e.g. after a corrupted operator code turned RESHAPE into SPLIT) is read
# as garbage indices and segfaults XNNPACK (found by tests/test_fuzz.py).
_INDEX_INPUTS: dict[int, tuple[int, ...]] = {
    _OP["SPLIT"]: (0,), _OP["SPLIT_V"]: (1, 2), _OP["PAD"]: (1,),
    _OP["PADV2"]: (1,), _OP["MIRROR_PAD"]: (1,), _OP["TRANSPOSE"]: (1,),
    _OP["RESHAPE"]: (1,), _OP["SLICE"]: (1, 2), _OP["STRIDED_SLICE"]: (1, 2, 3),
    _OP["MEAN"]: (1,), _OP["SUM"]: (1,), _OP["REDUCE_PROD"]: (1,),
    _OP["REDUCE_MAX"]: (1,), _OP["REDUCE_MIN"]: (1,), _OP["REDUCE_ANY"]: (1,),
    _OP["REDUCE_ALL"]: (1,), _OP["RESIZE_BILINEAR"]: (1,),
    _OP["RESIZE_NEAREST_NEIGHBOR"]: (1,), _OP["EXPAND_DIMS"]: (1,),
    _OP["TILE"]: (1,), _OP["BROADCAST_TO"]: (1,), _OP["SPACE_TO_BATCH_ND"]: (1, 2),
    _OP["BATCH_TO_SPACE_ND"]: (1, 2), _OP["ARG_MAX"]: (1,), _OP["ARG_MIN"]: (1,),
    _OP["CUMSUM"]: (1,), _OP["TRANSPOSE_CONV"]: (0,), _OP["REVERSE_V2"]: (1,),
}
_INDEX_DTYPES = frozenset({"int32", "int64"})

# Offset-typed (vector/string) fields inside options tables, by union member:
# {union type: {field id: element size, 0 meaning a string}}. Every other field
# of an options table is a scalar. Used to verify the tables generically.
_OPTIONS_OFFSET_FIELDS: dict[int, dict[int, int]] = {
    3: {1: 4, 2: 4},  # ConcatEmbeddingsOptions
    8: {5: 1},  # FullyConnectedOptions.quant_spec
    17: {0: 4},  # ReshapeOptions.new_shape
    30: {0: 4},  # SqueezeOptions.squeeze_dims
    111: {0: 0, 1: 0},  # VarHandleOptions.container/shared_name
    115: {0: 4},  # BucketizeOptions.boundaries
}
_OPTIONS2_OFFSET_FIELDS: dict[int, dict[int, int]] = {
    2: {0: 8},  # StablehloBroadcastInDimOptions
    3: {0: 8, 1: 8, 2: 8},  # StablehloSliceOptions
    4: {0: 8, 1: 8, 2: 8, 3: 8, 4: 1, 7: 8, 10: 8, 13: 8, 16: 4},  # Convolution
    5: {0: 0, 2: 0, 4: 4, 5: 1},  # StablehloCustomCallOptions
    6: {0: 8},  # StablehloReduceOptions
    7: {1: 8, 2: 8, 3: 8},  # StablehloScatterOptions
    9: {0: 8},  # StablehloDynamicSliceOptions
    10: {0: 8, 1: 8, 2: 8},  # StablehloPadOptions
    12: {0: 8, 1: 8, 2: 8, 3: 8, 4: 4},  # StablehloDotGeneralOptions
    13: {0: 8, 1: 8, 2: 8, 3: 8, 4: 8},  # StablehloReduceWindowOptions
    16: {0: 8, 1: 8, 2: 8, 4: 8},  # StablehloGatherOptions
    17: {0: 8},  # StablehloTransposeOptions
    21: {0: 0, 2: 1},  # StableHLOCompositeOptions
    23: {0: 4},  # StablehloCaseOptions
}

# Sanity limits. A flatbuffer cannot address more than 2 GiB; larger models keep
# weights outside it (Buffer.offset/size), which the checks below allow.
_MAX_FLATBUFFER = 2**31 - 1
_MAX_TABLES = 1_000_000  # same default as the FlatBuffers C++ verifier
_MAX_RANK = 16
_MAX_TENSOR_BYTES = 2**31 - 1  # TFLite keeps many sizes in int32
_MAX_SUBGRAPHS = 10_000

_FLT_MIN = 1.1754943508222875e-38  # smallest normal float32

_FIX = "the file is corrupt or truncated; re-export/re-convert it"

_U8 = struct.Struct("<B")
_I8 = struct.Struct("<b")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HH = struct.Struct("<HH")


# --------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantParams:
    """Affine quantisation of one tensor: ``real = scale * (q - zero_point)``.

    Attributes:
        scales: One scale per tensor (per-tensor) or one per slice along
            ``quantized_dimension`` (per-channel, used for conv weights so each
            output channel keeps its own range instead of sharing the widest one).
        zero_points: Same length as ``scales``.
        quantized_dimension: Axis the per-channel parameters run along.
    """

    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int = 0

    @property
    def per_channel(self) -> bool:
        """True when there is more than one scale."""
        return len(self.scales) > 1

    @property
    def is_quantized(self) -> bool:
        """True when at least one scale is given."""
        return len(self.scales) > 0


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a subgraph.

    Attributes:
        index: Position in the subgraph's tensor list.
        name: Tensor name (may be empty).
        shape: Static shape; dynamic dimensions appear as 1 here and as -1 in
            ``shape_signature``.
        shape_signature: Shape with -1 for dynamic dimensions, or None when the
            file does not store one.
        dtype: numpy dtype name (``'int8'``, ``'float32'``...), or the TFLite
            name for types numpy lacks (``'string'``, ``'int4'``, ``'bfloat16'``,
            ``'resource'``, ``'variant'``...).
        type_code: TFLite ``TensorType`` enum value.
        buffer: Index into the model's buffer list (0 = no data).
        quantization: Affine quantisation, or None when the tensor has none.
        is_variable: True for state tensors (e.g. LSTM state).
        is_constant: True when the tensor's buffer holds data (weights, biases).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    dtype: str
    type_code: int
    buffer: int
    quantization: QuantParams | None
    is_variable: bool
    is_constant: bool


@dataclass(frozen=True)
class OperatorInfo:
    """One operator (node) of a subgraph, in execution order.

    Attributes:
        index: Position in the subgraph's operator list.
        opcode_index: Index into the model's operator-code table.
        op_name: Builtin name (``'CONV_2D'``), ``'CUSTOM:<code>'`` for custom
            ops, ``'UNKNOWN_<n>'`` for builtin codes newer than this table.
        builtin_code: ``BuiltinOperator`` value (32 for custom ops).
        version: Operator version (kernels select behaviour by it).
        inputs: Tensor indices; -1 marks an omitted optional input.
        outputs: Tensor indices.
    """

    index: int
    opcode_index: int
    op_name: str
    builtin_code: int
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class SubgraphInfo:
    """One subgraph: tensors, graph inputs/outputs (tensor indices) and operators."""

    name: str
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[OperatorInfo, ...]


@dataclass(frozen=True)
class SignatureInfo:
    """A named entry point: signature input/output names -> tensor indices."""

    key: str
    subgraph_index: int
    inputs: dict[str, int]
    outputs: dict[str, int]


@dataclass(frozen=True)
class ModelInfo:
    """Everything :func:`parse_model` learned about a verified model.

    Holds a reference to the caller's bytes (not a copy) so that
    :meth:`tensor_data` can return constant tensors as zero-copy numpy views.

    Attributes:
        schema_version: TFLite schema version (always 3 for accepted models).
        description: Producer description (e.g. ``'MLIR Converted.'``).
        subgraphs: Subgraph 0 is the main graph.
        metadata: Metadata entries, name -> raw bytes (first entry wins on
            duplicate names).
        signatures: Signature definitions (may be empty for old models).
        num_buffers: Length of the model's buffer table.
        size_bytes: Size of the whole file.
    """

    schema_version: int
    description: str
    subgraphs: tuple[SubgraphInfo, ...]
    metadata: dict[str, bytes]
    signatures: tuple[SignatureInfo, ...]
    num_buffers: int
    size_bytes: int
    _data: Any = field(default=None, repr=False, compare=False)
    _buffer_spans: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)

    def op_histogram(self, subgraph: int = 0) -> dict[str, int]:
        """Count operators by name, in order of first appearance.

        Args:
            subgraph: Subgraph index (0 = main graph).

        Returns:
            ``{op_name: count}``.
        """
        hist: dict[str, int] = {}
        for op in self._subgraph(subgraph).operators:
            hist[op.op_name] = hist.get(op.op_name, 0) + 1
        return hist

    def tensor_data(self, subgraph: int, tensor_index: int) -> np.ndarray | None:
        """Return a constant tensor's contents as a read-only numpy view.

        Args:
            subgraph: Subgraph index.
            tensor_index: Tensor index within that subgraph.

        Returns:
            The data shaped like the tensor, or None for tensors without
            constant data (activations, graph inputs). Types numpy has no dtype
            for (string, int4, bfloat16...) come back as the raw ``uint8`` bytes,
            flat, because their layout needs type-specific decoding.

        Raises:
            IndexError: ``subgraph`` or ``tensor_index`` is out of range.
        """
        sg = self._subgraph(subgraph)
        if not 0 <= tensor_index < len(sg.tensors):
            raise IndexError(
                f"tensor index {tensor_index} out of range: subgraph {subgraph} has "
                f"{len(sg.tensors)} tensors"
            )
        t = sg.tensors[tensor_index]
        if not t.is_constant:
            return None
        start, length = self._buffer_spans[t.buffer]
        if t.dtype not in _NUMPY_DTYPES:
            arr = np.frombuffer(self._data, dtype=np.uint8, count=length, offset=start)
        else:
            dt = np.dtype(t.dtype).newbyteorder("<")
            arr = np.frombuffer(self._data, dtype=dt, count=length // dt.itemsize,
                                offset=start).reshape(t.shape)
        # Views of a bytearray/memoryview would be writable; weights are not ours
        # to change.
        arr.flags.writeable = False
        return arr

    def _subgraph(self, index: int) -> SubgraphInfo:
        if not 0 <= index < len(self.subgraphs):
            raise IndexError(
                f"subgraph index {index} out of range: the model has "
                f"{len(self.subgraphs)} subgraph(s)"
            )
        return self.subgraphs[index]


# --------------------------------------------------------------------------
# Flatbuffer reading with bounds checks
# --------------------------------------------------------------------------


class _Invalid(Exception):
    """Internal: a structural problem, turned into InvalidModelError at the top."""


class _Unsupported(_Invalid):
    """Internal: a valid feature edgelite cannot load; UnsupportedModelError."""


class _Table:
    """A verified flatbuffer table: position, vtable and inline size."""

    __slots__ = ("r", "pos", "vt", "nfields", "size", "where")

    def __init__(self, r: _Reader, pos: int, where: str):
        self.r = r
        self.where = where
        r.tables += 1
        if r.tables > _MAX_TABLES:
            raise _Invalid(f"{where}: more than {_MAX_TABLES} tables in the file")
        if pos % 4 or pos + 4 > r.n:
            raise _Invalid(f"{where}: table offset {pos} misaligned or past the end "
                           f"of the {r.n}-byte file")
        vt = pos - _I32.unpack_from(r.b, pos)[0]
        if vt < 0 or vt % 2 or vt + 4 > r.n:
            raise _Invalid(f"{where}: vtable offset {vt} out of bounds")
        vsize, tsize = _HH.unpack_from(r.b, vt)
        if vsize < 4 or vsize % 2 or vt + vsize > r.n:
            raise _Invalid(f"{where}: vtable size {vsize} invalid")
        if tsize < 4 or pos + tsize > r.n:
            raise _Invalid(f"{where}: table size {tsize} runs past the end of the file")
        self.pos = pos
        self.vt = vt
        self.nfields = (vsize - 4) // 2
        self.size = tsize

    def _field(self, fid: int, size: int) -> int:
        """Absolute position of field ``fid`` (0 when absent), bounds-checked."""
        if fid >= self.nfields:
            return 0
        off = _U16.unpack_from(self.r.b, self.vt + 4 + 2 * fid)[0]
        if off == 0:
            return 0
        if off < 4 or off + size > self.size:
            raise _Invalid(f"{self.where}: field {fid} lies outside its table")
        loc = self.pos + off
        if loc % size:
            raise _Invalid(f"{self.where}: field {fid} is misaligned")
        return loc

    def scalar(self, fid: int, st: struct.Struct, default):
        loc = self._field(fid, st.size)
        return st.unpack_from(self.r.b, loc)[0] if loc else default

    def has(self, fid: int) -> bool:
        if fid >= self.nfields:
            return False
        return _U16.unpack_from(self.r.b, self.vt + 4 + 2 * fid)[0] != 0

    def _target(self, fid: int) -> int:
        loc = self._field(fid, 4)
        if not loc:
            return 0
        rel = _U32.unpack_from(self.r.b, loc)[0]
        target = loc + rel
        if rel == 0 or target >= self.r.limit:
            raise _Invalid(f"{self.where}: field {fid} points outside the file")
        return target

    def table(self, fid: int, where: str) -> _Table | None:
        t = self._target(fid)
        return _Table(self.r, t, where) if t else None

    def vector(self, fid: int, elem: int, what: str) -> tuple[int, int] | None:
        """Return ``(start, count)`` of a scalar vector, or None when absent."""
        t = self._target(fid)
        if not t:
            return None
        return self.r.vector_at(t, elem, f"{self.where}: {what}")

    def ints(self, fid: int, what: str) -> tuple[int, ...] | None:
        v = self.vector(fid, 4, what)
        if v is None:
            return None
        start, count = v
        return struct.unpack_from(f"<{count}i", self.r.b, start)

    def string(self, fid: int, what: str) -> str | None:
        t = self._target(fid)
        if not t:
            return None
        return self.r.string_at(t, f"{self.where}: {what}")

    def tables(self, fid: int, what: str) -> Iterator[_Table]:
        """Yield the tables of a vector-of-tables field (nothing when absent)."""
        v = self.vector(fid, 4, what)
        if v is None:
            return
        start, count = v
        r = self.r
        for i in range(count):
            loc = start + 4 * i
            rel = _U32.unpack_from(r.b, loc)[0]
            if rel == 0 or loc + rel >= r.limit:
                raise _Invalid(f"{self.where}: {what}[{i}] points outside the file")
            yield _Table(r, loc + rel, f"{what}[{i}]")


class _Reader:
    __slots__ = ("b", "n", "limit", "tables")

    def __init__(self, b, n: int):
        self.b = b
        self.n = n
        # Offsets inside the flatbuffer itself cannot exceed 2 GiB.
        self.limit = min(n, _MAX_FLATBUFFER)
        self.tables = 0

    def vector_at(self, pos: int, elem: int, where: str) -> tuple[int, int]:
        if pos % 4 or pos + 4 > self.limit:
            raise _Invalid(f"{where}: vector at offset {pos} misaligned or out of bounds")
        count = _U32.unpack_from(self.b, pos)[0]
        start = pos + 4
        if count * elem > self.limit - start:
            raise _Invalid(f"{where}: vector of {count} elements runs past the end "
                           f"of the file")
        return start, count

    def string_at(self, pos: int, where: str) -> str:
        start, length = self.vector_at(pos, 1, where)
        end = start + length
        if end >= self.limit or self.b[end] != 0:
            raise _Invalid(f"{where}: string is not NUL-terminated")
        try:
            return bytes(self.b[start:end]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Invalid(f"{where}: string is not valid UTF-8 ({exc.reason} at "
                           f"byte {exc.start})") from None


# --------------------------------------------------------------------------
# Format sniffing for friendly errors
# --------------------------------------------------------------------------


def _sniff(head: bytes) -> str | None:
    """Name the file format when it is a common non-TFLite model format."""
    convert = "; convert it with `edgelite convert`"
    if head.startswith(b"PK\x03\x04"):
        return "this looks like a zip archive (a Keras .keras file?)" + convert
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "this looks like an HDF5 file (a Keras .h5 model?)" + convert
    if head.startswith(b"version https://git-lfs"):
        return ("this is a Git LFS pointer file, not the model; fetch the real file "
                "with `git lfs pull`")
    if head.startswith(b"\x1f\x8b"):
        return "this is a gzip-compressed file; decompress it first"
    if head[8:12] == _FILE_IDENTIFIER:
        return ("this is a size-prefixed TFLite flatbuffer; strip the first 4 bytes "
                "(the size prefix)")
    low = head[:4096].lower()
    if head[:1] == b"\x08" and (b"onnx" in low or b"pytorch" in low):
        return "this looks like an ONNX model" + convert
    if head[:2] == b"\x08\x01" and head[2:3] == b"\x12":
        return "this looks like a TensorFlow SavedModel (saved_model.pb)" + convert
    if head.lstrip()[:1] in (b"{", b"<"):
        return "this is a text file (JSON/HTML), not a TFLite model"
    return None


# --------------------------------------------------------------------------
# Parsing and verification
# --------------------------------------------------------------------------


def _as_buffer(data) -> tuple[Any, int]:
    if isinstance(data, (bytes, bytearray)):
        return data, len(data)
    if isinstance(data, memoryview):
        mv = data if (data.format == "B" and data.ndim == 1) else data.cast("B")
        if not mv.contiguous:
            raise InvalidModelError("the model memoryview is not contiguous; pass bytes")
        return mv, mv.nbytes
    raise TypeError(
        f"model data must be bytes, bytearray or memoryview, not {type(data).__name__}"
    )


def parse_model(data: bytes | bytearray | memoryview) -> ModelInfo:
    """Parse and fully verify a TFLite model held in memory.

    The checks cover the flatbuffer structure (every offset, vtable, vector and
    string in bounds and aligned, names NUL-terminated UTF-8, table count bounded)
    and the model semantics the interpreter relies on (schema version, tensor
    types, shapes and sizes, buffer/tensor/subgraph/opcode indices, constant-data
    sizes, quantisation parameters, operator options kernels divide by, subgraph
    call cycles). A model that passes can be handed to the TFLite interpreter
    without risking a native crash from malformed structure.

    The returned :class:`ModelInfo` keeps a reference to ``data`` (no copy); do
    not mutate a bytearray afterwards if you use :meth:`ModelInfo.tensor_data`.

    Args:
        data: The complete ``.tflite`` file contents.

    Returns:
        The parsed model description.

    Raises:
        InvalidModelError: The bytes are not a valid TFLite model; the message
            names the offending element and how to fix it.
        UnsupportedModelError: A valid model using a feature edgelite cannot
            load (tensor data in external side files).
        TypeError: ``data`` is not bytes-like.
    """
    buf, n = _as_buffer(data)
    if n < 8:
        raise InvalidModelError(
            f"not a TFLite model: only {n} bytes (a model is at least a few hundred); "
            f"{_FIX}"
        )
    if bytes(buf[4:8]) != _FILE_IDENTIFIER:
        head = bytes(buf[:4096])
        hint = _sniff(head) or (
            "the file identifier at bytes 4..8 is "
            f"{head[4:8]!r}, expected b'TFL3'; {_FIX}"
        )
        raise InvalidModelError(f"not a TFLite model: {hint}")
    try:
        return _Parser(buf, n).parse()
    except _Unsupported as exc:
        raise UnsupportedModelError(f"unsupported TFLite model: {exc}") from None
    except _Invalid as exc:
        raise InvalidModelError(f"invalid TFLite model: {exc}; {_FIX}") from None
    except (struct.error, IndexError, KeyError, OverflowError, ValueError) as exc:
        # Defensive: every read is bounds-checked, so this means a check is
        # missing; still a typed error, never an untyped one from a bad file.
        raise InvalidModelError(
            f"invalid TFLite model ({type(exc).__name__}: {exc}); {_FIX}"
        ) from None


def read_model_info(path_or_bytes) -> ModelInfo:
    """Read and verify a TFLite model from a path or from bytes.

    Args:
        path_or_bytes: A file path (``str`` or ``os.PathLike``) or the model bytes
            (``bytes``/``bytearray``/``memoryview``).

    Returns:
        The parsed model description (see :func:`parse_model`).

    Raises:
        ModelNotFoundError: The path does not exist or is a directory.
        InvalidModelError: The file is empty or not a valid TFLite model.
        UnsupportedModelError: See :func:`parse_model`.
        TypeError: The argument is neither a path nor bytes.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return parse_model(path_or_bytes)
    if not isinstance(path_or_bytes, (str, os.PathLike)):
        raise TypeError(
            "expected a model path (str/PathLike) or bytes, not "
            f"{type(path_or_bytes).__name__}"
        )
    path = os.fspath(path_or_bytes)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ModelNotFoundError(
                f"{path!r} is a TensorFlow SavedModel directory, not a .tflite file; "
                "convert it with `edgelite convert`"
            )
        raise ModelNotFoundError(f"{path!r} is a directory; pass the path of a .tflite file")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"model file {path!r} does not exist; check the path"
        ) from None
    except IsADirectoryError:
        raise ModelNotFoundError(f"{path!r} is a directory; pass a .tflite file") from None
    if not data:
        raise InvalidModelError(f"model file {path!r} is empty; {_FIX}")
    try:
        return parse_model(data)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{path}: {exc}") from None
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{path}: {exc}") from None


def _prod(shape) -> int:
    p = 1
    for d in shape:
        p *= d
    return p


def _broadcast(a, b) -> tuple[int, ...] | None:
    """numpy-style broadcast of two static shapes, or None when incompatible."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


def _out_size(size: int, k: int, stride: int, dilation: int, same: bool) -> int:
    """Spatial output size as TFLite computes it for SAME/VALID padding."""
    if same:
        return (size + stride - 1) // stride
    eff = (k - 1) * dilation + 1
    return (size - eff + stride) // stride if size >= eff else 0


class _Parser:
    def __init__(self, buf, n: int):
        self.r = _Reader(buf, n)
        self.b = buf
        self.n = n

    # -- top level ---------------------------------------------------------

    def parse(self) -> ModelInfo:
        r = self.r
        root = _U32.unpack_from(self.b, 0)[0]
        if root == 0 or root >= r.limit:
            raise _Invalid(f"root table offset {root} outside the {self.n}-byte file")
        model = _Table(r, root, "model")
        version = model.scalar(0, _U32, 0)
        if version != _SCHEMA_VERSION:
            raise _Invalid(
                f"schema version {version} is not supported (expected "
                f"{_SCHEMA_VERSION})"
            )
        self.spans = self._buffers(model)
        self.nbuf = len(self.spans)
        opcodes = self._opcodes(model)
        description = model.string(3, "description") or ""

        sg_tables = list(model.tables(2, "subgraphs"))
        if not sg_tables:
            raise _Invalid("the model has no subgraphs")
        if len(sg_tables) > _MAX_SUBGRAPHS:
            raise _Invalid(f"{len(sg_tables)} subgraphs (limit {_MAX_SUBGRAPHS})")
        self.nsub = len(sg_tables)
        self.calls: dict[int, set[int]] = {}
        subgraphs = tuple(
            self._subgraph(i, t, opcodes) for i, t in enumerate(sg_tables)
        )
        self._check_call_cycles()

        mb = model.ints(5, "metadata_buffer")
        for i, bidx in enumerate(mb or ()):
            if not 0 <= bidx < self.nbuf:
                raise _Invalid(f"metadata_buffer[{i}] = {bidx} out of range (model has "
                               f"{self.nbuf} buffers)")
        metadata: dict[str, bytes] = {}
        for i, mt in enumerate(model.tables(6, "metadata")):
            name = mt.string(0, "name") or ""
            bidx = mt.scalar(1, _U32, 0)
            if bidx >= self.nbuf:
                raise _Invalid(f"metadata {i} {name!r}: buffer index {bidx} out of "
                               f"range (model has {self.nbuf} buffers)")
            start, length = self.spans[bidx]
            metadata.setdefault(name, bytes(self.b[start:start + length]))

        signatures = tuple(
            self._signature(i, t, subgraphs)
            for i, t in enumerate(model.tables(7, "signature_defs"))
        )
        self._external_buffers(model)
        return ModelInfo(
            schema_version=version,
            description=description,
            subgraphs=subgraphs,
            metadata=metadata,
            signatures=signatures,
            num_buffers=self.nbuf,
            size_bytes=self.n,
            _data=self.b,
            _buffer_spans=tuple(self.spans),
        )

    def _buffers(self, model: _Table) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for i, bt in enumerate(model.tables(4, "buffers")):
            bt.where = f"buffer {i}"
            data = bt.vector(0, 1, "data")
            offset = bt.scalar(1, _U64, 0)
            size = bt.scalar(2, _U64, 0)
            # offset 0 = no external data; 1 is a placeholder some writers leave
            # while serialising (TFLite also ignores offset <= 1).
            if offset > 1:
                if data is not None and data[1]:
                    raise _Invalid(f"buffer {i}: has both inline data and an external "
                                   f"offset")
                if offset + size > self.n:
                    raise _Invalid(
                        f"buffer {i}: external data [{offset}, {offset + size}) lies "
                        f"outside the {self.n}-byte file"
                    )
                spans.append((offset, size))
            elif data is not None:
                spans.append(data)
            else:
                spans.append((0, 0))
        return spans

    def _opcodes(self, model: _Table) -> list[tuple[str, int, int]]:
        out = []
        for i, t in enumerate(model.tables(1, "operator_codes")):
            t.where = f"operator code {i}"
            deprecated = t.scalar(0, _I8, 0)
            custom = t.string(1, "custom_code")
            version = t.scalar(2, _I32, 1)
            builtin = t.scalar(3, _I32, 0)
            # Old files only set the int8 field, new ones set both; codes >= 127
            # only fit the int32 field. The schema says to take the larger.
            code = max(deprecated, builtin)
            if code < 0:
                raise _Invalid(f"operator code {i}: negative builtin code {code}")
            if version < 1:
                raise _Invalid(f"operator code {i}: version {version} must be >= 1")
            if code == _CUSTOM:
                if not custom:
                    raise _Invalid(f"operator code {i}: CUSTOM operator without a "
                                   f"custom_code name")
                name = f"CUSTOM:{custom}"
            else:
                name = BUILTIN_OP_NAMES.get(code, f"UNKNOWN_{code}")
            out.append((name, code, version))
        return out

    # -- subgraphs -----------------------------------------------------------

    def _subgraph(self, si: int, st: _Table, opcodes) -> SubgraphInfo:
        st.where = f"subgraph {si}"
        pre = "" if si == 0 else f"subgraph {si} "
        tensors = tuple(
            self._tensor(pre, i, t) for i, t in enumerate(st.tables(0, "tensors"))
        )
        nt = len(tensors)
        inputs = st.ints(1, "inputs") or ()
        outputs = st.ints(2, "outputs") or ()
        for kind, idxs in (("input", inputs), ("output", outputs)):
            for j, ti in enumerate(idxs):
                if not 0 <= ti < nt:
                    raise _Invalid(f"{pre or 'subgraph 0 '}{kind} {j}: tensor index {ti} "
                                   f"out of range (subgraph has {nt} tensors)")
        for ti in inputs:
            t = tensors[ti]
            if t.is_constant and not t.is_variable:
                raise _Invalid(f"{pre}tensor {ti} {t.name!r}: a graph input cannot be "
                               f"a constant")
        name = st.string(4, "name") or ""
        ops = tuple(
            self._operator(pre, si, i, t, opcodes, tensors)
            for i, t in enumerate(st.tables(3, "operators"))
        )
        self._check_dataflow(pre, tensors, inputs, outputs, ops)
        return SubgraphInfo(name=name, tensors=tensors, inputs=tuple(inputs),
                            outputs=tuple(outputs), operators=ops)

    @staticmethod
    def _check_dataflow(pre, tensors, inputs, outputs, ops) -> None:
        # Operators run in file order. A tensor read before anything wrote it has
        # no data: the interpreter then fails with "Input tensor N lacks data" or
        # hands out a null buffer. Converters always emit topologically sorted
        # graphs, so this only rejects damaged files.
        ready = set(inputs)
        ready.update(t.index for t in tensors
                     if t.is_constant or t.is_variable or 0 in t.shape)
        for op in ops:
            for j, ti in enumerate(op.inputs):
                if ti >= 0 and ti not in ready:
                    raise _Invalid(
                        f"{pre}operator {op.index} ({op.op_name}): input {j} reads "
                        f"tensor {ti} {tensors[ti].name!r} before any operator writes "
                        f"it (not a graph input or a constant either)"
                    )
            ready.update(op.outputs)
        for j, ti in enumerate(outputs):
            if ti not in ready:
                raise _Invalid(f"{pre or 'subgraph 0 '}output {j}: tensor {ti} "
                               f"{tensors[ti].name!r} is never written")

    def _tensor(self, pre: str, i: int, t: _Table) -> TensorInfo:
        t.where = f"{pre}tensor {i}"
        name = t.string(3, "name") or ""
        where = f"{pre}tensor {i} {name!r}"
        t.where = where
        shape = t.ints(0, "shape") or ()
        type_code = t.scalar(1, _I8, 0)
        if type_code not in _TENSOR_TYPES:
            raise _Invalid(f"{where}: unknown tensor type {type_code}")
        dtype, itemsize = _TENSOR_TYPES[type_code]
        bidx = t.scalar(2, _U32, 0)
        if bidx >= self.nbuf:
            raise _Invalid(f"{where}: buffer index {bidx} out of range (model has "
                           f"{self.nbuf} buffers)")
        if len(shape) > _MAX_RANK:
            raise _Invalid(f"{where}: rank {len(shape)} exceeds {_MAX_RANK}")
        for d in shape:
            if d < 0:
                raise _Invalid(f"{where}: negative dimension in shape {list(shape)}")
        count = _prod(shape)
        if count * (itemsize or 1) > _MAX_TENSOR_BYTES:
            raise _Invalid(f"{where}: shape {list(shape)} is implausibly large "
                           f"({count} elements)")
        sig = t.ints(7, "shape_signature")
        if sig is not None:
            if len(sig) != len(shape):
                raise _Invalid(f"{where}: shape_signature {list(sig)} and shape "
                               f"{list(shape)} differ in rank")
            for d, s in zip(shape, sig):
                if s < -1 or (s != -1 and s != d):
                    raise _Invalid(f"{where}: shape_signature {list(sig)} does not "
                                   f"match shape {list(shape)}")
        is_variable = bool(t.scalar(5, _U8, 0))
        sparse = t.table(6, f"{where} sparsity")
        if sparse is not None:
            self._sparsity(where, sparse, len(shape))
        nbytes = self.spans[bidx][1]
        is_constant = nbytes > 0
        if is_constant and sparse is None:
            self._check_constant_size(where, dtype, itemsize, type_code, shape, count,
                                      bidx)
        q = t.table(4, f"{where} quantization")
        quant = self._quant(where, q, dtype, shape) if q is not None else None
        if t.has(9):
            for _ in t.tables(9, f"{where} variant_tensors"):
                pass  # structural check only; subtypes only describe variants
        if t.scalar(10, _U32, 0):
            # The data lives in a side file that only the interpreter's file
            # loader resolves; from bytes the tensor would have no data.
            raise _Unsupported(f"{where}: its data is in an external buffer file "
                               f"(Tensor.external_buffer); re-convert the model with "
                               f"the weights inside the .tflite file")
        return TensorInfo(
            index=i, name=name, shape=tuple(shape),
            shape_signature=None if sig is None else tuple(sig), dtype=dtype,
            type_code=type_code, buffer=bidx, quantization=quant,
            is_variable=is_variable, is_constant=is_constant,
        )

    def _check_constant_size(self, where, dtype, itemsize, type_code, shape, count,
                             bidx):
        nbytes = self.spans[bidx][1]
        if itemsize is not None:
            if nbytes != count * itemsize:
                raise _Invalid(
                    f"{where}: buffer {bidx} holds {nbytes} bytes but shape "
                    f"{list(shape)} of {dtype} needs {count * itemsize}"
                )
        elif type_code in _PACKED_BITS:
            packed = (count * _PACKED_BITS[type_code] + 7) // 8
            if nbytes not in (packed, count):  # packed, or one value per byte
                raise _Invalid(
                    f"{where}: buffer {bidx} holds {nbytes} bytes but shape "
                    f"{list(shape)} of {dtype} needs {packed} (packed) or {count}"
                )
        elif dtype == "string":
            self._check_string_buffer(where, bidx, count)
        # resource/variant constants have no fixed layout to check.

    def _check_string_buffer(self, where: str, bidx: int, count: int) -> None:
        # TFLite string tensors: int32 n, int32 offsets[n + 1], then the bytes;
        # offsets are from the buffer start and must be non-decreasing.
        start, nbytes = self.spans[bidx]
        if nbytes < 4:
            raise _Invalid(f"{where}: string buffer {bidx} too short")
        num = _I32.unpack_from(self.b, start)[0]
        if num < 0 or 4 * (num + 2) > nbytes:
            raise _Invalid(f"{where}: string buffer {bidx} declares {num} strings but "
                           f"holds {nbytes} bytes")
        if num != count:
            raise _Invalid(f"{where}: string buffer {bidx} holds {num} strings but the "
                           f"shape needs {count}")
        offs = struct.unpack_from(f"<{num + 1}i", self.b, start + 4)
        prev = 4 * (num + 2)
        for o in offs:
            if o < prev or o > nbytes:
                raise _Invalid(f"{where}: string buffer {bidx} has a bad offset {o}")
            prev = o

    def _quant(self, where: str, q: _Table, dtype: str, shape) -> QuantParams | None:
        mn = q.vector(0, 4, "min")
        mx = q.vector(1, 4, "max")
        if (mn is None) != (mx is None) or (mn and mx and mn[1] != mx[1]):
            raise _Invalid(f"{where}: quantization min/max lengths differ")
        sv = q.vector(2, 4, "scale")
        zv = q.vector(3, 8, "zero_point")
        dtype_q = q.scalar(4, _U8, 0)
        if dtype_q:
            self._quant_details(where, q, dtype_q)
        qdim = q.scalar(6, _I32, 0)
        if sv is None or sv[1] == 0:
            if zv is not None and zv[1]:
                raise _Invalid(f"{where}: quantization has zero points but no scales")
            return None
        nscale = sv[1]
        scales = struct.unpack_from(f"<{nscale}f", self.b, sv[0])
        if zv is None or zv[1] != nscale:
            got = 0 if zv is None else zv[1]
            raise _Invalid(f"{where}: {nscale} quantization scale(s) but {got} "
                           f"zero point(s)")
        zps = struct.unpack_from(f"<{nscale}q", self.b, zv[0])
        if nscale > 1:
            if not 0 <= qdim < len(shape):
                raise _Invalid(f"{where}: quantized_dimension {qdim} out of range for "
                               f"rank-{len(shape)} tensor")
            if shape[qdim] != nscale:
                raise _Invalid(
                    f"{where}: {nscale} per-channel scales but dimension {qdim} of "
                    f"shape {list(shape)} has {shape[qdim]} channels"
                )
        elif qdim < 0 or (shape and qdim >= len(shape)):
            raise _Invalid(f"{where}: quantized_dimension {qdim} out of range")
        zp_range = _QUANT_RANGES.get(dtype)
        for s in scales:
            if not math.isfinite(s) or s < 0 or (zp_range is not None and s == 0):
                raise _Invalid(f"{where}: quantization scale {s!r} must be finite and "
                               f"> 0")
            if 0 < s < _FLT_MIN:
                # Subnormal scales overflow the rescale multipliers kernels derive
                # from scale ratios; TFLite's QUANTIZE (requantize) kernel segfaults
                # on them (found by tests/test_fuzz.py).
                raise _Invalid(f"{where}: quantization scale {s!r} is subnormal "
                               f"(< {_FLT_MIN:.3g})")
        if zp_range is not None:
            lo, hi = zp_range
            for z in zps:
                if not lo <= z <= hi:
                    raise _Invalid(f"{where}: zero point {z} out of range [{lo}, {hi}] "
                                   f"for {dtype}")
        return QuantParams(scales=tuple(scales), zero_points=tuple(zps),
                           quantized_dimension=qdim)

    def _quant_details(self, where: str, q: _Table, kind: int) -> None:
        d = q.table(5, f"{where} quantization details")
        if d is None:
            return
        if kind == 1:  # CustomQuantization{custom:[ubyte]}
            d.vector(0, 1, "custom")
        elif kind in (2, 3):  # Blockwise / MultiAxis: int vectors + scalars
            for fid in (0, 1, 3):
                d.vector(fid, 4, "details vector")
        else:
            raise _Invalid(f"{where}: unknown quantization details type {kind}")

    def _sparsity(self, where: str, sp: _Table, rank: int) -> None:
        order = sp.ints(0, "traversal_order") or ()
        block_map = sp.ints(1, "block_map") or ()
        dims = list(sp.tables(2, "dim_metadata"))
        n = len(order)
        if sorted(order) != list(range(n)) or n < rank:
            raise _Invalid(f"{where}: sparsity traversal_order {list(order)} is not a "
                           f"permutation covering the tensor's rank {rank}")
        if len(dims) != n:
            raise _Invalid(f"{where}: sparsity has {len(dims)} dim_metadata for "
                           f"{n} traversal dimensions")
        for b in block_map:
            if not 0 <= b < rank:
                raise _Invalid(f"{where}: sparsity block_map entry {b} out of range")
        elem = {1: 4, 2: 2, 3: 1}
        for d in dims:
            fmt = d.scalar(0, _I8, 0)
            if fmt not in (0, 1):
                raise _Invalid(f"{where}: unknown sparse dimension format {fmt}")
            if d.scalar(1, _I32, 0) < 0:
                raise _Invalid(f"{where}: negative sparse dense_size")
            for type_fid, val_fid in ((2, 3), (4, 5)):
                kind = d.scalar(type_fid, _U8, 0)
                vt = d.table(val_fid, f"{where} sparse index vector")
                if fmt == 1 and (kind not in elem or vt is None):
                    raise _Invalid(f"{where}: sparse CSR dimension without index "
                                   f"vectors")
                if vt is not None:
                    if kind not in elem:
                        raise _Invalid(f"{where}: unknown sparse index type {kind}")
                    vt.vector(0, elem[kind], "values")

    # -- operators -----------------------------------------------------------

    def _operator(self, pre: str, si: int, i: int, t: _Table, opcodes,
                  tensors) -> OperatorInfo:
        nt = len(tensors)
        t.where = f"{pre}operator {i}"
        oi = t.scalar(0, _U32, 0)
        if oi >= len(opcodes):
            raise _Invalid(f"{pre}operator {i}: opcode index {oi} out of range (model "
                           f"has {len(opcodes)} operator codes)")
        name, code, version = opcodes[oi]
        where = f"{pre}operator {i} ({name})"
        t.where = where
        inputs = t.ints(1, "inputs") or ()
        outputs = t.ints(2, "outputs") or ()
        arity = _ARITY.get(code)
        if arity is not None and not (arity[0] <= len(inputs) <= arity[1]
                                      and arity[2] <= len(outputs) <= arity[3]):
            def span(lo, hi):
                return f"{lo}" if lo == hi else f"{lo}+" if hi == math.inf else f"{lo}-{hi}"
            raise _Invalid(
                f"{where}: has {len(inputs)} input(s) and {len(outputs)} output(s); "
                f"{name} takes {span(*arity[:2])} input(s) and {span(*arity[2:])} "
                f"output(s)"
            )
        optional = _OPTIONAL_INPUTS.get(code, ())
        for j, ti in enumerate(inputs):
            if not -1 <= ti < nt:
                raise _Invalid(f"{where}: input {j} tensor index {ti} out of range "
                               f"(subgraph has {nt} tensors)")
            if ti == -1 and not (optional is _ANY_BUT_FIRST and j > 0 or j in optional
                                 or code == _CUSTOM):
                # Kernels fetch mandatory inputs without a null check; -1 there
                # segfaults (found by tests/test_fuzz.py with ADD).
                raise _Invalid(f"{where}: input {j} is omitted (-1) but is not an "
                               f"optional input of {name}")
        for j in _INDEX_INPUTS.get(code, ()):
            if j < len(inputs) and inputs[j] >= 0 and \
                    tensors[inputs[j]].dtype not in _INDEX_DTYPES:
                t_ = tensors[inputs[j]]
                raise _Invalid(f"{where}: input {j} (tensor {t_.index} {t_.name!r}) "
                               f"holds axes/sizes and must be int32 or int64, not "
                               f"{t_.dtype}")
        for j, ti in enumerate(outputs):
            if not 0 <= ti < nt:
                raise _Invalid(f"{where}: output {j} tensor index {ti} out of range "
                               f"(subgraph has {nt} tensors)")
            if tensors[ti].is_constant and not tensors[ti].is_variable:
                # Kernels write their outputs; a constant lives in the (possibly
                # read-only mmapped) model file.
                raise _Invalid(f"{where}: output {j} is the constant tensor {ti} "
                               f"{tensors[ti].name!r}")
        for j, ti in enumerate(t.ints(8, "intermediates") or ()):
            if not 0 <= ti < nt:
                raise _Invalid(f"{where}: intermediate {j} tensor index {ti} out of "
                               f"range")
        mut = t.vector(7, 1, "mutating_variable_inputs")
        if mut is not None and mut[1] > len(inputs):
            raise _Invalid(f"{where}: mutating_variable_inputs longer than inputs")
        t.vector(5, 1, "custom_options")
        lco = t.scalar(9, _U64, 0)
        lcs = t.scalar(10, _U64, 0)
        if lco > 1 and lco + lcs > self.n:
            raise _Invalid(f"{where}: large custom options [{lco}, {lco + lcs}) lie "
                           f"outside the {self.n}-byte file")

        opt_type = t.scalar(3, _U8, 0)
        opts = t.table(4, f"{where} builtin_options")
        if opts is not None:
            self._generic_options(opts, _OPTIONS_OFFSET_FIELDS.get(opt_type, {}))
        opt2_type = t.scalar(11, _U8, 0)
        opts2 = t.table(12, f"{where} builtin_options_2")
        if opts2 is not None:
            self._generic_options(opts2, _OPTIONS2_OFFSET_FIELDS.get(opt2_type, {}))

        required = _REQUIRED_OPTIONS.get(code)
        if required is not None and (opt_type != required or opts is None):
            raise _Invalid(f"{where}: builtin options type {opt_type} does not match "
                           f"the operator (expected {required})")
        if opts is not None:
            self._check_options(where, si, code, opt_type, opts)
            if opt_type in (_OPT_SPLIT, _OPT_SPLIT_V):
                # XNNPACK sizes its split from num_splits, not the output list.
                ns = opts.scalar(0, _I32, 0)
                if ns != len(outputs):
                    raise _Invalid(f"{where}: num_splits is {ns} but the operator has "
                                   f"{len(outputs)} output(s)")
        if code in _SHAPE_RULES:
            self._check_shapes(where, code, opts, inputs, outputs, tensors)
        return OperatorInfo(index=i, opcode_index=oi, op_name=name, builtin_code=code,
                            version=version, inputs=tuple(inputs),
                            outputs=tuple(outputs))

    def _generic_options(self, opts: _Table, offset_fields: dict[int, int]) -> None:
        """Bounds-check every field of an options table whose layout we only know
        in outline (which fields are vectors/strings; the rest are scalars)."""
        for fid in range(opts.nfields):
            elem = offset_fields.get(fid)
            if elem is None:
                if opts.has(fid):
                    opts._field(fid, 1)
            elif elem == 0:
                opts.string(fid, f"field {fid}")
            else:
                opts.vector(fid, elem, f"field {fid}")

    def _check_options(self, where: str, si: int, code: int, opt_type: int,
                       o: _Table) -> None:
        """Values the kernels divide by or index with: refuse zero/negative ones."""

        def positive(fid: int, label: str, default: int) -> None:
            v = o.scalar(fid, _I32, default)
            if v <= 0:
                raise _Invalid(f"{where}: {label} is {v}, must be > 0")

        def enum(fid: int, label: str, hi: int) -> None:
            v = o.scalar(fid, _I8, 0)
            if not 0 <= v <= hi:
                raise _Invalid(f"{where}: {label} {v} is not a known value")

        if opt_type == _OPT_CONV2D:
            enum(0, "padding", 1)
            positive(1, "stride_w", 0)
            positive(2, "stride_h", 0)
            enum(3, "fused activation", 5)
            positive(4, "dilation_w_factor", 1)
            positive(5, "dilation_h_factor", 1)
        elif opt_type == _OPT_DEPTHWISE:
            enum(0, "padding", 1)
            positive(1, "stride_w", 0)
            positive(2, "stride_h", 0)
            if o.scalar(3, _I32, 0) < 0:
                raise _Invalid(f"{where}: negative depth_multiplier")
            enum(4, "fused activation", 5)
            positive(5, "dilation_w_factor", 1)
            positive(6, "dilation_h_factor", 1)
        elif opt_type == _OPT_POOL2D:
            enum(0, "padding", 1)
            positive(1, "stride_w", 0)
            positive(2, "stride_h", 0)
            positive(3, "filter_width", 0)
            positive(4, "filter_height", 0)
            enum(5, "fused activation", 5)
        elif opt_type == _OPT_TRANSPOSE_CONV:
            enum(0, "padding", 1)
            positive(1, "stride_w", 0)
            positive(2, "stride_h", 0)
            enum(3, "fused activation", 5)
        elif opt_type == _OPT_FULLY_CONNECTED:
            enum(0, "fused activation", 5)
            enum(1, "weights format", 1)
        elif opt_type == _OPT_CONV3D:
            enum(0, "padding", 1)
            for fid, label in ((1, "stride_d"), (2, "stride_w"), (3, "stride_h")):
                positive(fid, label, 0)
            enum(4, "fused activation", 5)
            for fid, label in ((5, "dilation_d_factor"), (6, "dilation_w_factor"),
                               (7, "dilation_h_factor")):
                positive(fid, label, 1)
        elif opt_type in (_OPT_IF, _OPT_WHILE):
            self._call(where, si, o.scalar(0, _I32, 0))
            self._call(where, si, o.scalar(1, _I32, 0))
        elif opt_type == _OPT_CALL_ONCE:
            self._call(where, si, o.scalar(0, _I32, 0))
        elif opt_type == _OPT_CALL:
            self._call(where, si, o.scalar(0, _U32, 0))

    def _check_shapes(self, where: str, code: int, o: _Table | None, inputs, outputs,
                      tensors) -> None:
        """Check operand counts, ranks and the stored output shape of common ops.

        Kernels index their operands without checking how many there are, and a
        corrupted dimension (say 16 -> 8716304) passes every structural check
        yet makes the model allocate and compute gigabytes. Converters always
        store consistent static shapes, so a stored output shape that disagrees
        with the one the operator computes from its inputs means damage. Ops
        with dynamic (-1) dimensions are skipped: their stored shapes are
        placeholders until the interpreter resizes them.
        """
        rule = _SHAPE_RULES[code]  # operand counts were checked against _ARITY
        ins = [None if ti < 0 else tensors[ti] for ti in inputs]
        out = tensors[outputs[0]]
        if ins[0] is None:
            raise _Invalid(f"{where}: its first input is omitted (-1)")
        self._check_dtypes(where, code, rule, ins, out)
        if any(t is not None and t.shape_signature is not None and -1 in t.shape_signature
               for t in (*ins, out)):
            return
        shp = [None if t is None else t.shape for t in ins]
        x = shp[0]

        def bad(expected) -> _Invalid:
            return _Invalid(f"{where}: output {out.index} {out.name!r} has shape "
                            f"{list(out.shape)} but the operator produces "
                            f"{list(expected)} from input shape(s) "
                            f"{[None if v is None else list(v) for v in shp]}")

        def rank(i: int, r: int, what: str) -> None:
            if shp[i] is not None and len(shp[i]) != r:
                raise _Invalid(f"{where}: {what} must have rank {r}, got shape "
                               f"{list(shp[i])}")

        if rule == "same":
            expected = x
        elif rule == "broadcast":
            if shp[1] is None:
                raise _Invalid(f"{where}: its second input is omitted (-1)")
            expected = _broadcast(x, shp[1])
            if expected is None:
                raise _Invalid(f"{where}: input shapes {list(x)} and {list(shp[1])} "
                               f"do not broadcast")
        elif rule == "reshape":
            if _prod(out.shape) != _prod(x):
                raise _Invalid(f"{where}: reshapes {list(x)} ({_prod(x)} elements) to "
                               f"{list(out.shape)} ({_prod(out.shape)} elements)")
            return
        elif rule == "concat":
            expected = self._concat_shape(where, o, shp)
        elif rule == "fc":
            expected = self._fc_shape(where, o, shp, rank)
        else:  # conv, depthwise, pool
            rank(0, 4, "the input")
            n, h, w, c = x
            if rule == "pool":
                kh, kw = o.scalar(4, _I32, 0), o.scalar(3, _I32, 0)
                sh, sw = o.scalar(2, _I32, 0), o.scalar(1, _I32, 0)
                dh = dw = 1
                cout = c
            else:
                if shp[1] is None:
                    raise _Invalid(f"{where}: the filter input is omitted (-1)")
                rank(1, 4, "the filter")
                cout, kh, kw, cin = shp[1]
                sh, sw = o.scalar(2, _I32, 0), o.scalar(1, _I32, 0)
                dil = (5, 4) if rule == "conv" else (6, 5)
                dh, dw = o.scalar(dil[0], _I32, 1), o.scalar(dil[1], _I32, 1)
                if rule == "conv":
                    if cin <= 0 or c % cin:
                        raise _Invalid(f"{where}: input has {c} channels, not a "
                                       f"multiple of the filter's {cin}")
                else:
                    cout = cin  # depthwise filters are [1, kh, kw, channels]
                if len(shp) > 2 and shp[2] is not None and _prod(shp[2]) != cout:
                    raise _Invalid(f"{where}: bias has {_prod(shp[2])} elements for "
                                   f"{cout} output channels")
            same = o.scalar(0, _I8, 0) == 0
            oh = _out_size(h, kh, sh, dh, same)
            ow = _out_size(w, kw, sw, dw, same)
            if oh <= 0 or ow <= 0:
                raise _Invalid(f"{where}: the {kh}x{kw} window (dilation {dh}x{dw}) "
                               f"does not fit the {h}x{w} input")
            expected = (n, oh, ow, cout)
        if tuple(out.shape) != tuple(expected):
            raise bad(expected)

    @staticmethod
    def _check_dtypes(where: str, code: int, rule: str, ins, out) -> None:
        # Kernels dispatch on the input type and write the output as that type;
        # an output tensor of another type has a buffer sized for the wrong
        # element width, and FAKE_QUANT reads any input as float32 (found by
        # tests/test_fuzz.py). Converters never emit such mismatches.
        if code == _OP["FAKE_QUANT"]:
            if ins[0].dtype != "float32":
                raise _Invalid(f"{where}: input is {ins[0].dtype}, FAKE_QUANT takes "
                               f"float32")
            return
        if code in _DTYPE_CHANGING:
            allowed = _DTYPE_CHANGING[code]
            if allowed is not None and out.dtype not in allowed.get(ins[0].dtype, ()):
                raise _Invalid(f"{where}: cannot turn a {ins[0].dtype} input into a "
                               f"{out.dtype} output")
            return
        if rule == "fc":
            return
        operands = [ins[0], *(t for t in ins[1:2] if rule == "broadcast")]
        if rule == "concat":
            operands = ins
        for t in (*operands, out):
            if t is not None and t.dtype != ins[0].dtype:
                raise _Invalid(
                    f"{where}: operand types differ ({ins[0].dtype} input, tensor "
                    f"{t.index} {t.name!r} is {t.dtype})"
                )

    @staticmethod
    def _concat_shape(where: str, o: _Table | None, shp) -> tuple[int, ...]:
        if any(v is None for v in shp):
            raise _Invalid(f"{where}: an input is omitted (-1)")
        r = len(shp[0])
        axis = o.scalar(0, _I32, 0) if o is not None else 0
        if axis < 0:
            axis += r
        if not 0 <= axis < r:
            raise _Invalid(f"{where}: axis {axis} out of range for rank {r}")
        total = 0
        for v in shp:
            if len(v) != r or any(a != b for k, (a, b) in enumerate(zip(v, shp[0]))
                                  if k != axis):
                raise _Invalid(f"{where}: input shapes {[list(v) for v in shp]} do not "
                               f"concatenate along axis {axis}")
            total += v[axis]
        return tuple(shp[0][:axis]) + (total,) + tuple(shp[0][axis + 1:])

    @staticmethod
    def _fc_shape(where: str, o: _Table | None, shp, rank) -> tuple[int, ...]:
        if shp[1] is None:
            raise _Invalid(f"{where}: the weights input is omitted (-1)")
        rank(1, 2, "the weights")
        units, depth = shp[1]
        x = shp[0]
        if not x or depth <= 0 or _prod(x) % depth:
            raise _Invalid(f"{where}: input shape {list(x)} does not split into rows of "
                           f"the weights' input depth {depth}")
        if len(shp) > 2 and shp[2] is not None and _prod(shp[2]) != units:
            raise _Invalid(f"{where}: bias has {_prod(shp[2])} elements for {units} "
                           f"units")
        keep = bool(o.scalar(2, _U8, 0)) if o is not None else False
        if keep:
            if x[-1] != depth:
                raise _Invalid(f"{where}: input depth {x[-1]} does not match the "
                               f"weights' {depth}")
            return tuple(x[:-1]) + (units,)
        return (_prod(x) // depth, units)

    def _call(self, where: str, si: int, target: int) -> None:
        if not 0 <= target < self.nsub:
            raise _Invalid(f"{where}: calls subgraph {target} but the model has "
                           f"{self.nsub} subgraph(s)")
        self.calls.setdefault(si, set()).add(target)

    def _check_call_cycles(self) -> None:
        # A subgraph that (indirectly) calls itself makes the interpreter recurse
        # until the native stack overflows.
        state: dict[int, int] = {}  # 1 = on the stack, 2 = done
        for root in self.calls:
            if state.get(root):
                continue
            stack = [(root, iter(self.calls.get(root, ())))]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                    continue
                s = state.get(nxt, 0)
                if s == 1:
                    raise _Invalid(f"subgraph {nxt} calls itself (directly or through "
                                   f"other subgraphs)")
                if s == 0:
                    state[nxt] = 1
                    stack.append((nxt, iter(self.calls.get(nxt, ()))))

    # -- signatures and external buffers --------------------------------------

    def _signature(self, i: int, t: _Table, subgraphs) -> SignatureInfo:
        t.where = f"signature {i}"
        key = t.string(2, "signature_key") or ""
        where = f"signature {i} {key!r}"
        t.where = where
        sub = t.scalar(4, _U32, 0)
        if sub >= len(subgraphs):
            raise _Invalid(f"{where}: subgraph index {sub} out of range (model has "
                           f"{len(subgraphs)} subgraph(s))")
        nt = len(subgraphs[sub].tensors)
        maps = []
        for fid, kind in ((0, "inputs"), (1, "outputs")):
            m: dict[str, int] = {}
            for j, tm in enumerate(t.tables(fid, kind)):
                tm.where = f"{where} {kind}[{j}]"
                name = tm.string(0, "name") or ""
                idx = tm.scalar(1, _U32, 0)
                if idx >= nt:
                    raise _Invalid(f"{where}: {kind[:-1]} {name!r} tensor index {idx} "
                                   f"out of range (subgraph {sub} has {nt} tensors)")
                m[name] = idx
            maps.append(m)
        return SignatureInfo(key=key, subgraph_index=sub, inputs=maps[0],
                             outputs=maps[1])

    def _external_buffers(self, model: _Table) -> None:
        # Newer schema: weights kept in side files. Only verify the structure so
        # that nothing downstream reads out of bounds.
        for g in model.tables(8, "external_buffer_groups"):
            g.string(0, "name")
        for e in model.tables(9, "external_buffers"):
            e.scalar(0, _U32, 0)
            e.scalar(1, _U32, 0)
            e.scalar(2, _U64, 0)
            e.scalar(3, _U64, 0)
            e.string(4, "packing")
