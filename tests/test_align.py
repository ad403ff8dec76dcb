"""Alignment: the similarity estimator, the warp, and parity with OpenCV's alignCrop."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgelite.errors import InputError
from edgelite.face.align import (
    ARCFACE_TEMPLATE_112,
    align_face,
    align_faces,
    arcface_template,
    arcface_transform,
    estimate_similarity,
    warp_affine,
)
from edgelite.face.types import Face

DEMO = Path(__file__).resolve().parents[1] / "data" / "faces" / "demo"
DEMO_FILES = ["Andrew_Morgan.jpg", "Nick_Hague.jpg", "Morgan_and_Hague_ISS.jpg", "Andrew_Morgan_ISS.jpg", "Eileen_Collins.png"]


def _similarity(scale, angle, tx, ty):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


# ----------------------------------------------------------------------------- estimator


@pytest.mark.parametrize("compat", [False, True])
def test_estimate_recovers_exact_similarity(compat):
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = _similarity(rng.uniform(0.2, 5), rng.uniform(-np.pi, np.pi), *rng.uniform(-300, 300, 2))
        src = rng.uniform(0, 500, size=(5, 2))
        est = estimate_similarity(src, _apply(m, src), opencv_compat=compat)
        assert est.shape == (2, 3) and est.dtype == np.float64
        # float32 intermediates in compat mode cost ~1e-4 relative precision.
        np.testing.assert_allclose(est, m, rtol=0, atol=1e-2 if compat else 1e-9)


def test_estimate_is_least_squares_under_noise():
    rng = np.random.default_rng(1)
    m = _similarity(0.5, 0.3, 10, 20)
    src = rng.uniform(0, 200, size=(5, 2))
    dst = _apply(m, src) + rng.normal(0, 0.5, size=(5, 2))
    est = estimate_similarity(src, dst)
    resid = np.sum((_apply(est, src) - dst) ** 2)
    # Perturbing the optimum in any direction can only increase the residual.
    for _ in range(50):
        p = est + rng.normal(0, 1e-3, size=(2, 3)) * [[1, 1, 10], [1, 1, 10]]
        p[1, 1], p[1, 0] = p[0, 0], -p[0, 1]  # stay a similarity
        assert np.sum((_apply(p, src) - dst) ** 2) >= resid - 1e-9


def test_reflection_is_never_returned():
    # Mirrored landmarks (e.g. a mirrored selfie) would be fitted best by a
    # reflection; a similarity must still be a proper rotation.
    src = ARCFACE_TEMPLATE_112.copy()
    mirrored = src * [-1, 1] + [112, 0]
    est = estimate_similarity(src, mirrored)
    assert np.linalg.det(est[:, :2]) > 0


def test_collinear_points_rank_one():
    src = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], dtype=np.float64)
    m = _similarity(2.0, 0.7, 5, -3)
    est = estimate_similarity(src, _apply(m, src))
    np.testing.assert_allclose(_apply(est, src), _apply(m, src), atol=1e-9)
    assert np.linalg.det(est[:, :2]) > 0


@pytest.mark.parametrize(
    "src,dst",
    [
        (np.ones((5, 2)), ARCFACE_TEMPLATE_112),  # all points equal
        (np.zeros((4, 2)), ARCFACE_TEMPLATE_112),  # count mismatch
        (np.full((5, 2), np.nan), ARCFACE_TEMPLATE_112),
        (np.zeros((1, 2)), np.zeros((1, 2))),
    ],
)
def test_estimate_rejects_bad_points(src, dst):
    with pytest.raises(InputError):
        estimate_similarity(src, dst)


def test_template_maps_to_itself_and_scales():
    np.testing.assert_allclose(arcface_transform(ARCFACE_TEMPLATE_112, opencv_compat=False), np.eye(2, 3), atol=1e-12)
    np.testing.assert_allclose(arcface_template(224), ARCFACE_TEMPLATE_112 * 2)
    with pytest.raises(InputError):
        arcface_template(8)
    with pytest.raises(InputError):
        arcface_transform(np.zeros((4, 2)))


# ----------------------------------------------------------------------------- warp


def test_warp_numpy_matches_cv2_on_random_transforms():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, size=(120, 100, 3), dtype=np.uint8)
    worst = 0
    for _ in range(60):
        m = _similarity(rng.uniform(0.3, 3), rng.uniform(-np.pi, np.pi), *rng.uniform(-80, 80, 2))
        a = warp_affine(noise, m, (112, 112), use_cv2=True)
        b = warp_affine(noise, m, (112, 112), use_cv2=False)
        worst = max(worst, int(np.abs(a.astype(np.int16) - b).max()))
    # Measured: 0 (bit-identical) over 400 random warps of noise and photos, borders
    # included, because the fallback reproduces OpenCV's fixed-point positions.
    # Allow 1 level for other OpenCV builds' rounding.
    assert worst <= 1


def test_warp_identity_and_border_and_grey():
    img = np.arange(48, dtype=np.uint8).reshape(6, 8)
    out = warp_affine(img, np.eye(2, 3), (6, 8), use_cv2=False)
    np.testing.assert_array_equal(out, img)
    shifted = warp_affine(img, [[1, 0, 2], [0, 1, 0]], (6, 8), use_cv2=False)
    assert np.all(shifted[:, :2] == 0)  # constant-0 border
    np.testing.assert_array_equal(shifted[:, 2:], img[:, :6])
    with pytest.raises(InputError):
        warp_affine(img.astype(np.float32), np.eye(2, 3), (6, 8))
    with pytest.raises(InputError):
        warp_affine(img, np.zeros((2, 3)), (6, 8), use_cv2=False)  # singular
    with pytest.raises(InputError):
        warp_affine(img, np.eye(3), (6, 8))


def test_align_face_shapes():
    img = np.zeros((200, 200, 3), dtype=np.uint8)
    lm = ARCFACE_TEMPLATE_112 + 40
    assert align_face(img, lm).shape == (112, 112, 3)
    assert align_face(img, lm, 128, use_cv2=False).shape == (128, 128, 3)
    assert align_faces(img, np.stack([lm, lm])).shape == (2, 112, 112, 3)
    assert align_faces(img, np.zeros((0, 5, 2))).shape == (0, 112, 112, 3)
    with pytest.raises(InputError):
        align_face(img[:, :, 0], lm)


# ----------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def opencv_faces(onnx_sources):
    """(rgb image, YuNet 15-float row, alignCrop result in RGB) for every demo face."""
    cv2 = pytest.importorskip("cv2")
    det = cv2.FaceDetectorYN.create(
        str(onnx_sources / "face_detection_yunet_2023mar.onnx"), "", (320, 320), 0.6, 0.3, 5000
    )
    rec = cv2.FaceRecognizerSF.create(str(onnx_sources / "face_recognition_sface_2021dec.onnx"), "")
    items = []
    for name in DEMO_FILES:
        bgr = cv2.imread(str(DEMO / name))
        s = min(1.0, 1280 / max(bgr.shape[:2]))  # keep detection cheap on 2 cores
        bgr = cv2.resize(bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        crops = {"full": bgr}
        # Cut the image through the first face so the aligned crop runs off the border.
        det.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = det.detect(bgr)
        assert rows is not None, name
        x_cut = int(rows[0, 0] + rows[0, 2] * 0.6)
        crops["cut"] = np.ascontiguousarray(bgr[:, :x_cut])
        for kind, img in crops.items():
            det.setInputSize((img.shape[1], img.shape[0]))
            _, rows = det.detect(img)
            if rows is None:
                continue
            for row in rows:
                ref = rec.alignCrop(img, row)
                items.append((f"{name}/{kind}", np.ascontiguousarray(img[:, :, ::-1]), row, ref[:, :, ::-1]))
    assert len(items) >= 6
    return items


def test_align_matches_opencv_aligncrop(opencv_faces):
    worst_compat, worst_exact = 0, 0
    for label, rgb, row, ref in opencv_faces:
        face = Face.from_yunet_row(row)
        ours = align_face(rgb, face.landmarks)  # opencv_compat=True, cv2 warp
        d = np.abs(ours.astype(np.int16) - ref)
        worst_compat = max(worst_compat, int(d.max()))
        exact = align_face(rgb, face.landmarks, opencv_compat=False)
        worst_exact = max(worst_exact, int(np.abs(exact.astype(np.int16) - ref).max()))
    # Measured (OpenCV 4.14): compat mode is bit-identical (0) on every face,
    # including crops running off the border. The exact float64 estimate differs in
    # the matrix by ~1e-4 px; where that flips a sample position across a 1/32 px
    # step on a hard edge (e.g. image content vs the black border) a pixel changes
    # by up to ~255/32 = 8 levels (measured 7).
    assert worst_compat <= 1
    assert worst_exact <= 8


def test_align_numpy_fallback_matches_opencv_aligncrop(opencv_faces):
    worst, frac = 0, 0.0
    for label, rgb, row, ref in opencv_faces:
        ours = align_face(rgb, Face.from_yunet_row(row).landmarks, use_cv2=False)
        d = np.abs(ours.astype(np.int16) - ref)
        worst = max(worst, int(d.max()))
        frac = max(frac, float((d > 0).mean()))
    # Measured: 0 (bit-identical to alignCrop without OpenCV).
    assert worst <= 1
    assert frac < 0.001
