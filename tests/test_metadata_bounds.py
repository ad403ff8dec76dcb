"""Issue 11: metadata JSON in a model file is untrusted; its size and depth are bounded."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelite.errors import MetadataError
from edgelite.inspect import inspect_model
from edgelite.metadata import MAX_JSON_BYTES, loads_bounded, read_metadata

DATA = Path(__file__).resolve().parent / "data"


def _with_metadata(payload: bytes) -> bytes:
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    flatbuffers = pytest.importorskip("flatbuffers")
    m = schema.ModelT.InitFromPackedBuf(bytearray((DATA / "prelu_int8.tflite").read_bytes()), 0)
    idx = next(md.buffer for md in m.metadata if md.name in (b"edgelite", "edgelite"))
    m.buffers[idx].data = np.frombuffer(payload, dtype=np.uint8)
    b = flatbuffers.Builder(len(payload) + 65536)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


DEEP = b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"


def test_deeply_nested_metadata_is_reported_by_inspect(tmp_path):
    model = _with_metadata(DEEP)
    r = inspect_model(model)  # RecursionError before the fix
    assert r.metadata["edgelite"] is None
    assert "deeper than" in r.metadata["edgelite_error"]
    with pytest.raises(MetadataError, match="deeper than"):
        read_metadata(model)
    p = tmp_path / "deep.tflite"
    p.write_bytes(model)
    out = subprocess.run([sys.executable, "-m", "edgelite.cli", "inspect", str(p)], capture_output=True, text=True)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "deeper than" in out.stdout


def test_oversized_metadata_is_refused():
    big = b'{"x": "' + b"a" * MAX_JSON_BYTES + b'"}'
    with pytest.raises(MetadataError, match="limit"):
        loads_bounded(big)
    assert "limit" in inspect_model(_with_metadata(big)).metadata["edgelite_error"]


def test_bounded_loader_keeps_ordinary_json():
    assert loads_bounded(b'{"a": [1, {"b": "[[[{{{"}], "c": "\\\\\\"["}') == {"a": [1, {"b": "[[[{{{"}], "c": '\\"['}
    nested = b"[" * 64 + b"]" * 64
    assert loads_bounded(nested) is not None
    with pytest.raises(MetadataError):
        loads_bounded(b"[" * 65 + b"]" * 65)
