"""Tiny-model tier for the converter: a Keras model built here, converted to
full-integer int8 through the public API and the CLI, run with edgelite.Model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite.preprocess import PreprocessSpec

ROOT = Path(__file__).resolve().parents[1]
ORL = ROOT / "data" / "faces" / "orl"


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 64, 3), name="image")  # 64x64: the PReLU constant is tiled (>= prelu.MIN_PIXELS)
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.PReLU(shared_axes=[1, 2], name="prelu1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out)
    # negative slopes and slopes above 1: the general exact form (shared with ONNX)
    alpha = np.linspace(-0.25, 1.3, 8).astype(np.float32).reshape(1, 1, 8)
    model.get_layer("prelu1").set_weights([alpha])
    # an untrained net's softmax is near-uniform (argmax decided by noise); make the
    # logits decisive so top-1 agreement measures quantization, not ties
    k, b = model.get_layer("probs").get_weights()
    model.get_layer("probs").set_weights([k * 40.0, b])
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    model.save(path)
    return path, model


@pytest.fixture(scope="module")
def spec():
    return PreprocessSpec(size=(64, 64), resize="stretch", color="RGB", mean=0.0, std=255.0)


def test_convert_keras_full_integer(keras_model, spec, tmp_path):
    from edgelite_convert import ConvertOptions, convert

    path, kmodel = keras_model
    out = tmp_path / "tiny_int8.tflite"
    res = convert(path, out, calibration=ORL, preprocess=spec, task="classification",
                  labels=["a", "b", "c", "d"], options=ConvertOptions(max_calibration_samples=120, holdout=16),
                  progress=False)
    assert out.is_file() and out.with_suffix(".report.json").is_file()
    r = json.loads(out.with_suffix(".report.json").read_text())
    assert r["fully_integer"] is True and r["float_ops"] == []
    assert "PRELU" not in r["op_histogram"]
    # the ONNX path's form (not max(x, αx)), with the same [1,1,W,C] per-channel constant
    assert any("prelu1" in s and "relu(-x)" in s and "[1,1,W,C]" in s for s in r["rewrites"]), r["rewrites"]
    assert "MAXIMUM" not in r["op_histogram"]
    from edgelite import read_model_info
    sg = read_model_info(out.read_bytes()).subgraphs[0]
    const_shapes = [tuple(sg.tensors[i].shape) for op in sg.operators if op.op_name == "MUL"
                    for i in op.inputs if i >= 0 and sg.tensors[i].is_constant]
    assert (1, 64, 8) in const_shapes or (1, 1, 64, 8) in const_shapes, const_shapes
    v = r["validation"]["outputs"]
    (o,) = v.values()
    assert o["cosine_mean"] > 0.98 and o["top1_agreement"] >= 0.8
    # the report is one typed record: attributes, the JSON's keys, one serialisation
    from edgelite_convert.report import ConversionReport, SourceInfo

    rep = res.report
    assert isinstance(rep, ConversionReport) and isinstance(rep.source, SourceInfo)
    assert rep.source.kind == "keras" and rep.source.sha256 == r["source"]["sha256"]
    assert rep.fully_integer is res.fully_integer is True and rep.validation["outputs"].keys() == v.keys()
    assert rep.to_dict() == r and sorted(rep) == sorted(r)
    assert "keep_float_cost" not in rep and rep.keep_float_cost is None  # absent parts stay out of the JSON
    with pytest.raises(KeyError):
        rep["no_such_key"]

    m = edgelite.Model(out)
    assert m.inputs[0].dtype == np.int8 and m.outputs[0].dtype == np.int8
    assert m.metadata.task == "classification" and m.metadata.labels == ("a", "b", "c", "d")
    assert m.metadata.preprocessing == spec
    assert m.metadata.source["sha256"] and m.metadata.calibration["count"] >= 100
    # closeness to the Keras float model on real (held-out style) images
    from edgelite.image import load_image
    imgs = sorted(ORL.rglob("*.pgm"))[-10:]
    for f in imgs:
        x = spec.apply(load_image(f))
        ref = kmodel(x).numpy()
        got = m(x)
        assert np.abs(got - ref).max() < 0.05
        # the LUT path (uint8 -> int8 directly) gives the same input tensor as float quantization
        q = spec.apply_quantized(load_image(f), m.inputs[0].scale, m.inputs[0].zero_point, np.int8)
        np.testing.assert_allclose(m(q), got, atol=m.outputs[0].scale * 1.01)


def test_cli_convert_then_inspect_reports_fully_integer(keras_model, tmp_path):
    path, _ = keras_model
    out = tmp_path / "m.tflite"
    cli = [sys.executable, "-m", "edgelite.cli"]
    r = subprocess.run(cli + ["convert", str(path), "--calibration", str(ORL), "--input-size", "64", "64",
                              "--max-samples", "60", "--min-samples", "10", "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fully integer: True" in r.stdout
    r = subprocess.run(cli + ["inspect", str(out), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout)
    assert info["fully_integer"] is True
    assert info["metadata"]["edgelite"]["preprocessing"]["size"] == [64, 64]


def test_bad_calibration_refused(keras_model, spec, tmp_path):
    from edgelite_convert import ConvertOptions, convert

    path, _ = keras_model
    rng = np.random.default_rng(0)
    few = rng.uniform(0, 1, (5, 64, 64, 3)).astype(np.float32)
    np.save(tmp_path / "few.npy", few)
    with pytest.raises(edgelite.CalibrationDataError, match="only 5"):
        convert(path, calibration=tmp_path / "few.npy", preprocess=spec, progress=False)
    wrong = rng.uniform(0, 1, (20, 3, 64, 64)).astype(np.float32)
    with pytest.raises(edgelite.CalibrationDataError, match="NCHW"):
        convert(path, calibration=wrong, preprocess=spec, progress=False)
    const = np.zeros((20, 64, 64, 3), np.float32)
    with pytest.raises(edgelite.CalibrationDataError, match="constant"):
        convert(path, calibration=const, preprocess=spec, progress=False)
    dup = np.repeat(rng.uniform(0, 1, (1, 64, 64, 3)).astype(np.float32), 20, axis=0)
    with pytest.raises(edgelite.CalibrationDataError, match="duplicate"):
        convert(path, calibration=dup, preprocess=spec, progress=False)
    scale = rng.uniform(0, 255, (20, 64, 64, 3)).astype(np.float32)  # 0..255 data, model declared [0,1]
    with pytest.raises(edgelite.CalibrationDataError, match="normalised differently"):
        convert(path, calibration=scale, preprocess=spec, progress=False)
    with pytest.raises(edgelite.CalibrationDataError, match="no images"):
        convert(path, calibration=tmp_path, preprocess=spec, progress=False)
    with pytest.raises(edgelite.ConversionError, match="calibration"):
        convert(path, calibration=None, preprocess=spec, progress=False, options=ConvertOptions())
