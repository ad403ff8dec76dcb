"""The one input path: calibration (converter) and inference (runtime) make the same
tensor from the same image, through the spec embedded in the model."""
from __future__ import annotations

import dataclasses
import types
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite import quant
from edgelite.errors import InputError, MetadataError
from edgelite.preprocess import PreprocessSpec

DEMO = Path(__file__).resolve().parents[1] / "data" / "faces" / "demo"


@pytest.mark.parametrize("model", ["yunet_320", "sface"])
def test_calibration_and_inference_tensors_are_byte_identical(zoo_models, tmp_path, model):
    from edgelite_convert.calibration import build_calibration_set

    m = edgelite.Model(zoo_models / f"{model}-int8.tflite")
    spec, inp = m.preprocessing, m.inputs[0]
    assert spec is not None and inp.quantized
    folder = tmp_path / "calib"
    folder.mkdir()
    names = sorted(p.name for p in DEMO.iterdir() if p.suffix in (".jpg", ".png"))
    for n in names:  # the spec resizes each photo to the model's input (sface: none -> crop first)
        img = edgelite.load_image(DEMO / n)
        if spec.resize.value == "none":
            import cv2
            img = cv2.resize(img, spec.size[::-1], interpolation=cv2.INTER_AREA)
            np.save(folder / f"{n}.npy", img)  # keep the exact pixels
        else:
            shutil.copy(DEMO / n, folder / n)
    if spec.resize.value == "none":
        imgs = [np.load(folder / f"{n}.npy") for n in names]
        calib = [spec.apply(i) for i in imgs]  # the function the converter's image folders go through
    else:
        imgs = [edgelite.load_image(DEMO / n) for n in names]
        cs = build_calibration_set(folder, [(inp.name, list(inp.shape), "float32")], preprocess=spec,
                                   min_samples=1, min_recommended=1, progress=False, check_range=False)
        calib = list(next(iter(cs.arrays.values()))[:, None])
    assert len(calib) == len(imgs) >= 3
    for img, x in zip(imgs, calib):
        device, plan = m.prepare(img)
        assert device.dtype == np.dtype(inp.dtype) and device.shape == tuple(inp.shape)
        # what calibration saw, quantized with the model's input parameters
        want = quant.quantize(x, inp.scale, inp.zero_point, inp.dtype)
        assert device.tobytes() == want.tobytes()


def test_preprocess_spec_unknown_keys_and_bad_values_are_typed_errors():
    with pytest.raises(InputError, match="unknown preprocessing keys"):
        PreprocessSpec.from_dict({"size": [4, 4], "colour": "BGR"})  # misspelt: must not silently be RGB
    with pytest.raises(InputError):
        PreprocessSpec(size=(0, 4))
    with pytest.raises(InputError):
        PreprocessSpec(size=(4, 4), std=0)
    with pytest.raises(InputError):
        PreprocessSpec(size=(4, 4), color="CMYK")
    assert issubclass(InputError, ValueError)
    with pytest.raises(MetadataError):
        from edgelite.metadata import EdgeliteMetadata
        EdgeliteMetadata.from_dict({"format": "edgelite", "format_version": 1,
                                    "preprocessing": {"size": [4, 4], "colour": "BGR"}})


def test_per_channel_table_equals_float_path_then_quantize():
    spec = PreprocessSpec(size=(8, 8), resize="stretch", color="BGR", mean=(123.7, 116.3, 103.5),
                          std=(58.4, 57.1, 57.4), layout="NCHW")
    q = dataclasses.make_dataclass("Q", [("scale", float), ("zero_point", int), ("dtype", object),
                                         ("quantized", bool)])(0.0187, -14, np.int8, True)
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    x, plan = spec.prepare(img, q)
    f, _ = spec.prepare(img)
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.int8
    assert x.tobytes() == quant.quantize(f, q.scale, q.zero_point, np.int8).tobytes()
    assert plan.src_hw == (20, 30) and plan.dst_hw == (8, 8)


def test_letterbox_resizes_into_the_canvas_with_the_same_bytes():
    """A landscape frame letterboxed top-left is resized straight into the padded
    canvas; the result equals resize-then-pad done separately."""
    from edgelite.preprocess import plan_resize, resize_image

    rng = np.random.default_rng(3)
    for hw, dst in (((480, 640), (320, 320)), ((300, 1000), (640, 640)), ((200, 260), (320, 320))):
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        plan = plan_resize(hw, dst, "letterbox")
        ch, cw = plan.content_hw
        ref = np.zeros((*dst, 3), np.uint8)
        ref[:ch, :cw] = resize_image(img, (ch, cw))
        assert np.array_equal(plan.apply(img), ref)


@pytest.mark.parametrize("hw", [(480, 640), (240, 320), (320, 320), (200, 150)])
@pytest.mark.parametrize("color,norm", [("BGR", (127.5, 127.5)), ("RGB", (127.5, 127.5)), ("GRAY", (127.5, 127.5)),
                                        ("BGR", ((0.0, 64.0, 200.0), (1.0, 2.0, 0.5))),
                                        ("RGB", ((0.0, 64.0, 200.0), (1.0, 2.0, 0.5)))])
