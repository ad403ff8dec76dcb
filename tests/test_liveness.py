"""Issue 11, liveness: the optional int8 MiniFASNet models and face_unlock --liveness.

There are no licensed spoof samples in this project, so these tests check what can
be checked: the crop rule, int8 agreement with the ONNX reference (onnxruntime) on
real faces, and that --liveness gates the unlock count. See docs/face.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgelite
from edgelite import zoo
from edgelite.errors import InputError
from edgelite.face.liveness import LIVENESS_MODELS, FaceLivenessChecker, liveness_box, liveness_crop

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "faces" / "demo"


@pytest.fixture(scope="module")
def liveness_models(zoo_models):
    missing = [n for n in zoo.OPTIONAL_MODELS for p in zoo.PRECISIONS
               if not zoo.sha256_sidecar(zoo.model_path(n, p)).is_file()]
    if missing:
        from edgelite_convert.zoo import build_zoo

        build_zoo(names=("minifasnet",), progress=False)
    return zoo.models_dir()


def test_liveness_box_scales_caps_and_shifts():
    # centred face, room to scale: 2.7x about the centre
    assert liveness_box((1000, 1000), (450, 450, 550, 550), 2.7) == (365, 365, 635, 635)
    # near the left/top edge: shifted inside, size kept
    x0, y0, x1, y1 = liveness_box((1000, 1000), (0, 0, 100, 100), 4.0)
    assert (x0, y0) == (0, 0) and (x1, y1) == (400, 400)
    # too big for the image: the scale is capped so the box fits
    x0, y0, x1, y1 = liveness_box((300, 400), (100, 50, 300, 250), 4.0)
    assert x0 >= 0 and y0 >= 0 and x1 <= 399 and y1 <= 299 and y1 - y0 >= 290
    crop = liveness_crop(np.zeros((300, 400, 3), np.uint8), (100, 50, 300, 250), 2.7)
    assert crop.shape == (80, 80, 3) and crop.dtype == np.uint8


def test_options_are_validated():
    with pytest.raises(InputError):
        FaceLivenessChecker(threshold=1.5)
    with pytest.raises(InputError):
        FaceLivenessChecker(precision="int4")
    with pytest.raises(InputError):
        FaceLivenessChecker(model_paths={"other": "x.tflite"})


def test_int8_agrees_with_onnxruntime_on_real_faces(liveness_models):
    ort = pytest.importorskip("onnxruntime")
    from edgelite.face import FaceDetector
    from edgelite_convert.sources import liveness_sources

    srcs = liveness_sources()
    sess = {n: ort.InferenceSession(str(srcs[n]), providers=["CPUExecutionProvider"]) for n in LIVENESS_MODELS}
    det = FaceDetector.from_zoo()
    live = FaceLivenessChecker.from_zoo()
    assert set(live.models()) == set(LIVENESS_MODELS)
    diffs = []
    for p in sorted(DEMO.glob("*")):
        img = edgelite.load_image(p)
        faces = det.detect(img).faces
        got = live.check(img, faces)
        for f, r in zip(faces, got):
            ref = np.zeros(3)
            for n, scale in LIVENESS_MODELS.items():
                x = liveness_crop(img, f.box, scale)[..., ::-1].astype(np.float32).transpose(2, 0, 1)[None]
                lg = sess[n].run(None, {sess[n].get_inputs()[0].name: x})[0][0].astype(np.float64)
                e = np.exp(lg - lg.max())
                ref += e / e.sum() / len(LIVENESS_MODELS)
            diffs.append(abs(r.score - ref[1]))
            assert r.is_real and ref[1] >= 0.5, (p.name, r, ref)  # all six faces are real photos of people
            assert abs(sum(r.probabilities) - 1.0) < 1e-4
    assert len(diffs) == 6
    assert float(np.mean(diffs)) < 0.06 and max(diffs) < 0.15, diffs
    json.dumps(got[0].to_dict())


def test_face_unlock_liveness_gates_the_count(tmp_path, liveness_models):
    """With --liveness every counted frame must be judged real: an impossible bar means no unlock."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_face_tracker import _write_video, face_frame  # noqa: F401
    finally:
        sys.path.pop(0)
    from edgelite.face import FaceGallery, FaceRecognizer

    db = tmp_path / "g.sqlite"
    with FaceRecognizer(None) as rec:
        img = face_frame("Nick_Hague.jpg")
        with FaceGallery(db) as g:
            g.enroll("Nick", rec.embedder.embed_faces(img, [rec.detector.detect(img).largest()]),
                     model_id=rec.embedder.model_id)
    video = _write_video(tmp_path / "nick.avi", ["Nick_Hague.jpg"] * 8)

    def run(*extra):
        r = subprocess.run([sys.executable, str(ROOT / "demos" / "face_unlock.py"), "--camera", str(video), "--db",
                            str(db), "--headless", "--timeout", "0", "--liveness", *extra], capture_output=True,
                           text=True, timeout=300, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        return r.returncode, [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()], r.stderr

    rc, ev, err = run()
    assert rc == 0 and any(e["event"] == "unlocked" for e in ev), (err[-2000:], ev[-3:])
    frames = [e for e in ev if e["event"] == "frame"]
    assert all("live" in face for f in frames for face in f["faces"] if face["name"])
    rc, ev, err = run("--liveness-threshold", "1.0")
    assert rc == 1 and not any(e["event"] == "unlocked" for e in ev), (err[-2000:], ev[-3:])
