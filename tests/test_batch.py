"""edgelite batch, local engine: real zoo models, real photos (data/faces), real processes.

What is checked: the fixed Parquet schema, rows against the task classes, the
errors table for bad files (truncated JPEG, text named .jpg, empty file, image
without a face, a FIFO), CLI == API, resume (refused with other options, exact
after a SIGKILL of a running batch, clean on Ctrl-C), the model task.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import edgelite  # noqa: E402
from edgelite.batch import (  # noqa: E402
    TIMING_COLUMNS, BatchError, BatchOptions, collect_inputs, read_errors, read_output, run_batch,
)

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "data" / "faces"
BAD = {"truncated.jpg": "not_an_image", "text.jpg": "not_an_image", "empty.png": "not_an_image",
       "noface.png": "no_face", "fifo.jpg": "unreadable"}


def _strip(t):
    return t.drop_columns([c for c in TIMING_COLUMNS if c in t.column_names])


def make_folder(root: Path, orl_subjects=("s1", "s2")) -> Path:
    """Demo photos + some ORL faces + one of each bad file, in nested folders."""
    import cv2

    src = root / "imgs"
    shutil.copytree(FACES / "demo", src / "demo")
    for s in orl_subjects:
        shutil.copytree(FACES / "orl" / s, src / "orl" / s)
    bad = src / "bad"
    bad.mkdir()
    data = (FACES / "demo" / "Andrew_Morgan.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (bad / "text.jpg").write_text("this is not a JPEG\n")
    (bad / "empty.png").write_bytes(b"")
    ramp = np.tile(np.linspace(0, 255, 240, dtype=np.uint8), (180, 1))
    cv2.imwrite(str(bad / "noface.png"), np.dstack([ramp, ramp[::-1], np.full_like(ramp, 90)]))
    os.mkfifo(bad / "fifo.jpg")
    (src / "notes.md").write_text("not an input: no image extension\n")
    return src


@pytest.fixture(scope="module")
def folder(tmp_path_factory, zoo_models) -> Path:
    return make_folder(tmp_path_factory.mktemp("batch"))


@pytest.fixture(scope="module")
def api_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "out"
    r = run_batch("embed", [folder], out, BatchOptions(workers=2, shard_size=7, progress=False))
    return out, r


def cli(*args, timeout=180, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "edgelite.cli", "batch", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


# --------------------------------------------------------------------------------- options & inputs
def test_options_are_validated():
    for bad in ({"workers": 0}, {"shard_size": -1}, {"batch_size": 1.5}, {"engine": "spark"},
                {"start_method": "fork"}, {"format": "csv"}, {"score_threshold": 2}, {"threshold": 3.0},
                {"input_size": 500}, {"if_exists": "append"}):
        with pytest.raises(edgelite.InputError):
            BatchOptions(**bad)
    o = BatchOptions(engine="ray", format="jsonl", workers=2)
    assert o.engine.value == "ray" and o.format.value == "jsonl" and o.resolved_threads() >= 1
    with pytest.raises(Exception):
        o.workers = 3  # frozen
    with pytest.raises(edgelite.InputError, match="task must be one of"):
        run_batch("segment", [FACES / "demo"], "/nonexistent")


def test_collect_inputs_folders_globs_manifests(tmp_path):
    demo = sorted(str(p) for p in (FACES / "demo").iterdir())
    assert collect_inputs([FACES / "demo"]) == demo
    s1 = sorted(str(p) for p in (FACES / "orl" / "s1").glob("*.pgm"))
    assert collect_inputs([str(FACES / "orl" / "s1" / "*.pgm"), FACES / "orl" / "s1"]) == s1  # de-duplicated
    (tmp_path / "list.txt").write_text("# two photos\n" + demo[0] + "\n\n" + os.path.relpath(demo[1], tmp_path) + "\n")
    assert collect_inputs([tmp_path / "list.txt"]) == demo[:2]
    (tmp_path / "list.csv").write_text("path,who\n" + demo[2] + ",x\n")
    pq.write_table(pa.table({"path": [demo[3]]}), tmp_path / "list.parquet")
    assert collect_inputs([tmp_path / "list.csv", tmp_path / "list.parquet"]) == demo[2:4]
    (tmp_path / "bad.csv").write_text("file\n" + demo[0] + "\n")
    with pytest.raises(edgelite.InputError, match="path"):
        collect_inputs([tmp_path / "bad.csv"])
    with pytest.raises(edgelite.InputError, match="does not exist"):
        collect_inputs([tmp_path / "missing"])
    with pytest.raises(edgelite.InputError, match="matches no file"):
        collect_inputs([str(tmp_path / "*.jpeg")])


# --------------------------------------------------------------------------------- rows, schema, errors
def test_parquet_schema_is_fixed(api_run):
    out, r = api_run
    shards = sorted(out.glob("part-*.parquet"))
    assert len(shards) == r.shards_total == r.manifest["shards_total"] > 1
    want = [("path", pa.string()), ("face", pa.int32()), ("image_width", pa.int32()),
            ("image_height", pa.int32()), ("box", pa.list_(pa.float32(), 4)),
            ("landmarks", pa.list_(pa.list_(pa.float32(), 2), 5)), ("score", pa.float32()),
            ("embedding", pa.list_(pa.float32(), 128)), ("model_id", pa.string()), ("detector_id", pa.string()),
            ("decode_ms", pa.float32()), ("detect_ms", pa.float32()), ("embed_ms", pa.float32())]
    for s in shards:  # every shard, an all-errors one too, has exactly this schema
        schema = pq.read_schema(s)
        assert [(f.name, f.type) for f in schema] == want, s
    errs = pq.read_schema(out / "_errors.parquet")
    assert [(f.name, f.type) for f in errs] == [("path", pa.string()), ("reason", pa.string()),
                                               ("message", pa.string())]


def test_embed_rows_match_the_task_classes(api_run, folder):
    out, r = api_run
    t = read_output(out)
    assert t.num_rows == r.rows > 0
    keys = list(zip(t.column("path").to_pylist(), t.column("face").to_pylist()))
    assert len(set(keys)) == len(keys)  # one row per face, no duplicates
    emb = np.asarray(t.column("embedding").to_pylist(), np.float32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Morgan_and_Hague_ISS has two astronauts: two rows, faces 0 and 1, best score first
    two = t.filter(pa.compute.ends_with(t.column("path"), "Morgan_and_Hague_ISS.jpg"))
    assert two.column("face").to_pylist() == [0, 1]
    assert two.column("score")[0].as_py() >= two.column("score")[1].as_py()
    # the same numbers as FaceDetector + FaceEmbedder called directly on that photo
    path = str(folder / "demo" / "Eileen_Collins.png")
    img = edgelite.load_image(path)
    det = edgelite.face.FaceDetector()
    faces = det.detect(img).faces
    e = edgelite.face.FaceEmbedder()
    want = e.embed_faces(img, faces)
    row = t.filter(pa.compute.equal(t.column("path"), path))
    assert row.num_rows == len(faces) == 1
    np.testing.assert_array_equal(np.asarray(row.column("embedding")[0].as_py(), np.float32), want[0])
    np.testing.assert_array_equal(np.asarray(row.column("box")[0].as_py(), np.float32), faces[0].box)
    np.testing.assert_array_equal(np.asarray(row.column("landmarks")[0].as_py(), np.float32), faces[0].landmarks)
    assert row.column("image_width")[0].as_py() == img.shape[1]
    assert set(t.column("model_id").to_pylist()) == {e.model_id}
    sha = r.manifest["models"]["embedder"]["sha256"]
    assert sha == edgelite.zoo.sha256_file(edgelite.zoo.require_model("sface"))


def test_errors_table_has_every_bad_file_with_its_reason(api_run, folder):
    out, r = api_run
    errs = read_errors(out).to_pylist()
    by_name = {Path(e["path"]).name: e for e in errs}
    for name, reason in BAD.items():
        assert by_name[name]["reason"] == reason, by_name[name]
        assert by_name[name]["message"]
    assert "FIFO" in by_name["fifo.jpg"]["message"]
    assert "truncated" in by_name["truncated.jpg"]["message"]
    # the other errors (if any) are ORL faces the detector misses, never a crash
    assert {e["reason"] for e in errs if Path(e["path"]).name not in BAD} <= {"no_face"}
    rows = read_output(out)
    assert not set(by_name) & {Path(p).name for p in rows.column("path").to_pylist()}
    assert "notes.md" not in by_name  # folders are scanned for image files only
    n_inputs = len(collect_inputs([folder]))
    assert r.inputs == n_inputs == len(set(rows.column("path").to_pylist())) + len(errs)
    m = json.loads((out / "_manifest.json").read_text())
    assert m["finished"] and len(m["completed"]) == m["shards_total"] and m["errors_total"] == len(errs)
    assert not list(out.rglob("*.tmp"))


def test_cli_rows_equal_api_rows_and_jsonl(api_run, folder, tmp_path):
    out, _ = api_run
    r = cli("embed", folder, "-o", tmp_path / "cli", "--workers", 1, "--shard-size", 50, "--batch-size", 1,
            "-q", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["rows"] > 0 and summary["engine"] == "local"
    # other workers, shard size and batching: the same rows
    assert _strip(read_output(tmp_path / "cli")).equals(_strip(read_output(out)))
    assert read_errors(tmp_path / "cli").equals(read_errors(out))
    # JSON lines: the same values (float32 survives the round trip through JSON exactly)
    j = run_batch("embed", [folder / "demo"], tmp_path / "jsonl", format="jsonl", workers=1, progress=False)
    rows = [json.loads(line) for p in sorted((tmp_path / "jsonl").glob("part-*.jsonl"))
            for line in p.read_text().splitlines()]
    assert len(rows) == j.rows
    ref = {(x["path"], x["face"]): x for x in read_output(out).to_pylist()}
    for x in rows:
        y = ref[(x["path"], x["face"])]
        assert np.array_equal(np.float32(x["embedding"]), np.float32(y["embedding"]))
        assert x["box"] == y["box"] and x["model_id"] == y["model_id"]


def test_resume_skips_done_shards_and_refuses_other_settings(folder, tmp_path):
    src = [folder / "demo", folder / "bad"]
    out = tmp_path / "out"
    r1 = run_batch("detect", src, out, workers=1, shard_size=4, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    r2 = run_batch("detect", src, out, workers=1, shard_size=4, progress=False)
    assert r2.shards_skipped == r2.shards_total == r1.shards_total
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")} == before  # nothing rewritten
    with pytest.raises(BatchError, match="score_threshold"):
        run_batch("detect", src, out, workers=1, shard_size=4, score_threshold=0.9, progress=False)
    with pytest.raises(BatchError, match="task"):
        run_batch("embed", src, out, workers=1, shard_size=4, progress=False)
    with pytest.raises(BatchError, match="inputs"):
        run_batch("detect", [folder / "demo"], out, workers=1, shard_size=4, progress=False)
    r3 = run_batch("detect", src, out, workers=1, shard_size=4, score_threshold=0.9, if_exists="overwrite",
                   progress=False)
    assert r3.shards_skipped == 0 and r3.manifest["fingerprint"]["score_threshold"] == 0.9
    r = cli("detect", *src, "-o", out, "--shard-size", 4, "--no-resume", "-q")
    assert r.returncode == 2 and "already holds a batch run" in r.stderr
    # a folder with part files edgelite did not write is never cleared
    foreign = tmp_path / "spark_output"
    foreign.mkdir()
    (foreign / "part-00000.parquet").write_bytes(b"someone else's data")
    for mode in ("resume", "overwrite"):
        with pytest.raises(BatchError, match="no edgelite batch manifest"):
            run_batch("detect", src, foreign, workers=1, if_exists=mode, progress=False)
    assert (foreign / "part-00000.parquet").read_bytes() == b"someone else's data"


def _wait_for(pred, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _completed(out: Path) -> list:
    """Shards the run has recorded as completed (the manifest is written atomically)."""
    try:
        return json.loads((out / "_manifest.json").read_text()).get("completed") or []
    except (OSError, ValueError):
        return []


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_resume_after_kill9_matches_a_clean_run(tmp_path, zoo_models):
    """SIGKILL the running batch (parent only: its workers must notice and exit), rerun, compare."""
    orl = [FACES / "orl" / f"s{i}" for i in range(1, 41)]  # 400 real faces: the run is still going at the kill
    args = ["embed", *orl, "--workers", 2, "--shard-size", 6, "-q"]
    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "edgelite.cli", "batch", *map(str, args), "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: len(_completed(out)) >= 1, 120, "a first completed shard")
        workers = _children(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL
    done_at_kill = len(list(out.glob("part-*.parquet")))
    # orphaned workers exit by themselves
    _wait_for(lambda: not any(_alive(w) for w in workers), 30, "orphan workers to exit")
    r = cli(*args, "-o", out, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = json.loads(r.stdout)
    assert 0 < resumed["shards_skipped"] < resumed["shards_total"], (resumed, done_at_kill)
    clean = run_batch("embed", orl, tmp_path / "clean", workers=2, shard_size=6, progress=False)
    a, b = _strip(read_output(out)), _strip(read_output(tmp_path / "clean"))
    assert a.num_rows == b.num_rows == clean.rows
    assert a.equals(b)  # nothing missing, nothing twice, same values
    assert read_errors(out).equals(read_errors(tmp_path / "clean"))
    assert not list(out.rglob("*.tmp"))


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, zoo_models):
    # 400 images in 100 shards: after the first shard there is far more work left than
    # the time the test takes to send Ctrl-C, however fast the machine
    orl = [FACES / "orl" / f"s{i}" for i in range(1, 41)]
    out = tmp_path / "out"
    args = ["detect", *orl, "-o", out, "--workers", 2, "--shard-size", 4, "-q"]
    # A terminal's foreground job gets Ctrl-C with the default SIGINT action; the test
    # runner may have inherited SIGINT ignored (a background job of a non-interactive
    # shell), and an ignored SIGINT is inherited by exec: give the child the default.
    p = subprocess.Popen([sys.executable, "-m", "edgelite.cli", "batch", *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for(lambda: len(_completed(out)) >= 1, 120, "a first completed shard")
        workers = _children(p.pid)
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, f"exit {p.returncode}\n{err[-2000:]}"
    assert "Rerun the same command to resume" in err and "Traceback" not in err
    _wait_for(lambda: not any(_alive(w) for w in workers), 10, "the workers to stop")
    m = json.loads((out / "_manifest.json").read_text())
    assert not m["finished"] and m["completed"]
    assert sorted(p.stem for p in out.glob("part-*.parquet")) == m["completed"]
    assert not list(out.rglob("*.tmp"))
    r = cli(*args, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["shards_skipped"] == len(m["completed"])


def test_ctrl_c_while_the_manifest_is_written_keeps_files_and_manifest_equal(tmp_path, zoo_models, monkeypatch):
    """Ctrl-C can land while the parent records a shard (between the in-memory update and
    the manifest's rename): what is on disk must still be exactly the manifest's shards."""
    import edgelite.batch.local as local

    real, calls = local.write_json, []

    def interrupted_once(path, obj):
        calls.append(list(obj.get("completed", [])))
        if len(calls) == 2:  # the second shard's record: interrupted before the rename
            raise KeyboardInterrupt
        real(path, obj)

    monkeypatch.setattr(local, "write_json", interrupted_once)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch("detect", [FACES / "orl" / "s13", FACES / "orl" / "s14"], out,
                  BatchOptions(workers=1, shard_size=5, progress=False))
    m = json.loads((out / "_manifest.json").read_text())
    files = sorted(p.stem for p in out.glob("part-*.parquet"))
    assert m["completed"] and files == m["completed"]
    assert sorted(p.stem for p in (out / "_errors").glob("part-*.parquet")) == files
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(local, "write_json", real)
    r = run_batch("detect", [FACES / "orl" / "s13", FACES / "orl" / "s14"], out,
                  BatchOptions(workers=1, shard_size=5, progress=False, if_exists="resume"))
    assert r.shards_skipped == len(m["completed"]) and r.rows == 20


# --------------------------------------------------------------------------------- model task
def test_model_task_npy_and_images(tmp_path, zoo_models):
    model = edgelite.zoo.require_model("sface")
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    xs = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    for i, x in enumerate(xs):
        np.save(src / f"x{i}.npy", x)
    np.save(src / "wrong.npy", np.zeros((64, 64, 3), np.uint8))
    (src / "pickle.npy").write_bytes(b"\x93NUMPY garbage")
    import cv2

    crop = edgelite.face.align_faces(edgelite.load_image(FACES / "demo" / "Nick_Hague.jpg"),
                                     edgelite.face.FaceDetector().detect(
                                         edgelite.load_image(FACES / "demo" / "Nick_Hague.jpg")).landmarks[:1])[0]
    cv2.imwrite(str(src / "crop.png"), crop[:, :, ::-1])
    shutil.copy(FACES / "orl" / "s1" / "1.pgm", src / "orl.pgm")  # 92x112: does not fit, no resize in metadata
    r = run_batch("model", [src], tmp_path / "out", model=str(model), workers=1, batch_size=2, progress=False)
    t = read_output(tmp_path / "out")
    m = edgelite.Model(model)
    out_name = m.outputs[0].name
    assert t.column_names == ["path", out_name, "model_id", "decode_ms", "infer_ms"]
    got = {Path(p).name: np.asarray(v, np.float32) for p, v in zip(t.column("path").to_pylist(),
                                                                   t.column(out_name).to_pylist())}
    assert sorted(got) == ["crop.png", "x0.npy", "x1.npy", "x2.npy"]
    for i, x in enumerate(xs):
        np.testing.assert_array_equal(got[f"x{i}.npy"], m(x[None].astype(np.float32))[0].reshape(-1))
    np.testing.assert_array_equal(got["crop.png"], m(m.preprocessing.apply(crop))[0].reshape(-1))
    errs = {Path(e["path"]).name: e["reason"] for e in read_errors(tmp_path / "out").to_pylist()}
    assert errs == {"wrong.npy": "bad_input", "pickle.npy": "not_an_image", "orl.pgm": "bad_input"}
    assert r.manifest["models"]["model"]["sha256"] == edgelite.zoo.sha256_file(model)


def test_identify_names_faces_from_a_gallery(folder, tmp_path):
    e = edgelite.face.FaceEmbedder()
    det = edgelite.face.FaceDetector()
    img = edgelite.load_image(FACES / "demo" / "Andrew_Morgan.jpg")
    g = edgelite.face.FaceGallery(tmp_path / "g.sqlite")
    g.enroll("Andrew Morgan", e.embed_faces(img, det.detect(img).faces[:1]), model_id=e.model_id)
    g.close()
    r = run_batch("identify", [folder / "demo"], tmp_path / "out", gallery=tmp_path / "g.sqlite", workers=1,
                  progress=False)
    t = read_output(tmp_path / "out")
    assert "name" in t.column_names and "match_score" in t.column_names and r.rows == t.num_rows
    names = {(Path(p).name, f): n for p, f, n in zip(t.column("path").to_pylist(), t.column("face").to_pylist(),
                                                      t.column("name").to_pylist())}
    assert names[("Andrew_Morgan.jpg", 0)] == "Andrew Morgan"
    assert names[("Eileen_Collins.png", 0)] is None
    with pytest.raises(edgelite.InputError, match="gallery"):
        run_batch("identify", [folder / "demo"], tmp_path / "o2")


def test_a_worker_killed_mid_run_is_replaced_and_the_run_completes(tmp_path, zoo_models):
    """SIGKILL one worker (what the OOM killer does): the pool restarts, the output is exact."""
    orl = [FACES / "orl" / f"s{i}" for i in range(1, 41)]  # 400 faces: the run is still going at the kill
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "edgelite.cli", "batch", "embed", *map(str, orl), "-o", str(out),
                          "--workers", "2", "--shard-size", "4", "-q", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(list(out.glob("part-*.parquet"))) >= 1, 120, "a first shard")
        workers = [c for c in _children(p.pid)
                   if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        stdout, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-3000:]
    m = json.loads((out / "_manifest.json").read_text())
    assert m["worker_restarts"] == 1 and m["finished"]
    clean = run_batch("embed", orl, tmp_path / "clean", workers=1, shard_size=4, progress=False)
    assert _strip(read_output(out)).equals(_strip(read_output(tmp_path / "clean")))
    assert json.loads(stdout)["rows"] == clean.rows


def test_progress_bar_on_stderr_with_rate_and_eta(tmp_path, zoo_models):
    r = cli("detect", FACES / "demo", "-o", tmp_path / "out", "--workers", 1)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "5/5" in r.stderr and "img/s" in r.stderr  # tqdm: done/total, rate (ETA while running)
    assert "5 inputs -> 6 rows, 0 errors" in r.stdout
    q = cli("detect", FACES / "demo", "-o", tmp_path / "out", "-q")  # resumed: nothing to do, and quiet
    assert q.returncode == 0 and "img/s" not in q.stderr and "1 shard(s) already done" in q.stdout
