"""Unit tests for edgelite.face.geometry and edgelite.face.types."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgelite.errors import InputError
from edgelite.face.geometry import (
    MIN_FACE_AT_INPUT,
    ResizeMode,
    ResizePlan,
    iou,
    nms,
    plan_resize,
    resize_image,
)
from edgelite.face.types import DetectionResult, Face

DEMO = Path(__file__).resolve().parents[1] / "data" / "faces" / "demo"


# ----------------------------------------------------------------------------- iou


def test_iou_known_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]], dtype=np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=np.float32)
    m = iou(a, b)
    assert m.shape == (2, 3)
    np.testing.assert_allclose(m[0], [1.0, 50 / 150, 0.0])
    np.testing.assert_allclose(m[1], [4 / 100, 0.0, 0.0])


def test_iou_single_boxes_and_degenerate():
    assert iou([0, 0, 4, 4], [2, 2, 6, 6]).shape == (1, 1)
    np.testing.assert_allclose(iou([0, 0, 4, 4], [2, 2, 6, 6])[0, 0], 4 / 28)
    # Two empty boxes: defined as 0, not NaN.
    assert iou([1, 1, 1, 1], [1, 1, 1, 1])[0, 0] == 0.0


def test_iou_matches_loop_on_random_boxes():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, size=(30, 2))
    wh = rng.uniform(1, 40, size=(30, 2))
    boxes = np.c_[xy, xy + wh]
    m = iou(boxes, boxes)
    for i in range(30):
        for j in range(30):
            a, b = boxes[i], boxes[j]
            iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            assert m[i, j] == pytest.approx(inter / union)


@pytest.mark.parametrize("bad", [np.zeros((3, 5)), np.zeros((2, 2, 4)), [[0, 0, np.nan, 1]]])
def test_iou_rejects_bad_shapes(bad):
    with pytest.raises(InputError):
        iou(bad, [[0, 0, 1, 1]])


# ----------------------------------------------------------------------------- nms


def test_nms_keeps_best_and_sorts_by_score():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [51, 50, 61, 60], [100, 0, 110, 10]],
        dtype=np.float32,
    )
    scores = np.array([0.8, 0.9, 0.7, 0.3, 0.95])
    keep = nms(boxes, scores, iou_threshold=0.3)
    assert keep.dtype == np.int64
    assert keep.tolist() == [4, 1, 2]


def test_nms_threshold_is_strictly_greater():
    # IoU exactly 0.5: kept at threshold 0.5 (OpenCV suppresses only IoU > threshold).
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=np.float64)
    assert iou(boxes[0], boxes[1])[0, 0] == 0.5
    assert nms(boxes, [0.9, 0.8], iou_threshold=0.5).tolist() == [0, 1]
    assert nms(boxes, [0.9, 0.8], iou_threshold=0.49).tolist() == [0]


def test_nms_score_threshold_top_k_max_output_and_ties():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(6)], dtype=np.float32)
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.7, 0.6])
    assert nms(boxes, scores).tolist() == [1, 2, 4, 5, 0, 3]  # ties keep input order
    assert nms(boxes, scores, score_threshold=0.6).tolist() == [1, 2, 4, 5]
    assert nms(boxes, scores, top_k=2).tolist() == [1, 2]
    assert nms(boxes, scores, max_output=3).tolist() == [1, 2, 4]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_nms_rejects_bad_arguments():
    with pytest.raises(InputError):
        nms([[0, 0, 1, 1]], [0.5, 0.6])
    with pytest.raises(InputError):
        nms([[0, 0, 1, 1]], [np.nan])
    with pytest.raises(InputError):
        nms([[0, 0, 1, 1]], [0.5], iou_threshold=1.5)
    with pytest.raises(InputError):
        nms([[0, 0, 1, 1]], [0.5], top_k=0)


def test_nms_matches_opencv_nmsboxes():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = 60
        xy = rng.uniform(0, 200, size=(n, 2))
        wh = rng.uniform(5, 60, size=(n, 2))
        boxes = np.c_[xy, xy + wh]
        scores = rng.uniform(0, 1, size=n)
        ours = nms(boxes, scores, iou_threshold=0.3, score_threshold=0.2, top_k=40)
        rects = [tuple(map(float, (x, y, w, h))) for (x, y), (w, h) in zip(xy, wh)]
        ref = cv2.dnn.NMSBoxes(rects, scores.astype(np.float32).tolist(), 0.2, 0.3, top_k=40)
        assert ours.tolist() == np.asarray(ref).reshape(-1).tolist(), f"trial {trial}"


def test_small_and_large_nms_paths_keep_the_same_boxes():
    """Up to 64 candidates NMS runs on Python floats, above on arrays: the same kept
    indices on random sets with ties, duplicates, zero-area and touching boxes."""
    from edgelite.face.geometry import _greedy_nms_arrays, _greedy_nms_floats

    rng = np.random.default_rng(17)
    for trial in range(300):
        n = int(rng.integers(1, 80))
        xy = np.round(rng.uniform(0, 100, size=(n, 2)), int(rng.integers(0, 3)))
        wh = np.round(rng.uniform(0, 40, size=(n, 2)), 1) * (rng.uniform(size=(n, 1)) > 0.05)
        boxes = np.c_[xy, xy + wh]
        if n > 3:
            boxes[1] = boxes[0]  # exact duplicates
        scores = np.round(rng.uniform(0, 1, size=n), int(rng.integers(1, 4)))  # ties
        thr = float(rng.choice([0.0, 0.3, 0.5, 1.0]))
        top_k = [None, 5, 40][trial % 3]
        max_out = [None, 1, 3][(trial // 3) % 3]
        a = _greedy_nms_arrays(boxes, scores, thr, top_k, max_out)
        f = _greedy_nms_floats(boxes.tolist(), scores.tolist(), thr, top_k, max_out)
        assert a.tolist() == f.tolist() and f.dtype == np.int64, trial


# ----------------------------------------------------------------------------- plans


def test_plan_letterbox_large_photo():
    plan = plan_resize((3712, 5568), (640, 640), ResizeMode.LETTERBOX)
    assert plan.content_hw == (427, 640)
    assert plan.offset_xy == (0, 0)
    sx, sy = plan.scale_xy
    assert sx == pytest.approx(640 / 5568)
    assert sy == pytest.approx(427 / 3712)
    boxes = np.array([[100.0, 200.0, 300.0, 420.0]])
    lms = np.array([[[150.0, 250.0], [250.0, 250.0], [200.0, 300.0], [160.0, 380.0], [240.0, 380.0]]])
    ib, il = plan.to_input(boxes, lms)
    ob, ol = plan.to_original(ib, il)
    np.testing.assert_allclose(ob, boxes, atol=1e-3)
    np.testing.assert_allclose(ol, lms, atol=1e-3)


def test_plan_letterbox_center_and_stretch_and_pad():
    c = plan_resize((100, 200), (64, 64), "letterbox", center=True)
    assert c.content_hw == (32, 64) and c.offset_xy == (0, 16)
    b, lm = c.to_original([[0, 16, 64, 48]], [[32, 32]])
    np.testing.assert_allclose(b, [[0, 0, 200, 100]], atol=1e-4)
    np.testing.assert_allclose(lm, [[100, 50]], atol=1e-4)

    s = plan_resize((100, 200), (64, 64), ResizeMode.STRETCH)
    assert s.content_hw == (64, 64) and s.scale_xy == (64 / 200, 64 / 100)
    b, _ = s.to_original([[0, 0, 64, 64]])
    np.testing.assert_allclose(b, [[0, 0, 200, 100]], atol=1e-4)

    p = plan_resize((100, 200), (128, 224), ResizeMode.PAD)
    assert p.content_hw == (100, 200) and p.scale_xy == (1.0, 1.0)
    with pytest.raises(InputError, match="cannot shrink"):
        plan_resize((100, 200), (96, 224), "pad")


def test_plan_clip_and_validation():
    plan = plan_resize((100, 100), (64, 64))
    b, _ = plan.to_original([[-10, -10, 70, 70]], clip=True)
    np.testing.assert_allclose(b, [[0, 0, 100, 100]])
    with pytest.raises(InputError, match="unknown resize mode"):
        plan_resize((10, 10), (32, 32), "squash")
    with pytest.raises(InputError):
        plan_resize((0, 10), (32, 32))
    with pytest.raises(InputError):
        ResizePlan((10, 10), (32, 32), ResizeMode.LETTERBOX, (40, 40))
    with pytest.raises(InputError):
        plan.to_original(np.zeros((2, 3)))


def test_plan_apply_places_content_and_pads_with_zero():
    img = np.full((100, 200, 3), 200, dtype=np.uint8)
    plan = plan_resize(img.shape[:2], (64, 64))
    out = plan.apply(img)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.all(out[:32] == 200) and np.all(out[32:] == 0)
    with pytest.raises(InputError):
        plan.apply(np.zeros((10, 10, 3), np.uint8))


# ----------------------------------------------------------------------------- input size


def test_center_crop_plan_crops_the_middle_and_maps_back():
    p = plan_resize((100, 200), (64, 64), "center_crop")
    assert p.content_hw == (64, 128) and p.offset_xy == (-32, 0)
    img = np.zeros((100, 200), np.uint8)
    img[:, 50:150] = 255  # the middle half is white
    out = p.apply(img)
    assert out.shape == (64, 64) and out.min() == 255
    b, _ = p.to_original([[0, 0, 64, 64]])
    np.testing.assert_allclose(b[0], [50, 0, 150, 100], atol=1e-4)


def test_select_rules_pick_largest_best_or_central_face():
    big = Face(box=[0, 0, 100, 100], landmarks=np.zeros((5, 2)), score=0.7)
    best = Face(box=[300, 0, 340, 40], landmarks=np.zeros((5, 2)), score=0.99)
    mid = Face(box=[180, 130, 220, 170], landmarks=np.zeros((5, 2)), score=0.8)
    det = DetectionResult((best, mid, big), (300, 400))
    assert det.select("largest") is big and det.largest() is big
    assert det.select("score") is best
    assert det.select("center") is mid
    assert DetectionResult((), (10, 10)).select("center") is None
    with pytest.raises(InputError):
        det.select("tallest")


def test_resize_numpy_area_is_exact_block_mean():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    out = resize_image(img, (4, 6), use_cv2=False)
    ref = img.reshape(4, 2, 6, 2, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(out, np.floor(ref + 0.5).astype(np.uint8))


def test_resize_grey_and_identity():
    g = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert resize_image(g, (4, 4), use_cv2=False).shape == (4, 4)
    one = np.zeros((8, 8, 1), np.uint8)
    assert resize_image(one, (16, 16), use_cv2=False).shape == (16, 16, 1)
    same = resize_image(g, (8, 8))
    assert np.array_equal(same, g) and same is not g
    with pytest.raises(InputError):
        resize_image(np.zeros((0, 4, 3), np.uint8), (2, 2))


@pytest.mark.parametrize(
    "name,dst",
    [
        ("Morgan_and_Hague_ISS.jpg", (427, 640)),  # 8.7x area shrink
        ("Andrew_Morgan.jpg", (640, 435)),
        ("Eileen_Collins.png", (640, 640)),  # bilinear enlarge
        ("Eileen_Collins.png", (300, 211)),  # non-integer shrink
    ],
)
def test_resize_numpy_fallback_matches_opencv(name, dst):
    cv2 = pytest.importorskip("cv2")
    img = cv2.imread(str(DEMO / name))[:, :, ::-1]
    a = resize_image(img, dst, use_cv2=True)
    b = resize_image(img, dst, use_cv2=False)
    assert a.shape == b.shape == dst + (3,)
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    # Measured: max 1 level (OpenCV's fixed-point weights vs our float64), on <13% of pixels.
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.15


# ----------------------------------------------------------------------------- types


def test_face_properties_and_json_round_trip():
    f = Face(box=[10, 20, 50, 80], landmarks=np.arange(10).reshape(5, 2), score=0.75)
    assert f.box.dtype == np.float32 and f.landmarks.shape == (5, 2)
    assert (f.width, f.height, f.area, f.center) == (40.0, 60.0, 2400.0, (30.0, 50.0))
    d = f.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Face.from_dict(d) == f
    with pytest.raises(ValueError):
        f.box[0] = 3  # read-only: a frozen Face really is immutable
    row = f.to_yunet_row()
    np.testing.assert_allclose(row[:4], [10, 20, 40, 60])
    assert Face.from_yunet_row(row) == f
    c = Face(box=[-5, -5, 500, 500], landmarks=np.zeros((5, 2)), score=0.5).clipped((100, 200))
    np.testing.assert_array_equal(c.box, [0, 0, 200, 100])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(box=[0, 0, 1], landmarks=np.zeros((5, 2)), score=0.5),
        dict(box=[10, 0, 5, 5], landmarks=np.zeros((5, 2)), score=0.5),
        dict(box=[0, 0, 1, 1], landmarks=np.zeros((4, 2)), score=0.5),
        dict(box=[0, 0, 1, np.inf], landmarks=np.zeros((5, 2)), score=0.5),
        dict(box=[0, 0, 1, 1], landmarks=np.zeros((5, 2)), score=1.5),
        dict(box=[0, 0, 1, 1], landmarks=np.zeros((5, 2)), score="high"),
    ],
)
def test_face_validation(kwargs):
    with pytest.raises(InputError):
        Face(**kwargs)


def test_detection_result_helpers():
    f1 = Face(box=[0, 0, 10, 10], landmarks=np.zeros((5, 2)), score=0.9)
    f2 = Face(box=[0, 0, 30, 30], landmarks=np.zeros((5, 2)), score=0.7)
    r = DetectionResult(faces=[f1, f2], image_hw=(100, 200))
    assert len(r) == 2 and r[0] is f1 and list(r) == [f1, f2]
    assert r.boxes.shape == (2, 4) and r.landmarks.shape == (2, 5, 2)
    np.testing.assert_allclose(r.scores, [0.9, 0.7])
    assert r.largest() is f2
    assert r.to_yunet_rows().shape == (2, 15)
    assert json.loads(json.dumps(r.to_dict()))["image_hw"] == [100, 200]
    empty = DetectionResult(faces=(), image_hw=(1, 1))
    assert empty.boxes.shape == (0, 4) and empty.largest() is None
    with pytest.raises(InputError):
        DetectionResult(faces=[object()], image_hw=(1, 1))
