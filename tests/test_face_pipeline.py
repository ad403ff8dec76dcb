"""Golden tier: the real zoo models (built from the pinned YuNet/SFace ONNX files) on
the shared face images, with parity against OpenCV's FaceDetectorYN /
FaceRecognizerSF on the same ONNX weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite.face import (FaceDetector, FaceEmbedder, FaceGallery, FaceRecognizer, FaceRecognizerOptions,
                           align_face, iou)
from edgelite.face.geometry import plan_resize
from edgelite.face.pairs import image_path

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "faces" / "demo"
PHOTOS = sorted(p for p in DEMO.iterdir() if p.suffix.lower() in (".jpg", ".png"))


@pytest.fixture(scope="module")
def detectors(zoo_models):
    return {p: FaceDetector.from_zoo(p) for p in ("int8", "float32")}


@pytest.fixture(scope="module")
def embedders(zoo_models):
    return {p: FaceEmbedder.from_zoo(p) for p in ("int8", "float32")}


@pytest.fixture(scope="module")
def cv_models(onnx_sources):
    det = cv2.FaceDetectorYN.create(str(onnx_sources / "face_detection_yunet_2023mar.onnx"), "", (320, 320),
                                    0.6, 0.3, 5000)
    rec = cv2.FaceRecognizerSF.create(str(onnx_sources / "face_recognition_sface_2021dec.onnx"), "")
    return det, rec


def _cv_detect(cv_det, img_rgb, size):
    """OpenCV on the same letterboxed input our detector builds, mapped back to the photo."""
    plan = plan_resize(img_rgb.shape[:2], (size, size), "letterbox")
    canvas = plan.apply(img_rgb, pad_value=0)
    cv_det.setInputSize((size, size))
    _, rows = cv_det.detect(np.ascontiguousarray(canvas[:, :, ::-1]))
    rows = np.zeros((0, 15), np.float32) if rows is None else rows
    boxes = rows[:, :4].copy()
    boxes[:, 2:] += boxes[:, :2]
    lms = rows[:, 4:14].reshape(-1, 5, 2)
    b, l = plan.to_original(boxes, lms)
    return b, l, rows


@pytest.mark.parametrize("precision,min_iou", [("float32", 0.9), ("int8", 0.8)])
def test_detector_parity_with_opencv(detectors, cv_models, precision, min_iou):
    det = detectors[precision]
    worst, n = 1.0, 0
    for p in PHOTOS:
        img = edgelite.load_image(p)
        size = det.choose_size(img.shape[:2])
        ours = det.detect(img)
        ref_boxes, _, _ = _cv_detect(cv_models[0], img, size)
        assert len(ref_boxes) >= 1, p.name
        assert len(ours) == len(ref_boxes), (p.name, len(ours), len(ref_boxes))
        m = iou(ref_boxes, ours.boxes)
        best = m.max(axis=1)
        worst = min(worst, float(best.min()))
        n += len(best)
    assert n >= 6
    assert worst >= min_iou, f"{precision}: worst IoU vs cv2.FaceDetectorYN {worst:.3f} < {min_iou}"


def test_detector_any_size_and_large_photo(detectors):
    det = detectors["int8"]
    img = edgelite.load_image(DEMO / "Morgan_and_Hague_ISS.jpg")
    assert img.shape[:2] == (3712, 5568)
    assert det.choose_size(img.shape[:2]) == 640     # small faces in a big photo: larger input
    res = det.detect(img)
    assert len(res) == 2
    xs = sorted(float(f.box[0]) for f in res)
    assert xs[0] > 1000 and xs[1] < 5568            # in original pixels, not input pixels
    for f in res:
        assert 100 < f.width < 600 and f.landmarks.shape == (5, 2)
        # landmarks inside their box; right eye (subject's) left of left eye in the photo
        assert np.all(f.landmarks[:, 0] > f.box[0]) and np.all(f.landmarks[:, 0] < f.box[2])
        assert f.landmarks[0, 0] < f.landmarks[1, 0]
    small = img[::8, ::8].copy()   # 696x464: auto picks 320
    assert det.choose_size(small.shape[:2]) == 320
    assert len(det.detect(small)) == 2
    grey = cv2.cvtColor(edgelite.load_image(DEMO / "Andrew_Morgan.jpg"), cv2.COLOR_RGB2GRAY)
    assert len(det.detect(grey)) == 1                 # HxW grey is accepted
    assert len(det.detect(np.zeros((480, 640, 3), np.uint8))) == 0


def test_alignment_matches_opencv_aligncrop(detectors, cv_models):
    _, rec = cv_models
    worst = 0
    for p in PHOTOS:
        img = edgelite.load_image(p)
        for f in detectors["float32"].detect(img):
            ours = align_face(img, f.landmarks)
            ref = rec.alignCrop(np.ascontiguousarray(img[:, :, ::-1]), f.to_yunet_row())[:, :, ::-1]
            worst = max(worst, int(np.abs(ours.astype(int) - ref.astype(int)).max()))
    # same estimator (float32 steps as OpenCV) and the same warp: identical crops
    assert worst <= 1, worst


def test_embedder_int8_vs_opencv_fp32(detectors, embedders, cv_models):
    """Mean cosine of our int8 embeddings vs OpenCV's fp32 features on the same crops >= 0.97."""
    _, rec = cv_models
    crops = []
    for s in range(21, 41, 2):            # ORL subjects not used for calibration
        for i in (1, 5, 9):
            img = edgelite.load_image(ROOT / "data/faces/orl" / f"s{s}" / f"{i}.pgm")
            img = np.pad(img, ((56, 56), (46, 46), (0, 0)))
            f = detectors["float32"].detect(img).largest()
            assert f is not None
            crops.append(align_face(img, f.landmarks))
    for p in PHOTOS:
        img = edgelite.load_image(p)
        crops += [align_face(img, f.landmarks) for f in detectors["float32"].detect(img)]
    crops = np.stack(crops)
    ref = np.stack([rec.feature(np.ascontiguousarray(c[:, :, ::-1]))[0] for c in crops])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    for precision, bound in (("float32", 0.999), ("int8", 0.97)):
        e = embedders[precision].embed(crops)
        assert e.shape == (len(crops), 128) and e.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
        cos = (e * ref).sum(1)
        print(f"{precision}: cosine vs OpenCV fp32 mean {cos.mean():.4f} min {cos.min():.4f} n={len(cos)}")
        assert cos.mean() >= bound, (precision, cos.mean(), cos.min())


