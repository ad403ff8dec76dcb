"""YuNet decoding: synthetic unit tests, and parity with OpenCV's FaceDetectorYN.

Parity method: the same uint8 canvas goes to (a) onnxruntime / cv2.dnn running the
YuNet ONNX model, decoded by edgelite, and (b) ``cv2.FaceDetectorYN`` (OpenCV
4.x), which runs the same weights and decodes in C++. FaceDetectorYN does not
resize: it pads the image bottom/right to a multiple of 32, which we replicate
with ``ResizeMode.PAD`` + ``padded_input_hw``.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from edgelite.errors import ImageError, InputError
from edgelite.face.geometry import MIN_FACE_AT_INPUT, ResizeMode, iou, plan_resize
from edgelite.face.yunet import (
    YUNET_OUTPUT_NAMES,
    decode_yunet,
    decode_yunet_raw,
    padded_input_hw,
    yunet_spec,
    yunet_priors,
)

DEMO = Path(__file__).resolve().parents[1] / "data" / "faces" / "demo"
DEMO_FILES = ["Andrew_Morgan.jpg", "Nick_Hague.jpg", "Morgan_and_Hague_ISS.jpg", "Andrew_Morgan_ISS.jpg", "Eileen_Collins.png"]


def _zeros(h, w):
    out = {}
    for name in YUNET_OUTPUT_NAMES:
        kind, s = name.split("_")
        ch = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}[kind]
        out[name] = np.zeros((1, (h // int(s)) * (w // int(s)), ch), dtype=np.float32)
    return out


def _put(out, stride, row, col, w_cols, *, cls, obj, bbox, kps=None):
    idx = row * w_cols + col  # row-major grid
    out[f"cls_{stride}"][0, idx, 0] = cls
    out[f"obj_{stride}"][0, idx, 0] = obj
    out[f"bbox_{stride}"][0, idx] = bbox
    if kps is not None:
        out[f"kps_{stride}"][0, idx] = kps


# ----------------------------------------------------------------------------- synthetic


def test_priors_are_row_major_per_stride():
    cols, rows, strides = yunet_priors((64, 96))
    assert cols.shape == (8 * 12 + 4 * 6 + 2 * 3,)
    # stride 16 block starts after the 96 stride-8 cells; cell 15 is row 2, col 3.
    assert (strides[96], cols[96 + 15], rows[96 + 15]) == (16, 3, 2)
    assert (strides[-1], cols[-1], rows[-1]) == (32, 2, 1)
    with pytest.raises(ValueError):
        cols[0] = 1  # cached arrays are read-only


def test_decode_formula_on_one_prior():
    h, w = 64, 96
    out = _zeros(h, w)
    kps = np.array([[0.1 * k, -0.1 * k] for k in range(5)], dtype=np.float32).reshape(-1)
    _put(out, 16, 2, 3, w // 16, cls=0.81, obj=1.0, bbox=[0.25, -0.5, math.log(2), math.log(3)], kps=kps)
    res = decode_yunet(out, (h, w))
    assert len(res) == 1 and res.image_hw == (h, w)
    f = res[0]
    assert f.score == pytest.approx(0.9, abs=1e-6)  # sqrt(0.81 * 1.0)
    # centre ((3 + 0.25) * 16, (2 - 0.5) * 16) = (52, 24); size (2 * 16, 3 * 16) = (32, 48)
    np.testing.assert_allclose(f.box, [36, 0, 68, 48], atol=1e-4)
    expect = [[(3 + 0.1 * k) * 16, (2 - 0.1 * k) * 16] for k in range(5)]
    np.testing.assert_allclose(f.landmarks, expect, atol=1e-4)


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.6, 0.9, 1.0])
def test_int8_outputs_decode_as_if_dequantized_first(thr):
    """The detector hands int8 outputs to the decoder raw (``quantization=``), which
    dequantizes only the cells that can reach the threshold: same faces, same bits."""
    from edgelite.quant import dequantize

    rng = np.random.default_rng(7)
    h, w = 96, 128
    raw, q = {}, {}
    for k, (name, ref) in enumerate(_zeros(h, w).items()):
        kind = name.split("_")[0]
        if kind in ("cls", "obj"):  # probabilities: scale ~1/255, zero point -128, as YuNet's
            scale, zp = float(np.float32(1 / 255 + k * 1e-5)), -128
            # many cells near the threshold, where a rounding slip in the prefilter would show
            vals = rng.choice(np.arange(-128, 128), ref.size, p=None).astype(np.int8)
        else:
            scale, zp = float(np.float32(0.03 + 0.01 * k)), int(rng.integers(-20, 20))
            vals = rng.integers(-128, 128, ref.size).astype(np.int8)
        raw[name], q[name] = vals.reshape(ref.shape), (scale, zp)
    real = {n: dequantize(v, *q[n]) for n, v in raw.items()}
    a = decode_yunet(real, (h, w), score_threshold=thr, top_k=50)
    b = decode_yunet(raw, (h, w), score_threshold=thr, top_k=50, quantization=q)
    assert len(a) == len(b) and (thr == 1.0 or len(a) > 0)
    assert np.array_equal(a.boxes, b.boxes) and [f.score for f in a] == [f.score for f in b]
    assert np.array_equal(np.stack([f.landmarks for f in a] or [np.zeros((5, 2))]),
                          np.stack([f.landmarks for f in b] or [np.zeros((5, 2))]))
    with pytest.raises(InputError, match="dequantize"):
        decode_yunet(raw, (h, w))  # raw integers without their parameters are refused


def test_scores_are_clamped_before_sqrt():
    out = _zeros(32, 32)
    _put(out, 8, 0, 0, 4, cls=2.0, obj=3.0, bbox=[0, 0, 0, 0])  # clamps to 1 * 1
    _put(out, 8, 3, 3, 4, cls=1.5, obj=-0.2, bbox=[0, 0, 0, 0])  # clamps to 1 * 0
    _, _, scores = decode_yunet_raw(out, (32, 32))
    assert scores.shape == (16 + 4 + 1,)
    assert scores[0] == 1.0 and scores[15] == 0.0


def test_threshold_nms_top_k_and_max_faces():
    h, w = 64, 64
    out = _zeros(h, w)
    # Two near-identical boxes at neighbouring stride-8 cells and one far away.
    _put(out, 8, 2, 2, 8, cls=0.81, obj=1, bbox=[0, 0, math.log(3), math.log(3)])
    _put(out, 8, 2, 3, 8, cls=0.64, obj=1, bbox=[-0.9, 0, math.log(3), math.log(3)])
    _put(out, 8, 6, 6, 8, cls=0.49, obj=1, bbox=[0, 0, math.log(2), math.log(2)])
    def scores(**kw):
        return [round(f.score, 3) for f in decode_yunet(out, (h, w), **kw)]

    # A = [4, 4, 28, 28] (0.9), B = [4.8, 4, 28.8, 28] (0.8, IoU with A ~0.94), C far away (0.7).
    bx = decode_yunet(out, (h, w), nms_threshold=1.0).boxes
    assert iou(bx[0], bx[1])[0, 0] > 0.9
    assert scores() == [0.9, 0.7]  # default NMS 0.3 suppresses B
    assert scores(nms_threshold=1.0) == [0.9, 0.8, 0.7]
    assert scores(nms_threshold=1.0, score_threshold=0.75) == [0.9, 0.8]
    assert scores(top_k=1) == [0.9]
    assert scores(nms_threshold=1.0, max_faces=2) == [0.9, 0.8]
    assert scores(score_threshold=0.95) == []


def test_decode_maps_back_with_plan():
    out = _zeros(64, 64)
    _put(out, 16, 1, 1, 4, cls=1, obj=1, bbox=[0, 0, 0, 0])  # box [8, 8, 24, 24] in the input
    plan = plan_resize((128, 256), (64, 64), ResizeMode.LETTERBOX)  # scale 0.25
    res = decode_yunet(out, (64, 64), plan=plan)
    assert res.image_hw == (128, 256)
    np.testing.assert_allclose(res[0].box, [32, 32, 96, 96], atol=1e-4)
    with pytest.raises(InputError, match="plan is for input"):
        decode_yunet(out, (64, 64), plan=plan_resize((128, 256), (96, 96)))


def test_decode_rejects_bad_outputs():
    out = _zeros(64, 64)
    with pytest.raises(InputError, match="missing"):
        decode_yunet({k: v for k, v in out.items() if k != "kps_32"}, (64, 64))
    with pytest.raises(InputError, match="another size"):
        decode_yunet(out, (64, 96))
    with pytest.raises(InputError, match="multiples of 32"):
        decode_yunet(out, (60, 64))
    bad = dict(out, cls_8=out["cls_8"].astype(np.int8))
    with pytest.raises(InputError, match="dequantize"):
        decode_yunet(bad, (64, 64))
    with pytest.raises(InputError):
        decode_yunet(out, (64, 64), score_threshold=1.5)
    with pytest.raises(InputError):
        decode_yunet(list(out.values()), (64, 64))


def _yunet_input(rgb, hw, mode="letterbox", layout="NHWC"):
    """YuNet's input through the one adapter: its PreprocessSpec, in the given layout."""
    return dataclasses.replace(yunet_spec(hw, mode), layout=layout).prepare(rgb)


