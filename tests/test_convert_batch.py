"""Batch-polymorphic conversions: a converted model can be resized to a batch of N.

Issue 9's micro-batching needs it: the zoo's models used to bake a batch of 1 into
their RESHAPE targets, so resizing their input made XNNPACK fail in
``allocate_tensors``. The converter now writes those reshapes with a dynamic
leading dim, declares the batch dimension ``-1`` and proves on the runtime that a
batch of N gives the outputs of N single runs (exactly for int8). Batch-1 numbers
do not change (the golden files of the zoo are the same bytes as before).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgelite
from edgelite import zoo

RNG = np.random.default_rng(7)
INT64_MAX = np.iinfo(np.int64).max


def _batch_vs_singles(model_bytes_or_path, xs: list[np.ndarray], threads: int = 1) -> dict[str, float]:
    """Max |batch-N output - concatenated single outputs| per output (raw values)."""
    one = edgelite.Model(model_bytes_or_path, num_threads=threads)
    many = edgelite.Model(model_bytes_or_path, num_threads=threads)
    n = xs[0].shape[0]
    singles = [one.run([x[i:i + 1] for x in xs], quantize=False, dequantize=False) for i in range(n)]
    got = many.run(list(xs), quantize=False, dequantize=False)
    assert many.interpreter.get_input_details()[0]["shape"][0] == n, "the model was looped, not resized"
    out = {}
    for k in got:
        ref = np.concatenate([s[k] for s in singles], axis=0)
        assert got[k].shape == ref.shape
        out[k] = float(np.abs(got[k].astype(np.float64) - ref.astype(np.float64)).max())
    return out


def _head_model() -> onnx.ModelProto:
    """YuNet-head and SFace-tail shapes in one tiny graph: Conv -> Transpose(0,2,3,1) ->
    Reshape(1,-1,4) (baked batch of 1 in the ONNX file, as YuNet has), a Slice over
    the whole batch axis, and Flatten -> Gemm; dynamic batch 'N' in the ONNX input."""
    w1 = RNG.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    w2 = RNG.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32)
    wg = RNG.normal(0, 0.1, (8 * 4 * 4, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Transpose", ["c2"], ["t2"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t2", "shape_head"], ["h"]),
        helper.make_node("Sigmoid", ["h"], ["cls"]),
        helper.make_node("Slice", ["r1", "st", "en", "ax"], ["s1"]),
        helper.make_node("Flatten", ["s1"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wg"], ["emb"]),
    ]
    inits = {"w1": w1, "w2": w2, "wg": wg, "shape_head": np.array([1, -1, 4], np.int64),
             "st": np.array([0, 0], np.int64), "en": np.array([INT64_MAX, 8], np.int64),
             "ax": np.array([0, 1], np.int64)}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("cls", TensorProto.FLOAT, ["N", 16, 4]),
         helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.fixture(scope="module")
def converted_head(tmp_path_factory):
    from edgelite_convert import ConvertOptions, convert

    d = tmp_path_factory.mktemp("batch")
    path = d / "head.onnx"
    onnx.save(_head_model(), str(path))
    calib = [RNG.uniform(0, 1, (1, 8, 8, 3)).astype(np.float32) for _ in range(24)]
    return convert(path, calibration=calib, options=ConvertOptions(holdout=4), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["int8", "float32"])
def test_tiny_onnx_conversion_is_batch_polymorphic(converted_head, which):
    res = converted_head
    assert res.report["batch"]["batch_polymorphic"] is True
    assert res.report["batch"]["float32"]["batch_polymorphic"] is True
    model = res.model if which == "int8" else res.float_model
    m = edgelite.Model(model)
    assert m.inputs[0].shape_signature[0] == -1 and m.inputs[0].shape[0] == 1
    assert all(o.shape_signature[0] == -1 for o in m.outputs)
    if which == "int8":
        xs = [RNG.integers(-128, 128, (4, 8, 8, 3)).astype(np.int8)]
    else:
        xs = [RNG.uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)]
    diffs = _batch_vs_singles(model, xs)
    assert set(diffs) == {o.name for o in m.outputs}
    if which == "int8":
        assert all(d == 0.0 for d in diffs.values()), diffs
    else:
        assert all(d <= 1e-5 for d in diffs.values()), diffs
    out = m.run(xs[0])
    assert {v.shape[0] for v in out.values()} == {4}


def test_model_that_folds_the_batch_stays_batch_1_and_still_loops():
    """A reshape that merges the batch into another axis cannot be resized: the
    model is left as converted (batch 1) with the reason, and Model loops."""
    import tensorflow as tf

    from edgelite_convert.batching import make_batch_polymorphic

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 3], tf.float32)])
    def f(x):
        return tf.reshape(tf.transpose(x, [3, 1, 2, 0]), [3, 16])

    b = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()]).convert()
    out, info = make_batch_polymorphic(b)
    assert out == b and info["batch_polymorphic"] is False and "batch of 3" in info["reason"]
    assert edgelite.Model(out).inputs[0].shape_signature[0] == 1


def test_probe_of_an_already_dynamic_model():
    from edgelite_convert.batching import make_batch_polymorphic

    from tiny_models import dynamic_batch_model

    b = dynamic_batch_model()
    out, info = make_batch_polymorphic(b)
    assert out == b and info == {"batch_polymorphic": True, "already": True}


# ----------------------------------------------------------------------------
# The zoo
# ----------------------------------------------------------------------------
def _zoo_inputs(name: str, precision: str, golden: dict, n: int = 4) -> np.ndarray:
    """The golden input at position 1 of a batch of ``n`` real-looking raw inputs."""
    from edgelite_convert.zoo import detector_calibration

    g = golden["input"]
    if name.startswith("yunet"):
        size = g.shape[1]
        imgs = [s.astype(np.float32)[None] for s in detector_calibration(size, n=n - 1, seed=3)]
    else:
        imgs = [np.clip(g.astype(np.float32) + RNG.normal(0, 20, g.shape), 0, 255) for _ in range(n - 1)]
    m = edgelite.Model(zoo.model_path(name, precision))
    raw = [m._prepare(m.inputs[0], x, True) for x in imgs]  # quantized for int8, as Model feeds it
    return np.concatenate([raw[0], g, *raw[1:]], axis=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(zoo.ZOO_MODELS))
@pytest.mark.parametrize("precision", zoo.PRECISIONS)
@pytest.mark.parametrize("threads", [1, 2])
def test_zoo_batch4_equals_four_single_runs(zoo_models, name, precision, threads):
    path = zoo.model_path(name, precision)
    golden = dict(np.load(path.with_suffix(".golden.npz")))
    m = edgelite.Model(path)
    assert m.inputs[0].shape_signature[0] == -1, "zoo model not batch-polymorphic: rebuild the zoo"
    xs = _zoo_inputs(name, precision, golden)
    diffs = _batch_vs_singles(path, [xs], threads=threads)
    if precision == "int8":
        assert all(d == 0.0 for d in diffs.values()), diffs
    else:
        scale = max(float(np.abs(v).max()) for k, v in golden.items() if k.startswith("out:"))
        assert all(d <= 1e-5 * scale for d in diffs.values()), diffs
    # batch 1 still gives the build-time numbers, and so does position 1 of the batch
    got = edgelite.Model(path, num_threads=1).run(xs, quantize=False, dequantize=False)
    one = edgelite.Model(path, num_threads=1).run(golden["input"], quantize=False, dequantize=False)
    for k, v in golden.items():
        if k.startswith("out:"):
            np.testing.assert_array_equal(one[k[4:]], v)
            if precision == "int8":
                np.testing.assert_array_equal(got[k[4:]][1:2], v)


@pytest.mark.slow
def test_zoo_build_report_records_the_batch_proof(zoo_models):
    import json

    for name in zoo.ZOO_MODELS:
        rep = json.loads(zoo.model_path(name, "int8").with_suffix(".json").read_text())
        assert rep["batch"]["batch_polymorphic"] is True, rep["batch"]
        assert rep["batch"]["exact"] is True
        assert rep["batch"]["float32"]["batch_polymorphic"] is True


@pytest.mark.slow
def test_bench_model_batch_quick(zoo_models, tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "device_tests"))
    import bench_model_batch

    assert bench_model_batch.main(["--quick", "--zoo-models", "yunet_320", "--precisions", "int8", "--batches", "1,2",
                             "--results-dir", str(tmp_path), "--device-id", "t"]) == 0
    rep = json.loads((tmp_path / "t" / "model_batch.json").read_text())
    r = rep["results"][0]
    assert r["label"] == "yunet_320-int8" and set(r["batches"]) == {"1", "2"}
    assert "b2 gain" in (tmp_path / "t" / "model_batch.md").read_text()