def test_int8_embedder_small_and_fully_integer(zoo_models):
    from edgelite.inspect import inspect_model
    p = edgelite.zoo.model_path("sface", "int8")
    assert p.stat().st_size <= 10 * 1000 * 1000
    r = inspect_model(p)
    assert r.fully_integer and not r.xnnpack_unsupported
    ops = edgelite.read_model_info(p).op_histogram()
    assert "PRELU" not in ops and "TRANSPOSE" not in ops and ops["CONV_2D"] >= 10


def test_gallery_identify_orl_and_reject_unknown(tmp_path, detectors, embedders):
    det, emb = detectors["int8"], embedders["int8"]

    def embed(s, i):
        img = edgelite.load_image(ROOT / "data/faces/orl" / f"s{s}" / f"{i}.pgm")
        img = np.pad(img, ((56, 56), (46, 46), (0, 0)))
        return emb.embed_faces(img, [det.detect(img).largest()])[0]

    known = range(21, 31)
    with FaceGallery(tmp_path / "g.sqlite") as g:
        for s in known:
            g.enroll(f"s{s}", np.stack([embed(s, i) for i in (1, 2, 3)]), model_id=emb.model_id)
        correct = total = 0
        for s in known:
            for i in (6, 8, 10):
                m = g.identify(embed(s, i), model_id=emb.model_id)[0]
                total += 1
                correct += m.name == f"s{s}"
        assert correct / total >= 0.9, (correct, total)
        wrong_known = 0
        for s in range(31, 41):            # never enrolled
            for i in (1, 6):
                m = g.identify(embed(s, i), model_id=emb.model_id)[0]
                wrong_known += m.is_known
        assert wrong_known <= 1
        with pytest.raises(edgelite.ModelMismatchError):
            g.identify(embed(21, 4), model_id="another-model:0123")
        with pytest.raises(edgelite.ModelMismatchError):
            g.enroll("x", embed(21, 4)[None], model_id=embedders["float32"].model_id)


def test_recognizer_stages_and_video_tracking(tmp_path, zoo_models):
    portrait = edgelite.load_image(DEMO / "Andrew_Morgan.jpg")
    with FaceRecognizer(tmp_path / "g.sqlite", FaceRecognizerOptions(video=True, reembed_every=3)) as rec:
        e = rec.embedder.embed_faces(portrait, [rec.detector.detect(portrait).largest()])
        rec.gallery.enroll("Andrew Morgan", e, model_id=rec.embedder.model_id)
        frame = cv2.resize(portrait, (480, 704))
        results = [rec.recognize(frame) for _ in range(5)]
    assert all(len(r) == 1 and r.faces[0].name == "Andrew Morgan" for r in results)
    assert [r.faces[0].reused for r in results] == [False, True, True, True, False]
    assert len({r.faces[0].track_id for r in results}) == 1
    for k in ("detect", "align", "embed", "match", "total"):
        assert results[0].timings[k] >= 0
    # a reused track answers with the embedding it already has (no new embedding was made)
    assert results[1].faces[0].embedding is results[0].faces[0].embedding
    json.dumps(results[0].to_dict())


