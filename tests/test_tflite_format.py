"""edgelite._tflite: parsing agrees with the LiteRT interpreter; corruption is refused.

The fixtures are real TensorFlow-converted models (``tests/data``, rebuilt by
``tests/data/make_fixtures.py``). Targeted corruptions are made with the
flatbuffer object API that ships with ai-edge-litert (``schema_py_generated``),
so each test breaks exactly one thing and checks the message names it.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite._tflite import (BUILTIN_OP_NAMES, ModelInfo, QuantParams, parse_model,
                              read_model_info)

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = sorted(p.name for p in DATA.glob("*.tflite"))


def _bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _interpreter(data: bytes):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    # Builtin kernels only: XNNPACK may fold or repack constant tensors.
    itp = litert.Interpreter(
        model_content=data,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    itp.allocate_tensors()
    return itp


def _rewrite(name: str, edit) -> bytes:
    """Unpack a fixture with the object API, apply ``edit(model)``, repack it.

    Edits assign plain lists: the object API writes numpy arrays byte for byte,
    so an int64 array would land in an int32 vector as garbage.
    """
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    flatbuffers = pytest.importorskip("flatbuffers")
    model = schema.ModelT.InitFromPackedBuf(bytearray(_bytes(name)), 0)
    edit(model)
    b = flatbuffers.Builder(4096)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# --------------------------------------------------------------------------
# Agreement with the interpreter
# --------------------------------------------------------------------------


def test_fixtures_present_and_small():
    assert len(FIXTURES) >= 6
    assert sum((DATA / f).stat().st_size for f in FIXTURES) < 300 * 1024


@pytest.mark.parametrize("name", FIXTURES)
def test_tensors_match_interpreter(name):
    data = _bytes(name)
    info = parse_model(data)
    itp = _interpreter(data)
    sg = info.subgraphs[0]
    details = {d["index"]: d for d in itp.get_tensor_details()}
    # Kernels may append scratch tensors (im2col...) after the file's tensors.
    assert len(details) >= len(sg.tensors)
    for t in sg.tensors:
        d = details[t.index]
        assert t.name == d["name"]
        assert t.shape == tuple(d["shape"])
        if t.shape_signature is not None:
            assert t.shape_signature == tuple(d["shape_signature"])
        assert np.dtype(t.dtype) == np.dtype(d["dtype"])
        qp = d["quantization_parameters"]
        if t.quantization is None:
            assert len(qp["scales"]) == 0
        else:
            np.testing.assert_array_equal(np.float32(t.quantization.scales), qp["scales"])
            np.testing.assert_array_equal(t.quantization.zero_points, qp["zero_points"])
            assert t.quantization.quantized_dimension == qp["quantized_dimension"]


@pytest.mark.parametrize("name", FIXTURES)
def test_io_ops_and_constants_match_interpreter(name):
    data = _bytes(name)
    info = parse_model(data)
    itp = _interpreter(data)
    sg = info.subgraphs[0]
    assert list(sg.inputs) == [d["index"] for d in itp.get_input_details()]
    assert list(sg.outputs) == [d["index"] for d in itp.get_output_details()]
    for d in itp.get_input_details():
        q = sg.tensors[d["index"]].quantization
        scale, zp = d["quantization"]
        assert (q.scales[0], q.zero_points[0]) == (pytest.approx(scale), zp) if q else scale == 0
    ops = itp._get_ops_details()
    assert [o.op_name for o in sg.operators] == [o["op_name"] for o in ops]
    for o, d in zip(sg.operators, ops):
        assert o.inputs == tuple(d["inputs"])
        assert o.outputs == tuple(d["outputs"])
    # Constant tensors: zero-copy views equal to what the interpreter holds.
    n_const = 0
    for t in sg.tensors:
        arr = info.tensor_data(0, t.index)
        if not t.is_constant:
            assert arr is None
            continue
        n_const += 1
        np.testing.assert_array_equal(arr, itp.get_tensor(t.index))
        assert not arr.flags.writeable
    assert n_const > 0 or name == "multi_signature.tflite"


def test_op_histograms():
    assert parse_model(_bytes("conv_int8.tflite")).op_histogram() == {
        "CONV_2D": 1, "MAX_POOL_2D": 1, "AVERAGE_POOL_2D": 1, "RESHAPE": 1,
        "FULLY_CONNECTED": 1,
    }
    assert parse_model(_bytes("conv_uint8io.tflite")).op_histogram()["QUANTIZE"] == 2
    assert parse_model(_bytes("prelu_int8.tflite")).op_histogram() == {"CONV_2D": 1,
                                                                        "PRELU": 1}
    multi = parse_model(_bytes("multi_signature.tflite"))
    assert multi.op_histogram(0) == {"ADD": 1}
    assert multi.op_histogram(1) == {"MUL": 1}
    with pytest.raises(IndexError, match="2 subgraph"):
        multi.op_histogram(2)


def test_signatures_match_interpreter():
    data = _bytes("multi_signature.tflite")
    info = parse_model(data)
    itp = _interpreter(data)
    assert [s.key for s in info.signatures] == ["add", "mul"]
    assert set(itp.get_signature_list()) == {"add", "mul"}
    for sig in info.signatures:
        runner = itp.get_signature_runner(sig.key)
        assert sig.inputs == {k: v["index"] for k, v in runner.get_input_details().items()}
        assert sig.outputs == {k: v["index"] for k, v in
                               runner.get_output_details().items()}
    assert info.signatures[1].subgraph_index == 1
    assert info.signatures[0].outputs.keys() == {"sum"}


def test_metadata_and_model_fields():
    info = parse_model(_bytes("prelu_int8.tflite"))
    assert isinstance(info, ModelInfo)
    assert info.schema_version == 3
    assert info.description == "MLIR Converted."
    assert {"min_runtime_version", "edgelite"} <= set(info.metadata)
    assert json.loads(info.metadata["edgelite"]) == {"schema": 1, "task": "test",
                                                      "labels": ["a", "b"]}
    assert info.size_bytes == len(_bytes("prelu_int8.tflite"))
    assert info.num_buffers > 0
    q = info.subgraphs[0].tensors[3].quantization  # per-channel conv weights
    assert isinstance(q, QuantParams) and q.per_channel and q.is_quantized
    assert len(q.scales) == info.subgraphs[0].tensors[3].shape[q.quantized_dimension]
    assert BUILTIN_OP_NAMES[3] == "CONV_2D" and BUILTIN_OP_NAMES[54] == "PRELU"
    assert BUILTIN_OP_NAMES[150] == "GELU"


def test_read_model_info_accepts_paths_and_buffers(tmp_path):
    path = DATA / "conv_int8.tflite"
    data = path.read_bytes()
    ref = read_model_info(path)
    for src in (str(path), path, data, bytearray(data), memoryview(data)):
        assert read_model_info(src).subgraphs == ref.subgraphs
    with pytest.raises(TypeError, match="path"):
        read_model_info(12)


def test_parse_is_zero_copy_and_does_not_need_tensorflow():
    import subprocess
    import sys

    info = parse_model(_bytes("conv_int8.tflite"))
    w = info.tensor_data(0, 5)
    assert w.dtype == np.int8 and w.shape == (8, 3, 3, 3)
    assert w.base is not None  # a view, not a copy
    # In a fresh interpreter: neither TensorFlow nor the flatbuffers package.
    code = ("import sys, edgelite._tflite as t; "
            "t.read_model_info(sys.argv[1]); "
            "assert 'tensorflow' not in sys.modules and 'flatbuffers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(DATA / "conv_int8.tflite")],
                   check=True)


# --------------------------------------------------------------------------
# Errors: files
# --------------------------------------------------------------------------


def test_missing_file():
    with pytest.raises(edgelite.ModelNotFoundError, match="does not exist") as ei:
        read_model_info(DATA / "nope.tflite")
    assert isinstance(ei.value, FileNotFoundError)


def test_directory(tmp_path):
    with pytest.raises(edgelite.ModelNotFoundError, match="directory"):
        read_model_info(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")
    with pytest.raises(edgelite.ModelNotFoundError, match="SavedModel.*edgelite convert"):
        read_model_info(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tflite"
    p.write_bytes(b"")
    with pytest.raises(edgelite.InvalidModelError, match="empty") as ei:
        read_model_info(p)
    assert isinstance(ei.value, ValueError)
    with pytest.raises(edgelite.InvalidModelError, match="only 0 bytes"):
        parse_model(b"")


def test_three_bytes():
    with pytest.raises(edgelite.InvalidModelError, match="only 3 bytes"):
        parse_model(b"TFL")


@pytest.mark.parametrize("cut", [8, 12, 64, 500, 2000, -200, -1])
def test_truncated(cut):
    data = _bytes("conv_int8.tflite")
    with pytest.raises(edgelite.InvalidModelError, match="corrupt or truncated"):
        parse_model(data[:cut])


def test_random_bytes():
    rng = np.random.default_rng(0)
    for n in (8, 100, 5000):
        with pytest.raises(edgelite.InvalidModelError):
            parse_model(rng.integers(0, 256, n, dtype=np.uint8).tobytes())


def test_random_bytes_with_identifier():
    rng = np.random.default_rng(1)
    for _ in range(50):
        junk = bytearray(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        junk[4:8] = b"TFL3"
        with pytest.raises(edgelite.InvalidModelError):
            parse_model(bytes(junk))


def test_bad_identifier():
    data = bytearray(_bytes("conv_int8.tflite"))
    data[4:8] = b"XXXX"
    with pytest.raises(edgelite.InvalidModelError, match="not a TFLite model.*TFL3"):
        parse_model(bytes(data))


@pytest.mark.parametrize("head, what", [
    (b"\x08\x07\x12\x07pytorch\x1a\x052.1.0", "ONNX"),
    (b"\x08\x08\x12\x08tf2onnx:\x00\x00onnx", "ONNX"),
    (b"PK\x03\x04" + b"\x00" * 60, "Keras"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 60, "HDF5"),
    (b"\x08\x01\x12\x80\x01\n\x0e\n\x0ctensorflow", "SavedModel"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 60, "gzip"),
    (b"<!DOCTYPE html><html>", "text file"),
])
def test_other_formats_are_named(head, what):
    with pytest.raises(edgelite.InvalidModelError, match=what) as ei:
        parse_model(head)
    if what in ("ONNX", "Keras", "HDF5", "SavedModel"):
        assert "edgelite convert" in str(ei.value)


def test_size_prefixed_flatbuffer_is_explained():
    data = _bytes("conv_int8.tflite")
    with pytest.raises(edgelite.InvalidModelError, match="size-prefixed"):
        parse_model(struct.pack("<I", len(data)) + data)


def test_read_model_info_names_the_file(tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(b"\x00" * 64)
    with pytest.raises(edgelite.InvalidModelError, match="m.tflite"):
        read_model_info(p)


# --------------------------------------------------------------------------
# Errors: one targeted corruption each
# --------------------------------------------------------------------------


def _sg(m, i=0):
    return m.subgraphs[i]


CORRUPTIONS = [
    ("schema version", "conv_int8.tflite",
     lambda m: setattr(m, "version", 2), "schema version 2"),
    ("buffer index", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[5], "buffer", 900),
     r"tensor 5 'Conv2D': buffer index 900 out of range \(model has \d+ buffers\)"),
    ("tensor type", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[6], "type", 99), "unknown tensor type 99"),
    ("negative dim", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[6], "shape", [1, -32, 32, 8]),
     "negative dimension"),
    ("huge shape", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[6], "shape", [1, 65536, 65536, 8]),
     "implausibly large"),
    ("constant size", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[5], "shape", [8, 3, 3, 4]),
     r"holds 216 bytes but shape \[8, 3, 3, 4\] of int8 needs 288"),
    ("zero scale", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[6].quantization, "scale", [0.0]),
     "must be finite and > 0"),
    ("nan scale", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[6].quantization, "scale", [np.nan]),
     "must be finite"),
    ("subnormal scale", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[6].quantization, "scale", [1e-40]),
     "subnormal"),
    ("zero point range", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[6].quantization, "zeroPoint", [300]),
     r"zero point 300 out of range \[-128, 127\]"),
    ("scale/zp count", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[6].quantization, "zeroPoint", [0, 0]),
     r"1 quantization scale\(s\) but 2 zero point"),
    ("per-channel count", "conv_int8.tflite",
     lambda m: (setattr(_sg(m).tensors[5].quantization, "scale",
                        _sg(m).tensors[5].quantization.scale[:7]),
                setattr(_sg(m).tensors[5].quantization, "zeroPoint",
                        _sg(m).tensors[5].quantization.zeroPoint[:7])),
     "7 per-channel scales but dimension 0"),
    ("quantized dimension", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[5].quantization, "quantizedDimension", 7),
     "quantized_dimension 7 out of range"),
    ("opcode index", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[1], "opcodeIndex", 40),
     r"operator 1: opcode index 40 out of range"),
    ("op input index", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[0], "inputs", [0, 5, 77]),
     r"operator 0 \(CONV_2D\): input 2 tensor index 77 out of range"),
    ("op output index", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[0], "outputs", [-1]),
     "output 0 tensor index -1 out of range"),
    ("omitted mandatory input", "multi_signature.tflite",
     lambda m: setattr(_sg(m).operators[0], "inputs", [-1, 0]),
     "is not an optional input of ADD"),
    ("constant output", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[1], "outputs", [5]),
     "output 0 is the constant tensor 5"),
    ("read before write", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[3], "inputs", [9, 1]),
     r"operator 3 \(RESHAPE\): input 0 reads tensor 9 'Reshape' before any operator "
     "writes it"),
    ("graph input index", "conv_int8.tflite",
     lambda m: setattr(_sg(m), "inputs", [500]),
     "input 0: tensor index 500 out of range"),
    ("graph output index", "conv_int8.tflite",
     lambda m: setattr(_sg(m), "outputs", [11]),
     "output 0: tensor index 11 out of range"),
    ("conv stride", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[0].builtinOptions, "strideW", 0),
     "stride_w is 0, must be > 0"),
    ("pool filter", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[1].builtinOptions, "filterHeight", -2),
     "filter_height is -2"),
    ("options type", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[0], "builtinOptionsType", 5),
     "builtin options type 5 does not match"),
    ("conv output shape", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[0], "shape", [1, 32, 3000, 3]),
     r"output 6 .* has shape \[1, 32, 32, 8\] but the operator produces \[1, 32, 3000, 8\]"),
    ("operand count", "conv_int8.tflite",
     lambda m: setattr(_sg(m).operators[0], "inputs", [0]),
     r"CONV_2D takes 2-3 input\(s\)"),
    ("operand type", "prelu_int8.tflite",
     lambda m: setattr(_sg(m).tensors[5], "type", 0),
     "operand types differ"),
    ("index input type", "conv_float.tflite",
     lambda m: setattr(_sg(m).operators[3], "inputs", [8, 2]),
     "must be int32 or int64"),
    ("signature tensor", "multi_signature.tflite",
     lambda m: setattr(m.signatureDefs[1].outputs[0], "tensorIndex", 3),
     r"signature 1 'mul': output 'product' tensor index 3 out of range"),
    ("signature subgraph", "multi_signature.tflite",
     lambda m: setattr(m.signatureDefs[1], "subgraphIndex", 2),
     "subgraph index 2 out of range"),
    ("metadata buffer", "prelu_int8.tflite",
     lambda m: setattr(m.metadata[2], "buffer", 1000),
     r"metadata 2 'edgelite': buffer index 1000 out of range"),
    ("external buffer", "conv_int8.tflite",
     lambda m: (setattr(m.buffers[6], "data", None), setattr(m.buffers[6], "offset", 10**6),
                setattr(m.buffers[6], "size", 216)),
     r"buffer 6: external data \[1000000, 1000216\) lies outside"),
    ("no subgraphs", "conv_int8.tflite",
     lambda m: setattr(m, "subgraphs", []), "no subgraphs"),
    ("custom without name", "conv_int8.tflite",
     lambda m: (setattr(m.operatorCodes[0], "builtinCode", 32),
                setattr(m.operatorCodes[0], "deprecatedBuiltinCode", 32)),
     "CUSTOM operator without a custom_code"),
    ("invalid utf-8 name", "conv_int8.tflite",
     lambda m: setattr(_sg(m).tensors[3], "name", b"\xff\xfe"),
     "not valid UTF-8"),
]


@pytest.mark.parametrize("label, name, edit, message", CORRUPTIONS,
                         ids=[c[0] for c in CORRUPTIONS])
def test_targeted_corruption_is_named(label, name, edit, message):
    data = _rewrite(name, edit)
    with pytest.raises(edgelite.InvalidModelError, match=message) as ei:
        parse_model(data)
    assert "re-export/re-convert" in str(ei.value)


def test_rewrite_roundtrip_is_valid():
    # The object-API round trip alone must not trip the verifier, or the tests
    # above would pass for the wrong reason.
    for name in FIXTURES:
        parse_model(_rewrite(name, lambda m: None))


def test_structural_corruptions():
    data = bytearray(_bytes("conv_int8.tflite"))
    root = struct.unpack_from("<I", data, 0)[0]
    bad_root = bytearray(data)
    struct.pack_into("<I", bad_root, 0, len(data) + 100)
    with pytest.raises(edgelite.InvalidModelError, match="root table offset"):
        parse_model(bytes(bad_root))
    bad_vt = bytearray(data)
    struct.pack_into("<i", bad_vt, root, -(len(data) * 2))
    with pytest.raises(edgelite.InvalidModelError, match="vtable"):
        parse_model(bytes(bad_vt))
    misaligned = bytearray(data)
    struct.pack_into("<I", misaligned, 0, root + 1)
    with pytest.raises(edgelite.InvalidModelError, match="misaligned"):
        parse_model(bytes(misaligned))


def test_parse_rejects_non_bytes():
    with pytest.raises(TypeError):
        parse_model("conv_int8.tflite")


def test_memoryview_of_numpy_buffer_is_accepted():
    data = _bytes("conv_int8.tflite")
    mv = memoryview(np.frombuffer(data, dtype=np.uint8))
    assert parse_model(mv).subgraphs == parse_model(data).subgraphs
