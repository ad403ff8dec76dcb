"""Tiny-model tier: real TFLite models built in the test, run through edgelite.Model."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import edgelite
from edgelite import quant
from edgelite.model import Model, ModelPool

import tiny_models as tm


@pytest.fixture(scope="module")
def conv_models():
    f = tm.conv_net_function()
    calib = tm.calib_data()
    return {
        "fn": f,
        "float": tm.convert_function(f, int8=False),
        "int8": tm.convert_function(f, int8=True, io="int8", calib=calib),
        "uint8": tm.convert_function(f, int8=True, io="uint8", calib=calib),
        "int8_floatio": tm.convert_function(f, int8=True, io="float32", calib=calib),
    }


def test_float_model_matches_tensorflow(conv_models):
    m = Model(conv_models["float"])
    x = tm.calib_data(4, seed=9)
    for xi in x:
        ref = conv_models["fn"](xi)["probs"].numpy()
        np.testing.assert_allclose(m(xi), ref, atol=1e-5)
    assert m.inputs[0].dtype == np.float32 and not m.inputs[0].quantized


def test_int8_specs_and_quantization(conv_models):
    m = Model(conv_models["int8"])
    (i,), (o,) = m.inputs, m.outputs
    assert i.dtype == np.int8 and o.dtype == np.int8
    assert i.quantized and i.scale > 0 and -128 <= i.zero_point <= 127
    # calibration data was uniform [0,1): the input range should map ~[0,1] onto int8
    lo, hi = quant.dequantize(np.array([-128, 127], np.int8), i.scale, i.zero_point)
    assert lo <= 0.01 and 0.95 <= hi <= 1.1


def test_int8_close_to_float_reference(conv_models):
    mf, mq = Model(conv_models["float"]), Model(conv_models["int8"])
    xs = tm.calib_data(16, seed=5)
    ref = np.concatenate([mf(x) for x in xs])
    got = np.concatenate([mq(x) for x in xs])  # float in -> quantized, int8 out -> dequantized
    assert got.dtype == np.float32
    o = mq.outputs[0]
    # within a few output quantization steps of the float model
    assert np.abs(got - ref).max() <= 6 * o.scale, (np.abs(got - ref).max(), o.scale)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.8


def test_raw_int8_passthrough_and_optout(conv_models):
    m = Model(conv_models["int8"])
    x = tm.calib_data(1, seed=3)[0]
    i, o = m.inputs[0], m.outputs[0]
    q = quant.quantize(x, i.scale, i.zero_point, np.int8)
    raw = m.run(q, dequantize=False)[o.name]
    assert raw.dtype == np.int8
    np.testing.assert_array_equal(raw, m.run(x, dequantize=False)[o.name])
    np.testing.assert_allclose(quant.dequantize(raw, o.scale, o.zero_point), m(x))
    with pytest.raises(edgelite.InputError, match="quantize=False"):
        m.run(x, quantize=False)
    with pytest.raises(edgelite.InputError, match="NaN"):
        m.run(np.full_like(x, np.nan))


def test_uint8_images_pass_straight_in(conv_models):
    m = Model(conv_models["uint8"])
    assert m.inputs[0].dtype == np.uint8
    img = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    out1 = m.run(img, dequantize=False)
    m.interpreter.set_tensor(m.inputs[0].index, img)
    m.interpreter.invoke()
    np.testing.assert_array_equal(out1[m.outputs[0].name], m.interpreter.get_tensor(m.outputs[0].index))


def test_float_io_int8_model(conv_models):
    m = Model(conv_models["int8_floatio"])
    assert m.inputs[0].dtype == np.float32
    x = tm.calib_data(1, seed=2)[0]
    assert m(x).shape == (1, 5)


def test_batch_loops_on_fixed_batch_model(conv_models):
    m = Model(conv_models["float"])
    xs = np.concatenate(tm.calib_data(5, seed=11))
    batched = m(xs)
    assert batched.shape == (5, 5)
    np.testing.assert_allclose(batched, np.concatenate([m(x[None]) for x in xs]), atol=1e-6)


def test_batch_resizes_dynamic_model():
    m = Model(tm.dynamic_batch_model())
    assert m.inputs[0].shape_signature[0] == -1
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(m(x), 2 * x + 1)
    np.testing.assert_allclose(m(x[:1]), 2 * x[:1] + 1)


def test_inputs_by_list_and_dict_and_errors():
    m = Model(tm.two_input_model())
    a = np.ones((1, 3), np.float32)
    b = np.full((1, 3), 2, np.float32)
    names = [s.name for s in m.inputs]
    out = m.run({names[0]: a, names[1]: b})
    vals = sorted(float(v[0, 0]) for v in out.values())
    assert vals == [2.0, 3.0]
    assert set(m.run([a, b])) == set(out)
    with pytest.raises(edgelite.InputError, match="2 input"):
        m.run([a])
    with pytest.raises(edgelite.InputError, match="unknown"):
        m.run({"nope": a, names[0]: a})
    with pytest.raises(edgelite.InputError, match="2 inputs"):
        m.run(a)
    with pytest.raises(edgelite.InputError, match="shape"):
        m.run([np.ones((1, 4), np.float32), b])
    with pytest.raises(edgelite.InputError, match="rank"):
        m.run([np.ones((1, 1, 3), np.float32), b])
    with pytest.raises(edgelite.InputError, match="not numeric"):
        m.run([np.array([["a", "b", "c"]]), b])
    with pytest.raises(ValueError):  # InputError is also a ValueError
        m.run([a])


def test_signature_runner(tmp_path):
    m = Model(tm.multi_signature_model(tmp_path / "sm"))
    assert set(m.signatures) == {"add", "mul"}
    x = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_allclose(m.run_signature("add", x=x)["out"], x + 10)
    np.testing.assert_allclose(m.run_signature("mul", x=x)["out"], x * 3)
    with pytest.raises(edgelite.InputError, match="signature"):
        m.run_signature("nope", x=x)
    with pytest.raises(edgelite.InputError, match="missing"):
        m.run_signature("add", y=x)


def test_delegate_choices(conv_models):
    x = tm.calib_data(1)[0]
    a = Model(conv_models["int8"], delegates=("xnnpack",), num_threads=2)
    b = Model(conv_models["int8"], delegates=(), num_threads=1)
    assert a.delegates == ("xnnpack",) and b.delegates == ()
    # XNNPACK and reference kernels agree within one quantization step
    assert np.abs(a(x) - b(x)).max() <= a.outputs[0].scale + 1e-6
    with pytest.raises(edgelite.DelegateError, match="libedgetpu|edgetpu"):
        Model(conv_models["int8"], delegates=("edgetpu",))
    with pytest.raises(edgelite.DelegateError, match="no_such_delegate"):
        Model(conv_models["int8"], delegates=("/nonexistent/libno_such_delegate.so",))
    with pytest.raises(RuntimeError):  # DelegateError is also a RuntimeError
        Model(conv_models["int8"], delegates=("edgetpu",))


def test_forced_backend_and_unusable_backend(conv_models):
    m = Model(conv_models["float"], backend="ai_edge_litert")
    assert m.backend == "ai_edge_litert"
    from edgelite.backends import backend_status
    st = backend_status("tflite_runtime")
    if not st.ok:
        with pytest.raises(edgelite.BackendError, match="tflite_runtime"):
            Model(conv_models["float"], backend="tflite_runtime")
    with pytest.raises(edgelite.BackendError, match="unknown backend"):
        Model(conv_models["float"], backend="onnx")


def test_warmup_pool_and_threads(conv_models):
    pool = ModelPool(conv_models["int8"], size=2, num_threads=1)
    xs = tm.calib_data(8, seed=4)
    ref = [Model(conv_models["int8"])(x) for x in xs]
    results = [None] * len(xs)

    def work(i):
        results[i] = pool.run(xs[i])[pool.models[0].outputs[0].name]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, e in zip(results, ref):
        np.testing.assert_allclose(r, e)
    pool.models[0].warmup(2)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(edgelite.ModelNotFoundError):
        Model(tmp_path / "nope.tflite")
    with pytest.raises(FileNotFoundError):
        Model(tmp_path / "nope.tflite")
    with pytest.raises(edgelite.ModelNotFoundError, match="not a file"):
        Model(tmp_path)
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(edgelite.InvalidModelError):
        Model(tmp_path / "empty.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"hello, I am not a model" * 10)
    with pytest.raises(edgelite.InvalidModelError):
        Model(tmp_path / "junk.tflite")
    with pytest.raises(edgelite.InputError):
        Model(12345)
    with pytest.raises(edgelite.InputError, match="num_threads"):
        Model(tm.dynamic_batch_model(), num_threads=0)


def test_truncated_real_model(conv_models):
    data = conv_models["int8"]
    for cut in (8, 64, len(data) // 2, len(data) - 1):
        with pytest.raises(edgelite.InvalidModelError):
            Model(data[:cut])
