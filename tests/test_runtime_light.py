"""`import edgelite` stays light: no TensorFlow, even when TF is installed."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import edgelite
from edgelite import quant
from edgelite.metadata import EdgeliteMetadata, read_metadata
from edgelite.preprocess import PreprocessSpec

BLOCKED = r"""
import sys, json, time
sys.modules['tensorflow'] = None   # importing it now raises ImportError
t = time.perf_counter()
import edgelite
from edgelite.backends import _PROBE_MODEL
import numpy as np
dt = time.perf_counter() - t
m = edgelite.Model(_PROBE_MODEL)
y = m(np.zeros((1, 4), np.float32))
bad = sorted(k for k, v in sys.modules.items() if v is not None and k.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))
print(json.dumps({"bad": bad, "y": y.tolist(), "import_s": dt, "backend": m.backend}))
"""


def test_import_and_run_without_tensorflow():
    r = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["bad"] == []
    assert out["y"] == [[1.0, 1.0, 1.0, 1.0]]
    assert out["backend"] == "ai_edge_litert"


def test_quantize_roundtrip_per_tensor_and_per_channel():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 5, (64, 8)).astype(np.float32)
    scale, zp = 8 / 255, -128 + round(3 / (8 / 255))
    q = quant.quantize(x, scale, zp, np.int8)
    assert q.dtype == np.int8
    assert np.abs(quant.dequantize(q, scale, zp) - x).max() <= scale / 2 + 1e-6
    scales = np.linspace(0.01, 0.05, 8)
    q = quant.quantize(x, scales, np.zeros(8, int), np.int8, axis=1)
    err = np.abs(quant.dequantize(q, scales, np.zeros(8, int), axis=1) - x)
    inside = np.abs(x) <= scales * 127
    assert (err[inside] <= np.broadcast_to(scales / 2 + 1e-6, x.shape)[inside]).all()
    # saturation, not wrap-around
    assert quant.quantize(np.array([1e9, -1e9]), 0.1, 0, np.int8).tolist() == [127, -128]
    assert quant.quantize(np.array([1e9, -1e9]), 0.1, 0, np.uint8).tolist() == [255, 0]
    with pytest.raises(edgelite.InputError):
        quant.quantize(x, 0.0, 0)
    with pytest.raises(edgelite.InputError):
        quant.quantize(x, scales, 0, np.int8, axis=0)
    with pytest.raises(edgelite.InputError):
        quant.quantize(x, 0.1, 0, np.float32)


def test_preprocess_spec_validation_and_apply():
    with pytest.raises(ValueError):
        PreprocessSpec(size=(0, 10))
    with pytest.raises(ValueError):
        PreprocessSpec(size=(10, 10), mean=(1, 2))
    with pytest.raises(ValueError):
        PreprocessSpec(size=(10, 10), std=0)
    with pytest.raises(ValueError):
        PreprocessSpec(size=(10, 10), resize="zoom")
    s = PreprocessSpec(size=(4, 6), resize="letterbox", color="BGR", mean=127.5, std=127.5)
    img = np.zeros((8, 24, 3), np.uint8)
    img[..., 0] = 255  # pure red in RGB
    x = s.apply(img)
    assert x.shape == (1, 4, 6, 3) and x.dtype == np.float32
    # letterbox: 8x24 -> 2x6 content, rest zero-padded (normalised pad value = -1)
    assert np.allclose(x[0, :2, :, 2], 1.0) and np.allclose(x[0, :2, :, 0], -1.0)
    assert np.allclose(x[0, 2:], -1.0)
    assert s.value_range() == (-1.0, 1.0)
    assert PreprocessSpec.from_dict(s.to_dict()) == s
    g = PreprocessSpec(size=(8, 24), color="GRAY", std=255.0)
    assert g.apply(img).shape == (1, 8, 24, 1)
    with pytest.raises(edgelite.ImageError):
        s.apply(img.astype(np.float32))


def test_metadata_roundtrip_and_errors():
    spec = PreprocessSpec(size=(112, 112), color="BGR", mean=127.5, std=128.0)
    md = EdgeliteMetadata(task="face_embedding", name="sface", preprocessing=spec, labels=None,
                          source={"sha256": "ab"}, extra={"future_key": 1})
    back = EdgeliteMetadata.from_bytes(md.to_json_bytes())
    assert back.preprocessing == spec and back.task == "face_embedding" and back.extra == {"future_key": 1}
    with pytest.raises(edgelite.MetadataError):
        EdgeliteMetadata.from_bytes(b"\xff\xfe")
    with pytest.raises(edgelite.MetadataError):
        EdgeliteMetadata.from_bytes(b'{"format": "other"}')
    with pytest.raises(edgelite.MetadataError):
        EdgeliteMetadata.from_bytes(b"[1, 2]")


def test_metadata_embedded_in_real_model_and_model_without_metadata_runs():
    pytest.importorskip("flatbuffers")
    from edgelite_convert.metadata_writer import embed_metadata
    from edgelite.backends import _PROBE_MODEL

    assert read_metadata(_PROBE_MODEL) is None
    md = EdgeliteMetadata(task="generic", name="probe", labels=("x",))
    data = embed_metadata(_PROBE_MODEL, md)
    assert read_metadata(data).labels == ("x",)
    data2 = embed_metadata(data, EdgeliteMetadata(task="generic", name="probe2"))  # replaces, not duplicates
    assert read_metadata(data2).name == "probe2"
    m = edgelite.Model(data2)
    assert m.metadata.name == "probe2"
    np.testing.assert_allclose(m(np.ones((1, 4), np.float32)), 2.0)
