"""Backend chain, and the runtime CLI commands (inspect, bench, doctor) on real models."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite.backends import available_backends, backend_status, select_backend

DATA = Path(__file__).parent / "data"
CLI = [sys.executable, "-m", "edgelite.cli"]


def _cli(*args, ok=True):
    r = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_backend_chain_detects_tflite_runtime_under_numpy2():
    st = backend_status("tflite_runtime")
    if st.version is None:
        pytest.skip(f"tflite-runtime not installed here: {st.reason}")
    if int(np.__version__.split(".")[0]) >= 2:
        assert not st.ok and "numpy 1" in st.reason       # detected, with the reason
    _, chosen = select_backend()
    assert chosen.ok and chosen.name == "ai_edge_litert"  # and the chain moved on


def test_tensorflow_backend_forced_gives_same_result():
    data = (DATA / "conv_int8.tflite").read_bytes()
    x = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    a = edgelite.Model(data, backend="ai_edge_litert", delegates=())
    b = edgelite.Model(data, backend="tensorflow", delegates=())
    assert b.backend == "tensorflow"
    np.testing.assert_allclose(a(x), b(x), atol=1e-6)
    names = [s.name for s in available_backends(include_tensorflow=False)]
    assert names == ["ai_edge_litert", "tflite_runtime"]


def test_cli_inspect_text_and_json():
    r = _cli("inspect", str(DATA / "conv_int8.tflite"))
    assert "fully integer" in r.stdout.lower()
    info = json.loads(_cli("inspect", str(DATA / "conv_float.tflite"), "--json").stdout)
    assert info["fully_integer"] is False and info["float_ops"]
    info = json.loads(_cli("inspect", str(DATA / "prelu_int8.tflite"), "--json").stdout)
    assert "PRELU" in info["xnnpack_unsupported"]
    r = _cli("inspect", str(DATA / "missing.tflite"), ok=False)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_bench_json_fields():
    out = json.loads(_cli("bench", str(DATA / "conv_int8.tflite"), "--threads", "1", "--runs", "20",
                          "--min-seconds", "0", "--json").stdout)
    for k in ("init_ms", "first_inference_ms", "peak_rss_mb", "backend", "delegates", "num_threads"):
        assert k in out
    lat = out["latency"]
    assert lat["count"] >= 20 and lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert out["delegates"] == ["xnnpack"] and out["num_threads"] == 1
    out = json.loads(_cli("bench", str(DATA / "conv_int8.tflite"), "--no-xnnpack", "--runs", "5",
                          "--min-seconds", "0", "--json").stdout)
    assert out["delegates"] == []
    r = _cli("bench", str(DATA / "conv_int8.tflite"), "--delegate", "edgetpu", "--runs", "1", ok=False)
    assert r.returncode == 2 and "edgetpu" in r.stderr


def test_cli_doctor():
    out = json.loads(_cli("doctor", "--json").stdout)
    assert out["python"].count(".") == 2 and out["cpu"]["cores"] >= 1
    by_name = {b["name"]: b for b in out["backends"]}
    assert by_name["ai_edge_litert"]["ok"] is True
    assert by_name["tflite_runtime"]["ok"] is False and by_name["tflite_runtime"]["reason"]
    assert "features" in out["cpu"] or out["cpu"]["machine"]
    txt = _cli("doctor").stdout
    assert "backends:" in txt and "ai_edge_litert" in txt


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (modules imported by earlier tests do not count)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_available_backends_does_not_import_tensorflow_by_default():
    """Listing backends must not pull TensorFlow when a light backend works."""
    assert _python("import sys, edgelite; s = edgelite.available_backends(); "
                   "assert any(b.ok for b in s); print('tensorflow' in sys.modules)") == "False"


def test_building_the_cli_parser_imports_nothing_from_the_converter():
    assert _python("import sys; from edgelite.cli import build_parser; build_parser(); "
                   "print(sorted(m for m in sys.modules if m.startswith(('edgelite_convert', 'tensorflow', 'onnx'))))"
                   ) == "[]"
