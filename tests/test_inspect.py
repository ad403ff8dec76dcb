"""edgelite.inspect: full-integer verdict, XNNPACK coverage, metadata, serialisation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite.inspect import InspectReport, inspect_model

DATA = Path(__file__).resolve().parent / "data"


def _report(name: str, **kw) -> InspectReport:
    return inspect_model(DATA / name, **kw)


@pytest.mark.parametrize("name", ["conv_int8.tflite", "conv_uint8io.tflite",
                                  "conv_int8_floatio.tflite", "prelu_int8.tflite"])
def test_int8_models_are_fully_integer(name):
    r = _report(name)
    assert r.fully_integer is True
    assert r.float_ops == ()


def test_float_io_wrappers_are_allowed():
    # QUANTIZE of the float input and DEQUANTIZE to the float output run once at
    # the boundary; the network itself is integer.
    r = _report("conv_int8_floatio.tflite")
    assert r.subgraphs[0].inputs[0].dtype == "float32"
    assert r.subgraphs[0].outputs[0].dtype == "float32"
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(r.subgraphs[0].op_histogram)
    assert r.fully_integer


def test_float_model_lists_its_float_ops():
    r = _report("conv_float.tflite")
    assert r.fully_integer is False
    assert [f.op_name for f in r.float_ops] == ["CONV_2D", "MAX_POOL_2D",
                                                "AVERAGE_POOL_2D", "RESHAPE",
                                                "FULLY_CONNECTED"]
    assert [f.index for f in r.float_ops] == [0, 1, 2, 3, 4]
    assert "float32 input" in r.float_ops[0].reason
    assert "serving_default_image:0" in r.float_ops[0].reason
    text = r.to_text()
    assert "Fully integer: NO, 5 float op(s)" in text
    assert "#0 CONV_2D" in text


def test_multi_subgraph_float_ops_name_their_subgraph():
    r = _report("multi_signature.tflite")
    assert [(f.subgraph, f.op_name) for f in r.float_ops] == [(0, "ADD"), (1, "MUL")]
    assert set(r.signatures) == {"add", "mul"}
    assert r.signatures["mul"]["subgraph"] == 1
    assert sorted(r.signatures["add"]["inputs"]) == ["x", "y"]


@pytest.mark.parametrize("empirical", [True, False])
def test_prelu_is_xnnpack_unsupported(empirical):
    r = _report("prelu_int8.tflite", empirical=empirical)
    assert r.xnnpack_method == ("empirical" if empirical else "static")
    assert "PRELU" in r.xnnpack_unsupported
    assert "CONV_2D" not in r.xnnpack_unsupported
    prelu = next(o for o in r.xnnpack_ops if o.op_name == "PRELU")
    assert prelu.precision == "qs8" and not prelu.delegated
    assert "PRELU (qs8)" in r.to_text()


def test_static_table_agrees_with_runtime_on_fixtures():
    pytest.importorskip("ai_edge_litert.interpreter")
    for path in sorted(DATA.glob("*.tflite")):
        a = inspect_model(path, empirical=True)
        b = inspect_model(path, empirical=False)
        assert a.xnnpack_method == "empirical", a.xnnpack_note
        assert [o.delegated for o in a.xnnpack_ops] == \
            [o.delegated for o in b.xnnpack_ops], path.name


def test_empirical_check_sees_int8_average_pool_left_out():
    # Measured on ai-edge-litert 2.3: XNNPACK takes int8 MAX_POOL_2D but not
    # int8 AVERAGE_POOL_2D; a uint8<->int8 QUANTIZE is not taken either.
    pytest.importorskip("ai_edge_litert.interpreter")
    r = _report("conv_uint8io.tflite")
    assert r.xnnpack_unsupported == ("QUANTIZE", "AVERAGE_POOL_2D")
    q = [o for o in r.xnnpack_ops if o.op_name == "QUANTIZE"]
    assert {o.precision for o in q} == {"mixed"}
    assert "ai-edge-litert" in r.xnnpack_note


def test_io_summary_and_quantization():
    r = _report("conv_int8.tflite")
    (inp,), (out,) = r.subgraphs[0].inputs, r.subgraphs[0].outputs
    assert inp.shape == (1, 32, 32, 3) and inp.dtype == "int8"
    assert inp.quantization == {"scale": pytest.approx(0.00784293), "zero_point": -1}
    assert out.shape == (1, 10)
    info = edgelite.read_model_info(DATA / "conv_int8.tflite")
    assert r.size_bytes == info.size_bytes
    assert r.schema_version == 3
    assert r.source.endswith("conv_int8.tflite")
    assert inspect_model((DATA / "conv_int8.tflite").read_bytes()).source == "<bytes>"


def test_per_channel_summary():
    from edgelite.inspect import _quant_summary

    info = edgelite.read_model_info(DATA / "conv_int8.tflite")
    q = _quant_summary(info.subgraphs[0].tensors[5].quantization)
    assert q["per_channel"] is True and q["count"] == 8
    assert 0 < q["min_scale"] <= q["max_scale"]
    assert q["quantized_dimension"] == 0


def test_to_dict_is_json_serialisable():
    for path in sorted(DATA.glob("*.tflite")):
        d = inspect_model(path).to_dict()
        back = json.loads(json.dumps(d, allow_nan=False))
        assert back["fully_integer"] in (True, False)
        assert isinstance(back["float_ops"], list)
        assert isinstance(back["xnnpack_unsupported"], list)
        assert back["subgraphs"][0]["inputs"][0]["shape"]


def test_edgelite_metadata_parsed():
    r = _report("prelu_int8.tflite")
    assert r.metadata["names"] == ["min_runtime_version", "CONVERSION_METADATA", "edgelite"]
    assert r.metadata["edgelite"] == {"schema": 1, "task": "test", "labels": ["a", "b"]}
    assert r.metadata["edgelite_error"] is None
    assert r.to_dict()["metadata"]["edgelite"]["labels"] == ["a", "b"]
    assert '"task": "test"' in r.to_text()
    plain = _report("conv_int8.tflite")
    assert plain.metadata["edgelite"] is None and plain.metadata["edgelite_error"] is None


@pytest.mark.parametrize("payload, error", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_malformed_edgelite_metadata_is_reported_not_raised(payload, error):
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    flatbuffers = pytest.importorskip("flatbuffers")
    m = schema.ModelT.InitFromPackedBuf(bytearray((DATA / "prelu_int8.tflite").read_bytes()), 0)
    idx = next(md.buffer for md in m.metadata if md.name in (b"edgelite", "edgelite"))
    m.buffers[idx].data = np.frombuffer(payload, dtype=np.uint8)
    b = flatbuffers.Builder(4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    r = inspect_model(bytes(b.Output()))
    assert r.metadata["edgelite"] is None
    assert error in r.metadata["edgelite_error"]
    assert "malformed" in r.to_text()
    json.dumps(r.to_dict())


def test_text_report_shows_the_essentials():
    text = _report("conv_int8.tflite").to_text()
    for needle in ("schema v3", "serving_default_image:0", "[1,32,32,3]", "int8",
                   "zero_point -1", "CONV_2D x1", "Fully integer: yes", "XNNPACK",
                   "Metadata: min_runtime_version"):
        assert needle in text, needle


def test_errors_propagate_typed(tmp_path):
    with pytest.raises(edgelite.ModelNotFoundError):
        inspect_model(tmp_path / "missing.tflite")
    with pytest.raises(edgelite.InvalidModelError):
        inspect_model(b"\x00" * 32)


def test_lazy_export():
    assert edgelite.inspect_model is inspect_model
