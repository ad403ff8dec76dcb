"""The demos, run as a user would: subprocesses, headless, on bundled data.

* face_unlock: enrol Andrew Morgan from his portrait, then unlock on a video made
  from the *other* photos (demos/make_demo_video.py); enrol from the "camera"
  (the video); a camera that does not exist; the reconnect logic with a fake
  camera; names reaching --on-unlock only through the environment.
* annotate: a folder with two real photos, a truncated JPEG, a text file named
  .jpg and an empty file, with two worker processes.
* quantize_your_model: the whole tutorial with --quick.

The face demos use the zoo models through the shared ``zoo_models`` fixture
(tests/conftest.py: built once into the test cache if missing); the subprocesses
inherit ``EDGELITE_CACHE_DIR`` from this process, so they use the same models.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from shlex import quote as shlex_quote

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ROOT / "demos"
DEMO_FACES = ROOT / "data" / "faces" / "demo"
MORGAN = "Andrew Morgan"


def run_demo(script: str, *args, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, str(DEMOS / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=e, cwd=ROOT)


def json_lines(stdout: str) -> list[dict]:
    """Every stdout line must be one JSON object (stdout is machine-readable in --headless)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]


def load_demo_module(name: str):
    spec = importlib.util.spec_from_file_location(f"demo_{name}", DEMOS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video") / "demo_video.mp4"
    r = run_demo("make_demo_video.py", "--out", out, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "640x480" in r.stdout
    import cv2
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640 and int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 480
    cap.release()
    return out


@pytest.fixture(scope="module")
def morgan_db(tmp_path_factory, zoo_models) -> Path:
    """A gallery with Andrew Morgan enrolled from his portrait (the file, not the camera)."""
    db = tmp_path_factory.mktemp("gallery") / "unlock.sqlite"
    r = run_demo("face_unlock.py", "--enroll", MORGAN, "--images", DEMO_FACES / "Andrew_Morgan.jpg",
                 "--db", db, "--headless")
    assert r.returncode == 0, r.stderr
    ev = json_lines(r.stdout)
    assert [e["event"] for e in ev] == ["enroll_image", "enrolled"]
    assert ev[0]["faces"] == 1 and ev[0]["width"] > 300
    assert ev[1]["name"] == MORGAN and ev[1]["templates"] == 1
    return db


# ------------------------------------------------------------------------------ face_unlock


def test_face_unlock_on_video(demo_video, morgan_db, tmp_path):
    marker = tmp_path / "unlocked_name.txt"
    # The --on-unlock command gets the name from the environment, never from its argv.
    hook = (f"{shlex_quote(sys.executable)} -c \"import os,sys; print('hello from the hook'); "
            f"open(sys.argv[1],'w').write(os.environ['EDGELITE_UNLOCK_NAME'])\" {shlex_quote(str(marker))}")
    r = run_demo("face_unlock.py", "--camera", demo_video, "--db", morgan_db, "--headless", "--timeout", 240,
                 "--on-unlock", hook)
    ev = json_lines(r.stdout)
    assert r.returncode == 0, (r.stderr, ev[-3:])
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "start" and ev[0]["people"] == 1 and ev[0]["camera"] == "file"
    frames = [e for e in ev if e["event"] == "frame"]
    assert frames and kinds.index("unlocked") == len(kinds) - 2 and kinds[-1] == "on_unlock"
    unlocked = ev[kinds.index("unlocked")]
    assert unlocked["name"] == MORGAN and unlocked["consecutive"] == 5
    assert ev[-1]["returncode"] == 0 and marker.read_text() == MORGAN
    assert "hello from the hook" in r.stderr  # the hook's stdout must not break the JSON stream
    for f in frames:
        assert set(f) >= {"frame", "t", "fps", "faces", "timings_ms", "streaks"}
        assert set(f["timings_ms"]) >= {"capture", "detect", "align", "embed", "match", "total"}
        for face in f["faces"]:
            # Collins and Hague appear first: nobody but Morgan may ever be named.
            assert face["name"] in (None, MORGAN), f
            assert len(face["box"]) == 4 and -1.0 <= face["score"] <= 1.0
    # the unknown portraits come first in the video: faces were seen, unnamed, before the unlock
    assert any(face["name"] is None for f in frames for face in f["faces"])
    # K consecutive frames with Morgan named right before the unlock
    last = frames[-5:]
    assert all(any(face["name"] == MORGAN for face in f["faces"]) for f in last)
    assert [f["frame"] for f in last] == list(range(last[0]["frame"], last[0]["frame"] + 5))


def test_face_unlock_keep_running_then_end_of_video_and_timeout(demo_video, morgan_db):
    # service mode: unlock, keep watching, unlock again; the file's end is exit 1
    r = run_demo("face_unlock.py", "--camera", demo_video, "--db", morgan_db, "--headless", "--keep-running",
                 "--cooldown", 0, "--timeout", 0, "--log-every", 10)
    ev = json_lines(r.stdout)
    assert r.returncode == 1, r.stderr
    unlocks = [e for e in ev if e["event"] == "unlocked"]
    assert len(unlocks) >= 2 and {e["name"] for e in unlocks} == {MORGAN}
    assert ev[-1]["event"] == "end_of_stream" and ev[-1]["frames"] == 138
    assert all(e["frame"] % 10 == 0 for e in ev if e["event"] == "frame")
    # a timeout shorter than the video: exit 1 with a timeout event, never an unlock
    r = run_demo("face_unlock.py", "--camera", demo_video, "--db", morgan_db, "--headless", "--timeout", 0.05)
    ev = json_lines(r.stdout)
    assert r.returncode == 1 and ev[-1]["event"] == "timeout"
    assert not any(e["event"] == "unlocked" for e in ev)


def test_face_unlock_enrol_from_camera(demo_video, zoo_models, tmp_path):
    """The video plays the camera: Eileen Collins is the first face in it."""
    db = tmp_path / "cam.sqlite"
    r = run_demo("face_unlock.py", "--enroll", "Eileen Collins", "--camera", demo_video, "--db", db, "--headless",
                 "--enroll-frames", 3, "--enroll-interval", 0.3)
    ev = json_lines(r.stdout)
    assert r.returncode == 0, (r.stderr, ev)
    caps = [e for e in ev if e["event"] == "enroll_capture"]
    assert len(caps) == 3
    assert all(c["width"] >= 100 and c["sharpness"] >= 60 and abs(c["yaw"]) <= 0.2 for c in caps)
    assert caps[1]["frame"] - caps[0]["frame"] >= 4  # 0.3 s apart at 15 fps
    assert any(e["event"] == "enroll_reject" and e["reason"] == "no face" for e in ev)  # the empty opening shot
    assert ev[-1]["event"] == "enrolled" and ev[-1]["templates"] == 3
    lst = run_demo("face_unlock.py", "--list", "--db", db)
    assert lst.returncode == 0 and lst.stdout.startswith("Eileen Collins\t3 template(s)")


def test_face_unlock_missing_video_file(tmp_path):
    r = run_demo("face_unlock.py", "--camera", tmp_path / "nope.mp4", "--db", tmp_path / "g.sqlite", "--headless")
    assert r.returncode == 2
    (ev,) = json_lines(r.stdout)
    assert ev["event"] == "error" and ev["type"] == "CameraError" and "does not exist" in ev["message"]
    assert "error: video file" in r.stderr


def test_face_unlock_missing_camera_device(morgan_db):
    r = run_demo("face_unlock.py", "--camera", "/dev/video-edgelite-missing", "--db", morgan_db, "--headless",
                 "--retries", 2, "--retry-delay", 0.05)
    assert r.returncode == 2, r.stderr
    ev = json_lines(r.stdout)[-1]
    assert ev["event"] == "error" and "gave up after 3 attempts" in ev["message"]
    assert "retrying in" in r.stderr and "does not exist" in r.stderr


def test_face_unlock_no_gallery(tmp_path):
    r = run_demo("face_unlock.py", "--camera", "0", "--db", tmp_path / "none.sqlite")
    assert r.returncode == 2 and "does not exist; enrol someone first" in r.stderr


class _FakeReader:
    """A camera delivering a script of frames; ``None`` entries are empty reads."""

    def __init__(self, script):
        self.script = list(script)

    def read(self):
        if not self.script:
            return False, None
        f = self.script.pop(0)
        return (f is not None), f

    def release(self):
        pass


def test_camera_reconnects_after_empty_frames():
    fu = load_demo_module("face_unlock")
    frame = np.zeros((4, 4, 3), np.uint8)
    opens = []

    def opener(cam):
        opens.append(1)
        if len(opens) == 1:
            return _FakeReader([frame, frame])          # then empty forever: unplugged
        if len(opens) == 2:
            raise fu.CameraError("device busy")          # first reopen fails
        return _FakeReader([frame + 1] * 3)             # back again

    logs = []
    cam = fu.Camera("0", opener=opener, retries=3, retry_delay=0.0, max_empty=4, log=logs.append)
    with cam:
        got = [cam.read()[0] for _ in range(5)]
    assert [int(g[0, 0, 0]) for g in got] == [0, 0, 1, 1, 1]
    assert cam.reconnects == 1 and len(opens) == 3
    assert any("4 empty frames in a row" in m for m in logs) and any("device busy" in m for m in logs)


def test_camera_gives_up_with_clear_error():
    fu = load_demo_module("face_unlock")

    def opener(cam):
        if opener.n == 0:
            opener.n += 1
            return _FakeReader([])
        raise fu.CameraError("no such device")
    opener.n = 0
    cam = fu.Camera("/dev/video7", opener=opener, retries=2, retry_delay=0.0, max_empty=3)
    cam.open()
    with pytest.raises(fu.CameraError, match=r"lost \(3 empty frames in a row\).*gave up after 3 attempts"):
        cam.read()


def test_on_unlock_name_is_data_not_shell(tmp_path):
    """A hostile name reaches the command only as an environment variable."""
    fu = load_demo_module("face_unlock")
    out = tmp_path / "env.txt"
    pwned = tmp_path / "pwned"
    name = f"x; touch {pwned} $(touch {pwned}) `touch {pwned}`"
    cmd = (f"{shlex_quote(sys.executable)} -c \"import os,sys; "
           f"open(sys.argv[1],'w').write(os.environ['EDGELITE_UNLOCK_NAME'])\" {shlex_quote(str(out))}")
    rc = fu.run_on_unlock(cmd, name, 0.5, fu.Reporter(headless=False), timeout=30)
    assert rc == 0 and out.read_text() == name and not pwned.exists()


def test_face_quality_frontal_vs_turned():
    """The pose/sharpness gates on synthetic landmarks (no model needed)."""
    fu = load_demo_module("face_unlock")
    from edgelite.face import Face

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    frontal = Face(box=[50, 50, 150, 170], landmarks=[[80, 90], [120, 90], [100, 115], [84, 140], [116, 140]],
                   score=0.9)
    turned = Face(box=[50, 50, 150, 170], landmarks=[[80, 90], [120, 98], [113, 115], [84, 140], [116, 146]],
                  score=0.9)
    qf, qt = fu.face_quality(img, frontal), fu.face_quality(img, turned)
    assert abs(qf["roll"]) < 1e-6 and abs(qf["yaw"]) < 1e-6 and qf["sharpness"] > 1000  # noise is "sharp"
    assert qt["yaw"] > 0.25 and qt["roll"] > 10
    flat = fu.face_quality(np.full((200, 200, 3), 128, np.uint8), frontal)
    assert flat["sharpness"] < 1.0


# ------------------------------------------------------------------------------ annotate


def test_annotate_folder_with_bad_files(morgan_db, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(DEMO_FACES / "Andrew_Morgan.jpg", src / "morgan.jpg")
    shutil.copy(DEMO_FACES / "Nick_Hague.jpg", src / "hague.jpg")
    data = (DEMO_FACES / "Nick_Hague.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (src / "not_an_image.jpg").write_text("this is not a JPEG\n")
    (src / "empty.png").write_bytes(b"")
    (src / "notes.txt").write_text("ignored: not an image extension\n")
    out = tmp_path / "out"
    r = run_demo("annotate.py", src, "--out", out, "--db", morgan_db, "--workers", 2, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "5 images: 2 annotated, 3 skipped (bad files)" in r.stdout and "ignored 1 non-image file" in r.stdout
    for bad in ("truncated.jpg", "not_an_image.jpg", "empty.png"):
        assert f"skipped: {src / bad}: " in r.stderr

    rows = list(csv.DictReader(open(out / "detections.csv", encoding="utf-8")))
    by_file = {}
    for row in rows:
        by_file.setdefault(Path(row["file"]).name, []).append(row)
    assert set(by_file) == {"morgan.jpg", "hague.jpg", "truncated.jpg", "not_an_image.jpg", "empty.png"}
    assert "truncated" in by_file["truncated.jpg"][0]["error"]
    assert "empty" in by_file["empty.png"][0]["error"]
    assert by_file["not_an_image.jpg"][0]["status"] == "error" and by_file["not_an_image.jpg"][0]["error"]
    (m,) = by_file["morgan.jpg"]
    (h,) = by_file["hague.jpg"]
    assert m["status"] == "ok" and m["name"] == MORGAN and float(m["match_score"]) > 0.9
    assert h["status"] == "ok" and h["name"] == "" and float(h["match_score"]) < 0.363
    assert float(m["det_score"]) > 0.8 and float(m["right_eye_x"]) < float(m["left_eye_x"])
    assert Path(m["annotated"]).is_file() and Path(h["annotated"]).is_file()

    doc = json.loads((out / "detections.json").read_text())
    s = doc["summary"]
    assert (s["images"], s["ok"], s["errors"], s["faces"], s["named"]) == (5, 2, 3, 2, 1)
    assert s["workers"] == 2 and s["threads_per_worker"] == 1
    ok = [i for i in doc["images"] if i["status"] == "ok"]
    assert all(len(i["faces"][0]["landmarks"]) == 5 for i in ok)


def test_annotate_without_gallery_single_worker(zoo_models, tmp_path):
    out = tmp_path / "out"
    r = run_demo("annotate.py", DEMO_FACES / "Eileen_Collins.png", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    (row,) = list(csv.DictReader(open(out / "detections.csv", encoding="utf-8")))
    assert row["status"] == "ok" and row["face"] == "0" and row["name"] == "" and row["match_score"] == ""
    assert (out / "images" / "Eileen_Collins.jpg").is_file()


# ------------------------------------------------------------------------------ tutorial


@pytest.mark.slow
def test_quantize_tutorial_quick(tmp_path):
    pytest.importorskip("tensorflow")
    r = run_demo("quantize_your_model.py", "--quick", "--out", tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for n in range(1, 8):
        assert f"=== {n}. " in out
    assert "edgelite convert " in out and "--calibration" in out          # the CLI equivalent
    assert "fully integer: yes" in out
    assert "top-1 agreement" in out and "held-out accuracy" in out
    assert "int8 speed-up (float32 median / int8 median)" in out
    assert "prediction: s" in out and "gives the same prediction: True" in out
    assert (tmp_path / "orl4_int8.tflite").is_file() and (tmp_path / "orl4_float32.tflite").is_file()
    import edgelite
    m = edgelite.Model(tmp_path / "orl4_int8.tflite")
    assert m.inputs[0].dtype == np.int8 and m.metadata.labels == ("s1", "s2", "s3", "s4")
