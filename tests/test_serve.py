"""`edgelite serve`: a real server process on a loopback ephemeral port, a real HTTP
client (httpx), the real int8 zoo models and real photos. No timing is asserted."""
from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from serve_util import ServerProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "faces" / "demo"
NICK = (DEMO / "Nick_Hague.jpg").read_bytes()
MORGAN = (DEMO / "Andrew_Morgan.jpg").read_bytes()
COLLINS_PNG = (DEMO / "Eileen_Collins.png").read_bytes()
ISS = (DEMO / "Morgan_and_Hague_ISS.jpg").read_bytes()  # 5568x3712, two small faces, 2.7 MB
TOKEN = "test-token-0123456789abcdef"
JPEG = {"Content-Type": "image/jpeg"}


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


@pytest.fixture(scope="module")
def model_dir(zoo_models, tmp_path_factory) -> Path:
    """A SageMaker-style model dir: the three int8 face models + a gallery with two people."""
    from edgelite.face import FaceDetector, FaceEmbedder, FaceGallery
    from edgelite.image import load_image

    d = tmp_path_factory.mktemp("model")
    for n in ("yunet_320-int8", "yunet_640-int8", "sface-int8"):
        shutil.copy(zoo_models / f"{n}.tflite", d / f"{n}.tflite")
    det, emb = FaceDetector.from_model(d / "yunet_320-int8.tflite"), FaceEmbedder.from_model(d / "sface-int8.tflite")
    with FaceGallery(d / "gallery.db") as g:
        for name, data in (("Nick Hague", NICK), ("Andrew Morgan", MORGAN)):
            img = load_image(data)
            faces = det.detect(img).faces
            g.enroll(name, emb.embed_faces(img, faces[:1]), model_id=emb.model_id)
    return d


