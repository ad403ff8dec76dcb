"""Activation range methods (minmax / percentile / mse) and the precision suggestion (issue 12,
item 8), on tiny tf.Modules built here: real TensorFlow conversions, run by the runtime."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgelite

tf = pytest.importorskip("tensorflow")

RNG = np.random.default_rng(0)


def _save(module, d):
    tf.saved_model.save(module, str(d), signatures={"serving_default": module.__call__.get_concrete_function()})
    return d


def _outlier_net():
    """1x1 conv + ReLU -> 1x1 conv. The hidden activation is what calibration outliers widen."""
    w1 = tf.constant(RNG.normal(0, 0.5, (1, 1, 4, 16)).astype(np.float32))
    w2 = tf.constant(RNG.normal(0, 0.3, (1, 1, 16, 8)).astype(np.float32))

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 4], tf.float32, name="x")])
        def __call__(self, x):
            h = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME", name="hidden"))
            return {"y": tf.nn.conv2d(h, w2, 1, "SAME")}
    return Net()


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    return _save(_outlier_net(), tmp_path_factory.mktemp("ranges") / "net")


def _calib_with_rare_outlier(n=40):
    x = RNG.normal(0, 1, (n, 16, 16, 4)).astype(np.float32)
    x[3, 5, 7, :] = 60.0   # one pixel of one sample: 4 of 40*1024*4 input values
    return x


def _hidden_scale(model: bytes) -> float:
    """Scale of the ReLU output feeding the second conv (the only int8 activation between the two convs)."""
    info = edgelite.read_model_info(model)
    g = info.subgraphs[0]
    convs = [op for op in g.operators if op.op_name == "CONV_2D"]
    t = g.tensors[convs[1].inputs[0]]
    return float(t.quantization.scales[0])


@pytest.fixture(scope="module")
def minmax_result(outlier_model):
    from edgelite_convert import ConvertOptions, convert

    return convert(outlier_model, calibration=_calib_with_rare_outlier(), validation=HELD, progress=False,
                   options=ConvertOptions(min_calibration_samples=10, recommended_calibration_samples=10))


HELD = RNG.normal(0, 1, (12, 16, 16, 4)).astype(np.float32)  # real inputs: no outlier


def test_percentile_clips_a_rare_outlier_and_raises_cosine(outlier_model, minmax_result):
    from edgelite_convert import ConvertOptions, convert

    res = convert(outlier_model, calibration=_calib_with_rare_outlier(), validation=HELD, progress=False,
                  options=ConvertOptions(calibration_ranges="percentile", min_calibration_samples=10,
                                         recommended_calibration_samples=10))
    # the outlier sets the min/max step of the hidden activation; the 99.99th percentile ignores it
    assert _hidden_scale(res.model) < _hidden_scale(minmax_result.model) / 3
    cos_p = res.report["validation"]["cosine_min_over_outputs"]
    cos_m = minmax_result.report["validation"]["cosine_min_over_outputs"]
    assert cos_p > cos_m + 0.002, (cos_p, cos_m)
    rep = res.report["calibration_ranges"]
    assert rep["method"] == "percentile" and rep["tensors_adjusted"] >= 1 and rep["range_ratio_min"] < 0.35
    assert minmax_result.report["calibration_ranges"] == {"method": "minmax"}
    assert res.fully_integer


def _hist(values, lo, hi):
    from edgelite_convert.ranges import _Hist

    h = _Hist(lo, hi)
    h.add(values)
    return h


def _int8_mse(x, lo, hi):
    step = (hi - lo) / 255
    q = np.clip(np.round((x - lo) / step), 0, 255) * step + lo
    return float(np.mean((q - x) ** 2))


def test_mse_clips_a_heavy_tail_but_not_a_uniform_range():
    from edgelite_convert.ranges import choose_range

    rng = np.random.default_rng(3)
    # Laplace(b=1): the MSE-optimal 8-bit clip is known to be about 9.9 b (Banner et al., ACIQ)
    x = rng.laplace(0, 1, 200_000).astype(np.float32)
    lo, hi = choose_range(_hist(x, float(x.min()), float(x.max())), "mse")
    assert -11.5 < lo < -8.5 and 8.5 < hi < 11.5, (lo, hi)
    # a heavy tail (Student t, 3 dof): the chosen clip's real int8 error is the grid's best
    t = rng.standard_t(3, 200_000).astype(np.float32)
    lo, hi = choose_range(_hist(t, float(t.min()), float(t.max())), "mse")
    assert float(t.min()) < lo < 0 < hi < float(t.max())
    grid = [_int8_mse(t, -c, c) for c in np.geomspace(1, float(np.abs(t).max()), 60)]
    assert _int8_mse(t, lo, hi) <= 1.05 * min(grid)
    # uniform values: every clip costs more than it saves
    u = rng.uniform(-1, 3, 200_000).astype(np.float32)
    lo, hi = choose_range(_hist(u, float(u.min()), float(u.max())), "mse")
    assert lo < -0.95 and hi > 2.9
    # ReLU-like: the lower side stays at 0, zeros cost nothing
    r = np.maximum(x, 0)
    lo, hi = choose_range(_hist(r, 0.0, float(r.max())), "mse")
    assert lo == 0.0 and 2 < hi < float(r.max())
    assert _int8_mse(r, 0.0, hi) <= 1.05 * min(_int8_mse(r, 0.0, c) for c in np.geomspace(1, float(r.max()), 60))
    # percentile: |x| quantile, never wider than the recorded range
    lo, hi = choose_range(_hist(x, float(x.min()), float(x.max())), "percentile", 99.0)
    q = float(np.quantile(np.abs(x), 0.99))
    assert hi == pytest.approx(q, rel=0.01) and lo == pytest.approx(-q, rel=0.01)


def test_minmax_through_the_calibrated_model_is_the_converters_own_model(outlier_model):
    """The explicit calibrate-then-quantize path (taken for other ranges or a suggestion) with
    min/max ranges gives the converter's own int8 model: same ops, same scales."""
    from edgelite_convert import ConvertOptions, convert

    kw = dict(calibration=_calib_with_rare_outlier(20), progress=False)
    base = dict(min_calibration_samples=10, recommended_calibration_samples=10, holdout=0)
    a = convert(outlier_model, options=ConvertOptions(**base), **kw)
    # suggest_precision=None with a floor of 0 takes the explicit path and never searches
    b = convert(outlier_model, options=ConvertOptions(**base, suggest_precision=None, suggest_below_cosine=0.0), **kw)
    assert "precision_suggestion" in b.report and "skipped" in b.report["precision_suggestion"]
    ga, gb = (edgelite.read_model_info(m.model).subgraphs[0] for m in (a, b))
    assert [op.op_name for op in ga.operators] == [op.op_name for op in gb.operators]
    qa = [(t.name, list(t.quantization.scales)) for t in ga.tensors if t.quantization and t.quantization.is_quantized]
    qb = [(t.name, list(t.quantization.scales)) for t in gb.tensors if t.quantization and t.quantization.is_quantized]
    assert qa == qb and qa