def test_yunet_spec_and_tensor():
    spec = yunet_spec((640, 640))
    assert spec.color.value == "BGR" and (spec.mean, spec.std) == ((0.0,), (1.0,))
    assert spec.resize.value == "letterbox" and spec.layout.value == "NHWC"
    with pytest.raises(InputError):
        yunet_spec((100, 100))  # not multiples of 32
    img = np.zeros((40, 80, 3), dtype=np.uint8)
    img[..., 0] = 255  # pure red in RGB
    x, plan = _yunet_input(img, (64, 96))
    assert x.shape == (1, 64, 96, 3) and x.dtype == np.float32
    assert plan.content_hw == (48, 96)
    np.testing.assert_array_equal(x[0, 0, 0], [0, 0, 255])  # BGR: red is last
    assert x[0, 60].max() == 0  # zero padding below the content
    xc, _ = _yunet_input(img, (64, 96), layout="NCHW")
    assert xc.shape == (1, 3, 64, 96)
    np.testing.assert_array_equal(xc[0].transpose(1, 2, 0), x[0])
    with pytest.raises(ImageError):
        _yunet_input(img.astype(np.float32), (64, 96))
    with pytest.raises(InputError):
        _yunet_input(img, (64, 96), layout="HWC")
    assert padded_input_hw((1132, 770)) == (1152, 800)