@pytest.mark.parametrize("kind", ["not_image", "empty", "truncated"])
def test_bad_image_files_are_typed_errors(tmp_path, kind):
    p = tmp_path / f"{kind}.jpg"
    data = (DEMO / "Andrew_Morgan.jpg").read_bytes()
    p.write_bytes({"not_image": b"this is text, not a JPEG", "empty": b"", "truncated": data[:len(data) // 3]}[kind])
    with pytest.raises(edgelite.ImageError):
        edgelite.load_image(p)


def test_grey_rgba_16bit_and_huge_images(tmp_path, detectors):
    img = edgelite.load_image(DEMO / "Nick_Hague.jpg")
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "grey.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257)
    for name in ("grey.png", "rgba.png", "deep.png"):
        x = edgelite.load_image(tmp_path / name)
        assert x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3, name
        assert len(detectors["int8"].detect(x)) == 1, name
    big = tmp_path / "huge.png"
    cv2.imwrite(str(big), np.zeros((12000, 9000), np.uint8))  # 108 MP > default 100 MP cap
    with pytest.raises(edgelite.ImageError, match="max_pixels|MP|pixels"):
        edgelite.load_image(big)
    with pytest.raises(edgelite.ImageError):
        detectors["int8"].detect(np.zeros((10, 10, 3), np.float32))


def test_cli_enroll_identify_verify_eval_pairs(tmp_path, zoo_models, orl_lfw):
    env = dict(os.environ)
    cli = [sys.executable, "-m", "edgelite.cli"]
    db = str(tmp_path / "g.sqlite")

    def run(*args):
        r = subprocess.run(cli + list(args), capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    run("enroll", "Andrew Morgan", str(DEMO / "Andrew_Morgan.jpg"), "--db", db)
    run("enroll", "Nick Hague", str(DEMO / "Nick_Hague.jpg"), "--db", db)
    out = json.loads(run("identify", str(DEMO / "Morgan_and_Hague_ISS.jpg"), "--db", db, "--json"))
    faces = sorted(out[0]["faces"], key=lambda f: f["box"][0])
    assert [f["name"] for f in faces] == ["Andrew Morgan", "Nick Hague"]
    v = json.loads(run("verify", str(DEMO / "Andrew_Morgan.jpg"), str(DEMO / "Andrew_Morgan_ISS.jpg"), "--json"))
    assert v["same_person"] is True
    v = json.loads(run("verify", str(DEMO / "Andrew_Morgan.jpg"), str(DEMO / "Nick_Hague.jpg"), "--json"))
    assert v["same_person"] is False
    root, pairs = orl_lfw
    # one image of a pair without a face: counted and scored as a mismatch, not dropped
    blank = image_path(root, "s21", 1)
    cv2.imwrite(str(blank), np.zeros((224, 184, 3), np.uint8))
    res = json.loads(run("eval-pairs", "--pairs", str(pairs), "--root", str(root), "--json"))
    assert set(res) >= {"accuracy", "std", "pairs", "failed_detections", "threshold"}
    assert res["pairs"] == 600 and res["failed_detections"] == 1
    assert res["accuracy"] >= 0.95
    models = json.loads(run("models", "list", "--json"))
    assert {(m["name"], m["precision"]) for m in models} >= {("sface", "int8"), ("yunet_320", "int8")}
    assert all(len(m["sha256"]) == 64 for m in models)


def test_demo_names_the_astronauts(tmp_path, zoo_models):
    r = subprocess.run([sys.executable, str(ROOT / "demos" / "recognize_astronauts.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("Morgan_and_Hague_ISS.jpg"))
    names = [ln.split("score")[0].strip() for ln in lines[i + 1:i + 3]]
    assert names == ["Andrew Morgan", "Nick Hague"]          # left to right, as in the photo
    j = next(k for k, ln in enumerate(lines) if ln.startswith("Andrew_Morgan_ISS.jpg"))
    assert lines[j + 1].split("score")[0].strip() in ("Andrew Morgan", "unknown")
    assert "Nick Hague" not in lines[j + 1]
    assert (tmp_path / "Morgan_and_Hague_ISS_annotated.jpg").is_file()