@pytest.fixture(scope="module")
def reference(model_dir):
    """The in-process pipeline on the same files: what the server must answer."""
    from edgelite.face import FaceDetector, FaceEmbedder
    from edgelite.image import load_image

    dets = {s: FaceDetector.from_model(model_dir / f"yunet_{s}-int8.tflite") for s in (320, 640)}
    emb = FaceEmbedder.from_model(model_dir / "sface-int8.tflite")

    def run(data: bytes):
        img = load_image(data)
        det = dets[640 if max(img.shape[:2]) > 1280 else 320]
        faces = det.detect(img).faces
        return img, faces, emb.embed_faces(img, faces)

    return run


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """Started exactly as the container starts it: `serve` + SageMaker's environment."""
    tok = tmp_path_factory.mktemp("secret") / "token"
    tok.write_text(TOKEN + "\n")
    os.chmod(tok, 0o600)
    s = ServerProcess([], container=True, log=tmp_path_factory.mktemp("log") / "server.log", env={
        "EDGELITE_MODEL_DIR": str(model_dir), "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "3", "EDGELITE_SERVE_TOKEN_FILE": str(tok)})
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


# ------------------------------------------------------------------ the SageMaker contract


def test_ping_is_200_with_empty_body(server):
    r = server.client.get("/ping")
    assert r.status_code == 200 and r.content == b""
    assert len(server.worker_pids()) == 2  # SAGEMAKER_MODEL_SERVER_WORKERS


@pytest.mark.parametrize("data,ctype", [(NICK, "image/jpeg"), (COLLINS_PNG, "image/png"), (ISS, "image/jpeg")])
def test_invocations_embed_matches_in_process(server, reference, data, ctype):
    r = server.client.post("/invocations", content=data, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    doc = r.json()
    img, faces, emb = reference(data)
    assert doc["image_hw"] == list(img.shape[:2])
    assert len(doc["faces"]) == len(faces) >= 1
    for got, f, e in zip(doc["faces"], faces, emb):
        np.testing.assert_allclose(got["box"], f.box, atol=1e-3)
        np.testing.assert_allclose(got["landmarks"], f.landmarks, atol=1e-3)
        assert len(got["embedding"]) == 128
        np.testing.assert_allclose(got["embedding"], e, atol=1e-5)
    assert doc["model_id"].startswith("sface")


def test_invocations_npy_equals_jpeg(server):
    from edgelite.image import load_image

    a = server.client.post("/invocations", content=NICK, headers=JPEG).json()
    b = server.client.post("/invocations", content=npy_bytes(load_image(NICK)),
                           headers={"Content-Type": "application/x-npy"}).json()
    assert a == b


def test_sagemaker_custom_attributes_reach_the_task(server):
    r = server.client.post("/invocations", content=ISS, headers={
        **JPEG, "X-Amzn-SageMaker-Custom-Attributes": "max_faces=1"})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1


def test_payload_over_limit_is_413(server):
    big = b"\xff\xd8" + os.urandom(3 * 1024 * 1024 + 10)
    r = server.client.post("/invocations", content=big, headers=JPEG)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(4):
            yield os.urandom(1024 * 1024)

    r = server.client.post("/invocations", content=chunks(), headers=JPEG)
    assert r.status_code == 413


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", ""])
def test_unsupported_content_type_is_415(server, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = server.client.post("/invocations", content=b"abc", headers=headers)
    assert r.status_code == 415
    assert "image/" in r.json()["error"]["message"]


@pytest.mark.parametrize("body,ctype,code", [
    (b"", "image/jpeg", "empty_body"),
    (b"not an image at all", "image/jpeg", "bad_input"),
    (NICK[: len(NICK) // 2], "image/jpeg", "bad_input"),  # truncated JPEG
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 3), }" + b" " * 40
     + b"\n" + b"\0" * 16, "application/x-npy", "bad_npy"),  # header declares 120 GB
    (npy_bytes(np.zeros((4, 4, 3), np.float32)), "application/x-npy", "bad_input"),  # not uint8
    (npy_bytes(np.zeros(7, np.uint8)), "application/x-npy", "bad_input"),  # not an image
])
def test_bad_input_is_400_with_a_json_reason(server, body, ctype, code):
    r = server.client.post("/invocations", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code


def test_unknown_route_404_and_wrong_method_405(server):
    r = server.client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert server.client.post("/v1/faces/smile", content=NICK, headers=JPEG).status_code == 404
    assert server.client.get("/invocations").status_code == 405


# ------------------------------------------------------------------ native face routes


def test_detect_route(server, reference):
    doc = server.client.post("/v1/faces/detect", content=ISS, headers=JPEG).json()
    _, faces, _ = reference(ISS)
    assert len(doc["faces"]) == len(faces) == 2
    assert "embedding" not in doc["faces"][0]
    assert set(doc["faces"][0]) == {"box", "landmarks", "score"}


def test_identify_names_people_from_the_gallery(server):
    doc = server.client.post("/v1/faces/identify", content=ISS, headers=JPEG).json()
    names = {f["name"] for f in doc["faces"]}
    assert names == {"Nick Hague", "Andrew Morgan"}
    left = min(doc["faces"], key=lambda f: f["box"][0])
    assert left["name"] == "Andrew Morgan"  # Morgan stands on the left in this photo
    assert all("embedding" not in f for f in doc["faces"])  # names only, no templates
    doc = server.client.post("/v1/faces/identify", params={"threshold": "0.99"}, content=ISS, headers=JPEG).json()
    assert all(f["name"] is None for f in doc["faces"])


def test_verify_against_a_name_and_between_two_images(server):
    r = server.client.post("/v1/faces/verify", params={"name": "Nick Hague"}, content=NICK, headers=JPEG)
    assert r.status_code == 200 and r.json()["accepted"] is True
    r = server.client.post("/v1/faces/verify", params={"name": "Nick Hague"}, content=MORGAN, headers=JPEG)
    assert r.status_code == 200 and r.json()["accepted"] is False
    r = server.client.post("/v1/faces/verify", params={"name": "Nobody"}, content=NICK, headers=JPEG)
    assert r.status_code == 404
    same = server.client.post("/v1/faces/verify", json={"a": base64.b64encode(NICK).decode(),
                                                        "b": base64.b64encode(NICK).decode()}).json()
    assert same["accepted"] is True and same["score"] > 0.99
    diff = server.client.post("/v1/faces/verify", files={"a": ("a.jpg", NICK, "image/jpeg"),
                                                         "b": ("b.jpg", MORGAN, "image/jpeg")})
    assert diff.status_code == 200 and diff.json()["accepted"] is False
    blank = npy_bytes(np.full((200, 200, 3), 128, np.uint8))
    r = server.client.post("/v1/faces/verify", params={"name": "Nick Hague"}, content=blank,
                           headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_face"


def test_gallery_routes_need_the_token(server):
    url = "/v1/gallery/people/Eileen Collins"
    png = {"Content-Type": "image/png"}
    assert server.client.post(url, content=COLLINS_PNG, headers=png).status_code == 401
    bad = {**png, "Authorization": "Bearer wrong-token-wrong-token"}
    assert server.client.post(url, content=COLLINS_PNG, headers=bad).status_code == 401
    assert server.client.get("/v1/gallery/people").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = server.client.post(url, content=COLLINS_PNG, headers={**png, **auth})
    assert r.status_code == 201 and r.json()["name"] == "Eileen Collins"
    people = server.client.get("/v1/gallery/people", headers=auth).json()["people"]
    assert {"Eileen Collins", "Nick Hague", "Andrew Morgan"} <= {p["name"] for p in people}
    # every worker sees the new person (each has its own SQLite connection)
    for _ in range(4):
        doc = server.client.post("/v1/faces/identify", content=COLLINS_PNG, headers=png).json()
        assert doc["faces"][0]["name"] == "Eileen Collins"
    assert server.client.delete(url).status_code == 401
    r = server.client.delete(url, headers=auth)
    assert r.status_code == 200 and r.json()["removed_templates"] == 1
    assert server.client.delete(url, headers=auth).status_code == 404
    doc = server.client.post("/v1/faces/identify", content=COLLINS_PNG, headers=png).json()
    assert doc["faces"][0]["name"] is None
    r = server.client.post("/v1/gallery/people/bad%01name", content=COLLINS_PNG, headers={**png, **auth})
    assert r.status_code == 400  # the gallery validates names (control characters refused)


def test_metrics_expose_the_scaling_signals(server):
    before = server.metric("edgelite_requests_total", 'route="/v1/faces/detect",status="200"')
    server.client.post("/v1/faces/detect", content=NICK, headers=JPEG)
    text = server.client.get("/metrics").text
    for name in ("edgelite_requests_total", "edgelite_request_duration_seconds_bucket", "edgelite_queue_depth",
                 "edgelite_inflight_requests", "edgelite_batch_size_bucket", "edgelite_worker_restarts_total",
                 "edgelite_workers_ready"):
        assert name in text, name
    after = server.metric("edgelite_requests_total", 'route="/v1/faces/detect",status="200"')
    assert after == before + 1
    assert server.metric("edgelite_workers_ready") == 2


def test_no_malformed_input_kills_a_worker(server):
    rng = np.random.default_rng(0)
    pids = server.worker_pids()
    restarts = server.metric("edgelite_worker_restarts_total")
    png_bomb = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (60000).to_bytes(4, "big") * 2
                + b"\x08\x02\x00\x00\x00" + b"\0" * 4 + b"\0" * 64)
    bodies = [(rng.bytes(int(n)), t) for n, t in zip(rng.integers(1, 5000, 12),
                                                     ["image/jpeg", "image/png", "application/x-npy"] * 4)]
    bodies += [(png_bomb, "image/png"), (b"\x93NUMPY\x01\x00\x10\x00{'descr': '|O'}", "application/x-npy"),
               (b"[" * 100000, "application/json"), (NICK[:-2000], "image/jpeg"), (ISS[:5000], "image/jpeg")]
    for body, t in bodies:
        r = server.client.post("/v1/faces/embed", content=body, headers={"Content-Type": t})
        assert 400 <= r.status_code < 500, (t, r.status_code, r.text)
        r.json()  # always a JSON error
    r = server.client.post("/v1/faces/verify", content=b"[" * 100000, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert server.worker_pids() == pids
    assert server.metric("edgelite_worker_restarts_total") == restarts
    assert server.client.post("/invocations", content=NICK, headers=JPEG).status_code == 200


# ------------------------------------------------------------------ plain models


def test_model_routes_any_model_npy_and_json(server, model_dir):
    from edgelite import Model

    listing = server.client.get("/v1/models").json()
    assert "sface-int8" in listing["models"]
    m = Model(model_dir / "sface-int8.tflite")
    x = np.random.default_rng(1).uniform(0, 255, (2, 112, 112, 3)).astype(np.float32)
    want = m(x)
    r = server.client.post("/v1/models/sface-int8/predict", content=npy_bytes(x),
                           headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npy"
    got = np.load(io.BytesIO(r.content))
    np.testing.assert_allclose(got, want, atol=1e-6)
    r = server.client.post("/v1/models/sface-int8/predict", json={"inputs": x[:1].tolist()})
    out = r.json()["outputs"]
    np.testing.assert_allclose(np.asarray(next(iter(out.values()))), want[:1], atol=1e-5)
    r = server.client.post("/v1/models/sface-int8/predict", content=npy_bytes(np.zeros((1, 5, 5), np.float32)),
                           headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_shape"
    r = server.client.post("/v1/models/sface-int8/predict", json={"inputs": [[1, 2], [3]]})
    assert r.status_code == 400
    assert server.client.post("/v1/models/nope/predict", json={"inputs": []}).status_code == 404


# ------------------------------------------------------------------ workers, batching, limits


def _post_many(url, items, workers=16):
    with httpx.Client(timeout=120.0) as c, cf.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(lambda it: c.post(url, content=it[0], headers=it[1]), items))


def test_batched_results_equal_unbatched(model_dir, server, tmp_path):
    """8 concurrent requests to a 1-worker server that batches up to 8: same answers as
    the unbatched server, and the batch-size histogram shows real batches."""
    photos = [(p.read_bytes(), {"Content-Type": "image/png" if p.suffix == ".png" else "image/jpeg"})
              for p in sorted(DEMO.iterdir())]
    orl = sorted((ROOT / "data" / "faces" / "orl").glob("s1/*.pgm"))[:5]
    items = photos + [(p.read_bytes(), {"Content-Type": "image/x-portable-graymap"}) for p in orl]
    unbatched = [server.client.post("/v1/faces/embed", content=b, headers=h).json() for b, h in items]
    s = ServerProcess(["--model-dir", str(model_dir), "--workers", "1", "--max-batch-size", "8",
                       "--max-batch-delay-ms", "200", "--max-queue", "32"], log=tmp_path / "log")
    try:
        s.wait_ready()
        got = _post_many(s.url + "/v1/faces/embed", items)
        assert [r.status_code for r in got] == [200] * len(items)
        for a, b in zip(got, unbatched):
            a = a.json()
            assert len(a["faces"]) == len(b["faces"])
            for fa, fb in zip(a["faces"], b["faces"]):
                np.testing.assert_allclose(fa["embedding"], fb["embedding"], atol=1e-5)
                np.testing.assert_allclose(fa["box"], fb["box"], atol=1e-3)
        n_batches = s.metric("edgelite_batch_size_count")
        assert s.metric("edgelite_batch_size_sum") == len(items)
        assert n_batches < len(items)  # some requests really ran together
    finally:
        s.stop()


def test_full_queue_gives_503_with_retry_after_and_timeout_gives_504(model_dir, tmp_path):
    s = ServerProcess(["--model-dir", str(model_dir), "--workers", "1", "--max-queue", "2"],
                      log=tmp_path / "log")
    try:
        s.wait_ready()
        got = _post_many(s.url + "/v1/faces/embed", [(ISS, JPEG)] * 12, workers=12)
        codes = [r.status_code for r in got]
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
        for r in got:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "overloaded"
            else:
                assert len(r.json()["faces"]) == 2  # every accepted request answered correctly
        assert s.metric("edgelite_rejected_total") == codes.count(503)
    finally:
        s.stop()
    s = ServerProcess(["--model-dir", str(model_dir), "--workers", "1", "--timeout", "0.005"],
                      log=tmp_path / "log2")
    try:
        s.wait_ready()
        got = _post_many(s.url + "/v1/faces/embed", [(ISS, JPEG)] * 3, workers=3)
        assert all(r.status_code == 504 and r.json()["error"]["code"] == "timeout" for r in got)
        assert s.client.get("/ping").status_code == 200  # the worker is fine
    finally:
        s.stop()


def test_killed_worker_is_restarted_and_in_flight_requests_get_a_5xx(model_dir, tmp_path):
    s = ServerProcess(["--model-dir", str(model_dir), "--workers", "2"], log=tmp_path / "log")
    try:
        s.wait_ready()
        pids = s.worker_pids()
        assert len(pids) == 2
        with cf.ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(s.client.post, "/v1/faces/embed", content=ISS, headers=JPEG) for _ in range(8)]
            time.sleep(0.3)
            os.kill(pids[0], signal.SIGKILL)
            results = [f.result(timeout=60) for f in futs]  # never a hang
        for r in results:
            assert r.status_code in (200, 500), r.text
            if r.status_code == 500:
                assert r.json()["error"]["code"] == "worker_died"
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end and not (s.client.get("/ping").status_code == 200
                                                and len(s.worker_pids()) == 2):
            time.sleep(0.1)
        new = s.worker_pids()
        assert len(new) == 2 and pids[0] not in new and pids[1] in new
        assert s.metric("edgelite_worker_restarts_total") == 1
        assert all(s.client.post("/v1/faces/embed", content=NICK, headers=JPEG).status_code == 200
                   for _ in range(4))
    finally:
        s.stop()


def test_sigterm_drains_in_flight_requests_then_exits(model_dir, tmp_path):
    s = ServerProcess(["--model-dir", str(model_dir), "--workers", "1"], log=tmp_path / "log")
    try:
        s.wait_ready()
        with cf.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(s.client.post, "/v1/faces/embed", content=ISS, headers=JPEG) for _ in range(4)]
            t_end = time.monotonic() + 30
            while s.metric("edgelite_inflight_requests") < 4 and time.monotonic() < t_end:
                time.sleep(0.01)
            s.proc.send_signal(signal.SIGTERM)
            results = [f.result(timeout=60) for f in futs]
        assert [r.status_code for r in results] == [200] * 4
        assert all(len(r.json()["faces"]) == 2 for r in results)
        assert s.proc.wait(30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(s.url + "/ping", timeout=2)
        assert s.worker_pids() == []
    finally:
        s.stop()


def test_gallery_routes_are_off_without_a_token(model_dir, tmp_path):
    s = ServerProcess(["--model-dir", str(model_dir), "--workers", "1", "--task", "identify"],
                      env={"EDGELITE_SERVE_TOKEN": "", "EDGELITE_SERVE_TOKEN_FILE": ""}, log=tmp_path / "log")
    try:
        s.wait_ready()
        r = s.client.post("/v1/gallery/people/Mallory", content=NICK,
                          headers={**JPEG, "Authorization": "Bearer anything-anything-anything"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "gallery_writes_disabled"
        doc = s.client.post("/invocations", content=NICK, headers=JPEG).json()  # task identify
        assert doc["faces"][0]["name"] == "Nick Hague"
        log = s.log()
    finally:
        s.stop()
    assert "Mallory" not in log and "Nick Hague" not in log  # names and bodies never logged


def test_a_tampered_model_with_a_recorded_sha256_is_refused_at_start(model_dir, zoo_models, tmp_path):
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    for n in ("yunet_320-int8", "sface-int8"):
        shutil.copy(zoo_models / f"{n}.tflite.sha256", bad / f"{n}.tflite.sha256")
    data = bytearray((bad / "sface-int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights
    (bad / "sface-int8.tflite").write_bytes(bytes(data))
    s = ServerProcess(["--model-dir", str(bad), "--workers", "1"], log=tmp_path / "log")
    try:
        assert s.proc.wait(60) == 2
        assert "SHA-256" in s.log() and "sface-int8" in s.log()
    finally:
        s.stop()


def test_model_route_takes_an_image_through_the_models_embedded_preprocessing(server, model_dir):
    from edgelite import Model
    from edgelite.image import load_image

    m = Model(model_dir / "yunet_320-int8.tflite")
    want = m.run(m.prepare(load_image(NICK))[0], quantize=False)
    r = server.client.post("/v1/models/yunet_320-int8/predict", content=NICK,
                           headers={"Content-Type": "image/jpeg", "Accept": "application/x-npz"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npz"
    got = np.load(io.BytesIO(r.content))
    assert set(got.files) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("task", ["detect", "verify", "model"])
def test_invocations_runs_the_configured_task(model_dir, tmp_path, task):
    """/invocations does what EDGELITE_SERVE_TASK says (SageMaker has only that one route)."""
    d = tmp_path / "model"
    shutil.copytree(model_dir, d)
    (d / "serve.json").write_text(json.dumps({"model": "sface-int8"}))
    s = ServerProcess([], container=True, log=tmp_path / "log",
                      env={"EDGELITE_MODEL_DIR": str(d), "EDGELITE_SERVE_TASK": task,
                           "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    try:
        s.wait_ready()
        if task == "detect":
            doc = s.client.post("/invocations", content=ISS, headers=JPEG).json()
            assert len(doc["faces"]) == 2 and "embedding" not in doc["faces"][0]
        elif task == "verify":
            r = s.client.post("/invocations", content=NICK, headers={
                **JPEG, "X-Amzn-SageMaker-Custom-Attributes": "name=Nick Hague"})
            assert r.status_code == 200 and r.json()["accepted"] is True
        else:
            x = np.random.default_rng(2).uniform(0, 255, (1, 112, 112, 3)).astype(np.float32)
            r = s.client.post("/invocations", content=npy_bytes(x),
                              headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
            assert r.status_code == 200
            assert np.load(io.BytesIO(r.content)).shape == (1, 128)
            import cv2

            ok, png = cv2.imencode(".png", np.full((112, 112, 3), 90, np.uint8))
            r = s.client.post("/invocations", content=png.tobytes(), headers={"Content-Type": "image/png"})
            assert r.status_code == 200 and len(next(iter(r.json()["outputs"].values()))[0]) == 128
            r = s.client.post("/invocations", content=NICK, headers=JPEG)  # its spec says resize "none"
            assert r.status_code == 400 and "112x112" in r.json()["error"]["message"]
    finally:
        s.stop()