# ----------------------------------------------------------------------------- parity


def _match(ours, ref_rows):
    """Pair our faces with OpenCV's rows by best IoU; returns (ious, lm_err, score_err)."""
    ref_boxes = np.c_[ref_rows[:, :2], ref_rows[:, :2] + ref_rows[:, 2:4]]
    m = iou(ours.boxes, ref_boxes)
    ious, lm_err, sc_err = [], [], []
    for j in range(len(ref_rows)):
        i = int(np.argmax(m[:, j]))
        ious.append(m[i, j])
        lm_err.append(np.abs(ours[i].landmarks - ref_rows[j, 4:14].reshape(5, 2)).max())
        sc_err.append(abs(ours[i].score - ref_rows[j, 14]))
    return np.array(ious), np.array(lm_err), np.array(sc_err)


@pytest.fixture(scope="module")
def cv2_mod():
    return pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def yunet_ort(onnx_sources):
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3  # the 2023mar export lists initializers as inputs: noisy warnings
    so.intra_op_num_threads = 2
    path = onnx_sources / "face_detection_yunet_2023mar.onnx"
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_decode_matches_facedetectoryn_onnxruntime_640(cv2_mod, yunet_ort, onnx_sources, mode):
    cv2 = cv2_mod
    names = [o.name for o in yunet_ort.get_outputs()]
    det = cv2.FaceDetectorYN.create(
        str(onnx_sources / "face_detection_yunet_2023mar.onnx"), "", (640, 640), 0.6, 0.3, 5000
    )
    worst_iou, worst_lm, worst_sc, total = 1.0, 0.0, 0.0, 0
    for name in DEMO_FILES:
        rgb = cv2.imread(str(DEMO / name))[:, :, ::-1]
        x, plan = _yunet_input(rgb, (640, 640), mode, layout="NCHW")
        out = dict(zip(names, yunet_ort.run(None, {yunet_ort.get_inputs()[0].name: x})))
        ours = decode_yunet(out, (640, 640))
        canvas_bgr = np.ascontiguousarray(x[0].transpose(1, 2, 0).astype(np.uint8))
        _, ref = det.detect(canvas_bgr)
        assert ref is not None and len(ours) == len(ref), name
        ious, lm, sc = _match(ours, ref)
        worst_iou, worst_lm, worst_sc = min(worst_iou, ious.min()), max(worst_lm, lm.max()), max(worst_sc, sc.max())
        total += len(ref)
        # Mapped back to the photo, the faces are where OpenCV's are, scaled.
        mapped = decode_yunet(out, (640, 640), plan=plan)
        ref_b, ref_l = plan.to_original(np.c_[ref[:, :2], ref[:, :2] + ref[:, 2:4]], ref[:, 4:14].reshape(-1, 5, 2))
        assert iou(mapped.boxes, ref_b).max(axis=0).min() >= 0.99
    # Measured (OpenCV 4.14, onnxruntime 1.32): IoU >= 0.999997, landmarks < 1e-4 px,
    # scores < 1e-6 — i.e. the same numbers up to float32 rounding.
    assert total >= 6
    assert worst_iou >= 0.99
    assert worst_lm < 1.0
    assert worst_sc < 1e-4