def test_tensor_of_converts_in_place_without_touching_the_callers_image(hw, color, norm):
    """The one-buffer path (resize into the canvas, colour and quantization table in
    place, letterbox rows written as the table's value of black) gives the bytes of
    to_tensor(plan.apply(...)), with one table or one per channel, and never writes
    into the caller's image, even when the plan returns it unchanged (no resize, no pad)."""
    from edgelite.preprocess import PreprocessSpec

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    keep = img.copy()
    spec = PreprocessSpec(size=(320, 320), resize="letterbox", color=color, mean=norm[0], std=norm[1])
    q = types.SimpleNamespace(scale=0.0078125, zero_point=0, dtype=np.dtype(np.int8), quantized=True)
    plan = spec.plan(hw)
    want = spec.to_tensor(plan.apply(img)[None], q)
    got = spec.tensor_of(img, plan, q)
    assert got.dtype == np.int8 and np.array_equal(got, want)
    assert np.array_equal(img, keep)
    assert np.array_equal(spec.tensor_of(img, plan), spec.to_tensor(plan.apply(img)[None]))  # float input


def test_run_image_writes_the_interpreter_input_and_equals_prepare_then_run(zoo_models):
    """Model.run_image (the detector's per-frame path: the tensor is written into the
    interpreter's own input buffer) gives the outputs of run(prepare(image)), also for
    a model resized by a batch in between, and leaves no view that blocks the next run."""
    m = edgelite.Model(zoo_models / "yunet_320-int8.tflite", num_threads=1)
    spec = m.preprocessing
    rng = np.random.default_rng(11)
    frames = [edgelite.load_image(DEMO / "Andrew_Morgan.jpg"), rng.integers(0, 256, (480, 640, 3), np.uint8),
              rng.integers(0, 256, (240, 320, 3), np.uint8), rng.integers(0, 256, (500, 200, 3), np.uint8)]
    for img in frames:
        x, plan = m.prepare(img)
        want = m.run(x, quantize=False, dequantize=False)
        timings: dict = {}
        got = m.run_image(img, plan, spec, dequantize=False, timings=timings)
        assert list(got) == list(want) and all(np.array_equal(got[k], want[k]) for k in want)
        assert set(timings) == {"preprocess", "inference"} and all(v >= 0 for v in timings.values())
    x2 = np.concatenate([m.prepare(f)[0] for f in frames[:2]])
    m.run(x2, quantize=False)  # resizes the input to a batch of two
    img = frames[1]
    x, plan = m.prepare(img)
    got = m.run_image(img, plan, dequantize=False)  # the embedded spec, through the resized model
    want = m.run(x, quantize=False, dequantize=False)
    assert all(np.array_equal(got[k], want[k]) for k in want)
    deq = m.run_image(img, plan)
    assert all(np.array_equal(deq[k], quant.dequantize(want[k], o.scale, o.zero_point))
               for k, o in zip(want, m.outputs))
    m.close()
    with pytest.raises(InputError, match="closed"):
        m.run_image(img, plan)


def test_zoo_int8_detector_takes_rgb_with_the_swap_folded(zoo_models):
    """The zoo's int8 YuNet was converted with fold_channel_order: it takes RGB (no
    per-frame swap) and says so in its metadata; the float32 reference stays BGR."""
    q = edgelite.Model(zoo_models / "yunet_320-int8.tflite", num_threads=1)
    f = edgelite.Model(zoo_models / "yunet_320-float32.tflite", num_threads=1)
    assert q.preprocessing.color.value == "RGB" and f.preprocessing.color.value == "BGR"
    assert any("channel order reversed" in r for r in q.metadata.quantization["rewrites"])
    img = edgelite.load_image(DEMO / "Andrew_Morgan.jpg")
    x_q, _ = q.prepare(img)
    x_f, _ = f.prepare(img)  # the BGR float tensor, quantized with the int8 input's parameters
    want = quant.quantize(x_f, q.inputs[0].scale, q.inputs[0].zero_point, q.inputs[0].dtype)
    assert np.array_equal(x_q, want[..., ::-1])


@pytest.mark.parametrize("scale,zp,dtype", [(1.0, -128, np.int8), (1.0, 0, np.uint8), (1.0, -100, np.int8),
                                            (0.925, -128, np.int8), (2.0, 0, np.int8), (1.0, 0, np.int8)])
def test_byte_shift_tables_are_applied_by_addition_with_the_lookups_bytes(scale, zp, dtype):
    """A table that adds a constant to every byte (YuNet: scale 1, zero point -128) is
    applied as one add/XOR, giving the bytes of the lookup, in place or not; a table
    that clips or scales is not taken for one."""
    rng = np.random.default_rng(2)
    px = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    px[0, 0, :3] = [[0, 0, 0], [255, 255, 255], [127, 128, 129]]
    lut = quant.pixel_lut(scale, zp, dtype, (0.0,), (1.0,), 3)
    want = np.stack([lut[c][px[..., c]] for c in range(3)], axis=-1)
    is_shift = quant.byte_shift(lut) is not None
    q = (np.arange(256) / scale + zp)
    info = np.iinfo(dtype)
    assert is_shift == (scale == 1.0 and q.min() >= info.min and q.max() <= info.max)
    got = quant.apply_lut(px, lut)
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, want)
    own = px.copy()
    got = quant.apply_lut(own, lut, inplace=True)
    assert np.array_equal(got, want) and np.shares_memory(got, own)