def test_cli_flag_reaches_the_conversion(outlier_model, tmp_path, capsys):
    from edgelite.cli import main as cli_main

    np.save(tmp_path / "calib.npy", _calib_with_rare_outlier(24))
    out = tmp_path / "m.tflite"
    rc = cli_main(["convert", str(outlier_model), "--calibration", str(tmp_path / "calib.npy"), "-o", str(out),
                   "--calibration-ranges", "mse", "--min-samples", "10", "--no-suggest-precision"])
    assert rc == 0, capsys.readouterr().err
    assert "activation ranges: mse" in capsys.readouterr().out
    rep = json.loads(out.with_suffix(".report.json").read_text())
    assert rep["calibration_ranges"]["method"] == "mse" and rep["calibration_ranges"]["tensors_adjusted"] >= 1
    assert "precision_suggestion" not in rep


def test_bad_method_is_refused():
    from edgelite.errors import InputError
    from edgelite_convert import ConvertOptions

    with pytest.raises(InputError, match="calibration_ranges"):
        ConvertOptions(calibration_ranges="kl")
    with pytest.raises(InputError, match="int8"):
        ConvertOptions(mode="float16", calibration_ranges="mse")


def _sensitive_net():
    """Three 1x1 convs; the middle one ("sensitive") has, per output channel, one weight 80x the
    others' spread on an input channel that carries almost nothing: per-channel int8 weights keep that one
    weight and round the informative ones to 0 or +-1 steps. Keeping it float repairs the model."""
    rng = np.random.default_rng(7)
    w1 = rng.normal(0, 0.5, (1, 1, 3, 8)).astype(np.float32)
    w1[..., 0] *= 0.002                    # channel 0 of the first activation: ~0
    w2 = rng.normal(0, 0.05, (1, 1, 8, 8)).astype(np.float32)
    w2[0, 0, 0, :] = 4.0                   # the outlier weight of every output channel
    w3 = rng.normal(0, 0.5, (1, 1, 8, 4)).astype(np.float32)
    w1, w2, w3 = (tf.constant(w) for w in (w1, w2, w3))

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 12, 12, 3], tf.float32, name="x")])
        def __call__(self, x):
            h = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
            h = tf.nn.relu(tf.nn.conv2d(h, w2, 1, "SAME", name="sensitive"))
            return {"y": tf.nn.conv2d(h, w3, 1, "SAME")}
    return Net()


def test_suggestion_names_the_sensitive_layer_and_keeping_it_float_raises_cosine(tmp_path):
    from edgelite_convert import ConvertOptions, convert

    sm = _save(_sensitive_net(), tmp_path / "net")
    rng = np.random.default_rng(1)
    calib = rng.uniform(0, 1, (40, 12, 12, 3)).astype(np.float32)
    held = rng.uniform(0, 1, (10, 12, 12, 3)).astype(np.float32)
    res = convert(sm, calibration=calib, validation=held, progress=False,
                  options=ConvertOptions(suggest_precision=True, min_calibration_samples=10,
                                         recommended_calibration_samples=10, allow_collapsed=True))
    s = res.report["precision_suggestion"]
    assert s["keep_float"] and any("sensitive" in t for t in s["keep_float"]), s
    assert len(s["keep_float"]) <= 3 and s["candidates_measured"] >= 1
    # int8 loses visibly; keeping the suggested layers float removes most of that error on held-out data
    assert s["validation_cosine_int8"] < 0.995, s
    assert 1 - s["validation_cosine_with_keep_float"] < 0.2 * (1 - s["validation_cosine_int8"]), s
    assert s["improves_held_out"] is True and s["latency"]["full_int8_p50_ms"] > 0
    assert s["cli"].startswith("--keep-float ")