def test_decode_matches_facedetectoryn_padded_native_sizes(cv2_mod, onnx_sources):
    """Other input sizes (as TFLite builds may have), padded exactly like FaceDetectorYN."""
    cv2 = cv2_mod
    model = str(onnx_sources / "face_detection_yunet_2023mar.onnx")
    net = cv2.dnn.readNet(model)
    eileen = cv2.imread(str(DEMO / "Eileen_Collins.png"))
    iss = cv2.imread(str(DEMO / "Morgan_and_Hague_ISS.jpg"))
    cases = {
        "eileen 512x512": eileen,
        "eileen crop 500x470": eileen[:500, :470],
        "andrew 1132x770": cv2.imread(str(DEMO / "Andrew_Morgan.jpg")),
        "iss 928x1392": cv2.resize(iss, (1392, 928), interpolation=cv2.INTER_AREA),
    }
    for label, bgr in cases.items():
        h, w = bgr.shape[:2]
        in_hw = padded_input_hw((h, w))
        x, plan = _yunet_input(np.ascontiguousarray(bgr[:, :, ::-1]), in_hw, "pad", layout="NCHW")
        net.setInput(x)
        out = dict(zip(YUNET_OUTPUT_NAMES, net.forward(list(YUNET_OUTPUT_NAMES))))
        ours = decode_yunet(out, in_hw, plan=plan)
        det = cv2.FaceDetectorYN.create(model, "", (w, h), 0.6, 0.3, 5000)
        _, ref = det.detect(bgr)
        assert ref is not None and len(ours) == len(ref), label
        ious, lm, sc = _match(ours, ref)
        assert ious.min() >= 0.99, label
        assert lm.max() < 1.0, label
        assert sc.max() < 1e-4, label


def test_iss_faces_survive_640_letterbox(cv2_mod, yunet_ort):
    """The 5568x3712 ISS photo at a 640 input: both ~200 px faces become ~22 px, above the ~10 px floor."""
    cv2 = cv2_mod
    rgb = cv2.imread(str(DEMO / "Morgan_and_Hague_ISS.jpg"))[:, :, ::-1]
    x, plan = _yunet_input(rgb, (640, 640), layout="NCHW")
    names = [o.name for o in yunet_ort.get_outputs()]
    out = dict(zip(names, yunet_ort.run(None, {yunet_ort.get_inputs()[0].name: x})))
    in_input = decode_yunet(out, (640, 640))
    assert len(in_input) == 2
    assert min(f.width for f in in_input) > 2 * MIN_FACE_AT_INPUT
    faces = decode_yunet(out, (640, 640), plan=plan)
    assert all(150 < f.width < 260 for f in faces)
    # Morgan is on the left, Hague on the right; both in the upper-middle of the frame.
    xs = sorted(f.center[0] for f in faces)
    assert 2300 < xs[0] < 2800 and 3200 < xs[1] < 3700
