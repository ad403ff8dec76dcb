"""FaceGallery unit tests and the SIGKILL crash-safety test.

The embeddings here are random unit vectors: these tests check the gallery's
mechanics (storage, matching arithmetic, validation, durability), not face
recognition accuracy. Accuracy on real faces is measured with the real embedder
in a separate test.
"""
from __future__ import annotations

import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgelite.errors import GalleryError, InputError, ModelMismatchError
from edgelite.face.gallery import DEFAULT_THRESHOLD, FaceGallery, validate_name

ORL = Path(__file__).resolve().parents[1] / "data" / "faces" / "orl"
MODEL = "sface-2021dec-int8"
D = 128


def unit(rng, *shape):
    x = rng.normal(size=shape + (D,)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "gallery.db"


# ----------------------------------------------------------------------------- basics


def test_enroll_orl_subjects_and_identify(db, rng):
    names = sorted(p.name for p in ORL.iterdir() if p.is_dir())
    assert len(names) == 40
    centres = unit(rng, len(names))
    with FaceGallery(db) as g:
        assert g.model_id is None and len(g) == 0
        for name, c in zip(names, centres):
            noisy = c + 0.2 * unit(rng, 3)
            ids = g.enroll(name, noisy, model_id=MODEL, source=f"orl/{name}")
            assert len(ids) == 3 and all(isinstance(i, int) for i in ids)
        assert len(g) == 40 and g.model_id == MODEL and g.dim == D
        assert "s7" in g and "s41" not in g and 7 not in g
        people = g.people()
        assert [p.name for p in people] == sorted(names)
        assert all(p.templates == 3 for p in people)
        queries = centres + 0.2 * unit(rng, len(names))
        results = g.identify(queries, model_id=MODEL)
        assert [r[0].name for r in results] == names
        assert all(r[0].is_known and r[0].score > 0.8 for r in results)
        assert g.integrity_check() == []


def test_unknown_is_rejected(db, rng):
    with FaceGallery(db, threshold=0.5) as g:
        g.enroll("Ann", unit(rng, 2), model_id=MODEL)
        [m] = g.identify(unit(rng), model_id=MODEL)
        assert m.name is None and m.person_id is None and not m.is_known
        assert -1.0 <= m.score < 0.5  # best score is still reported
        # The same query with a permissive threshold names the nearest person.
        assert g.identify(unit(rng), model_id=MODEL, threshold=-1.0)[0].name == "Ann"


def test_empty_gallery_identifies_nobody(db, rng):
    with FaceGallery(db) as g:
        [m] = g.identify(unit(rng), model_id=MODEL)
        assert (m.name, m.score, m.is_known) == (None, -1.0, False)


def test_top_k_ordering_and_threshold_filter(db):
    e = np.eye(D, dtype=np.float32)
    with FaceGallery(db) as g:
        g.enroll("A", e[0], model_id=MODEL)
        g.enroll("B", e[1], model_id=MODEL)
        g.enroll("C", e[2], model_id=MODEL)
        g.enroll("D", e[3], model_id=MODEL)
        q = 0.8 * e[0] + 0.5 * e[1] + 0.3 * e[2] + 0.1 * e[3]
        qn = q / np.linalg.norm(q)
        ms = g.identify(q, model_id=MODEL, top_k=3, threshold=0.0)
        assert [m.name for m in ms] == ["A", "B", "C"]
        np.testing.assert_allclose([m.score for m in ms], qn[:3], rtol=1e-5)
        assert [m.name for m in g.identify(q, model_id=MODEL, top_k=10, threshold=0.4)] == ["A", "B"]
        assert len(g.identify(q, model_id=MODEL, top_k=10, threshold=-1)) == 4
        with pytest.raises(InputError):
            g.identify(q, model_id=MODEL, top_k=0)


def test_score_is_max_over_templates(db, rng):
    t = unit(rng, 3)
    with FaceGallery(db) as g:
        g.enroll("Ann", t, model_id=MODEL)
        g.enroll("Bob", unit(rng, 3), model_id=MODEL)
        for i in range(3):
            [m] = g.identify(t[i], model_id=MODEL)
            assert m.name == "Ann" and m.score == pytest.approx(1.0, abs=1e-5)
        v = g.verify(t[1], "Ann", model_id=MODEL)
        assert v.accepted and v.score == pytest.approx(1.0, abs=1e-5) and v.threshold == DEFAULT_THRESHOLD
        assert not g.verify(t[1], "Bob", model_id=MODEL).accepted
        with pytest.raises(GalleryError, match="no person named 'Cy'"):
            g.verify(t[0], "Cy", model_id=MODEL)
        with pytest.raises(InputError):
            g.verify(t[:2], "Ann", model_id=MODEL)


def test_batch_identify_shape(db, rng):
    with FaceGallery(db) as g:
        g.enroll("Ann", unit(rng), model_id=MODEL)
        out = g.identify(unit(rng, 5), model_id=MODEL, top_k=2, threshold=-1)
        assert len(out) == 5 and all(isinstance(r, list) and len(r) == 1 for r in out)


def test_embeddings_are_normalised_and_validated(db, rng):
    with FaceGallery(db) as g:
        raw = 7.5 * unit(rng, 2)
        g.enroll("Ann", raw.astype(np.float64), model_id=MODEL)
        stored = g.embeddings("Ann")
        assert stored.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(stored, raw / 7.5, atol=1e-6)
        bad = {
            "zero": np.zeros(D, np.float32),
            "nan": np.full(D, np.nan, np.float32),
            "int": np.ones(D, np.int32),
            "3d": np.ones((1, 2, D), np.float32),
            "empty": np.zeros((0, D), np.float32),
        }
        for label, emb in bad.items():
            with pytest.raises(InputError):
                g.enroll("Bob", emb, model_id=MODEL)
        assert "Bob" not in g  # nothing half-written


def test_model_and_dimension_mismatch(db, rng):
    with FaceGallery(db) as g:
        g.enroll("Ann", unit(rng), model_id=MODEL)
        with pytest.raises(ModelMismatchError, match=rf"{MODEL}.*arcface-r100"):
            g.enroll("Bob", unit(rng), model_id="arcface-r100")
        with pytest.raises(ModelMismatchError, match="arcface-r100"):
            g.identify(unit(rng), model_id="arcface-r100")
        with pytest.raises(ModelMismatchError, match="512-d"):
            g.enroll("Bob", np.ones(512, np.float32), model_id=MODEL)
        with pytest.raises(ModelMismatchError):
            g.identify(np.ones(64, np.float32), model_id=MODEL)
        assert "Bob" not in g
    with pytest.raises(ModelMismatchError, match="other-model"):
        FaceGallery(db, model_id="other-model")
    with FaceGallery(db, model_id=MODEL) as g:
        assert len(g) == 1


def test_constructor_binds_model(db, rng):
    with FaceGallery(db, model_id=MODEL) as g:
        assert g.model_id == MODEL
        with pytest.raises(ModelMismatchError):
            g.enroll("Ann", unit(rng), model_id="x")


@pytest.mark.parametrize(
    "name",
    ["", "   ", "a" * 129, "line\nbreak", "nul\x00", "esc\x1b[31m", "tab\tname", " lead", "trail ", "sep\u2028", 42, None],
)
def test_bad_names_are_refused(db, rng, name):
    with FaceGallery(db) as g:
        with pytest.raises(InputError):
            g.enroll(name, unit(rng), model_id=MODEL)
        assert len(g) == 0


def test_names_are_data_not_paths(db, rng, tmp_path):
    weird = ["../../etc/passwd", "C:\\Windows\\system32", "Robert'); DROP TABLE people;--", "Zoë 🙂", "a" * 128, "/", "."]
    before = set(os.listdir(tmp_path))
    with FaceGallery(db) as g:
        for n in weird:
            assert validate_name(n) == n
            g.enroll(n, unit(rng), model_id=MODEL)
        assert sorted(p.name for p in g.people()) == sorted(weird)
        assert all(n in g for n in weird)
    after = set(os.listdir(tmp_path))
    assert after - before <= {"gallery.db", "gallery.db-wal", "gallery.db-shm"}
    with FaceGallery(db) as g:
        assert sorted(p.name for p in g.people()) == sorted(weird)


def test_names_are_exact_and_case_sensitive(db, rng):
    with FaceGallery(db) as g:
        g.enroll("Ann", unit(rng), model_id=MODEL)
        g.enroll("ann", unit(rng), model_id=MODEL)
        assert len(g) == 2
        g.enroll("Ann", unit(rng, 2), model_id=MODEL)  # same name: more templates
        assert {p.name: p.templates for p in g.people()} == {"Ann": 3, "ann": 1}


def test_rename_and_remove(db, rng):
    with FaceGallery(db) as g:
        a = unit(rng, 2)
        g.enroll("Ann", a, model_id=MODEL)
        g.enroll("Bob", unit(rng), model_id=MODEL)
        g.rename("Ann", "Anna")
        assert "Ann" not in g and "Anna" in g
        assert g.identify(a[0], model_id=MODEL)[0].name == "Anna"  # cache refreshed
        g.rename("Anna", "Anna")  # no-op
        with pytest.raises(GalleryError, match="already enrolled"):
            g.rename("Anna", "Bob")
        with pytest.raises(GalleryError, match="no person named 'Zed'"):
            g.rename("Zed", "Zoe")
        assert g.remove("Anna") == 2
        assert "Anna" not in g and len(g) == 1
        assert g.identify(a[0], model_id=MODEL)[0].name is None
        with pytest.raises(GalleryError):
            g.remove("Anna")
        # ON DELETE CASCADE removed the templates too.
        (n,) = g._conn.execute("SELECT COUNT(*) FROM templates").fetchone()
        assert n == 1
        assert g.integrity_check() == []


def test_reopen_persists(db, rng):
    a, b = unit(rng, 3), unit(rng, 2)
    with FaceGallery(db, threshold=0.5) as g:
        g.enroll("Ann", a, model_id=MODEL, source="cam0")
        g.enroll("Bob", b, model_id=MODEL)
        first = g.identify(a[0], model_id=MODEL)
    with FaceGallery(db, create=False) as g:
        assert g.threshold == DEFAULT_THRESHOLD  # the threshold is a per-object setting
        assert {p.name: p.templates for p in g.people()} == {"Ann": 3, "Bob": 2}
        np.testing.assert_allclose(g.embeddings("Ann"), a, atol=1e-7)  # re-normalised: 1 ulp
        assert g.identify(a[0], model_id=MODEL)[0].name == first[0].name
        assert g.model_id == MODEL and g.dim == D


def test_other_connection_writes_are_seen(db, rng):
    a = unit(rng)
    with FaceGallery(db) as g1, FaceGallery(db) as g2:
        g1.enroll("Ann", unit(rng), model_id=MODEL)
        assert g2.identify(a, model_id=MODEL, threshold=-1)[0].name == "Ann"  # builds g2's cache
        g1.enroll("Bob", a, model_id=MODEL)
        assert g2.identify(a, model_id=MODEL)[0].name == "Bob"  # data_version invalidated it


def test_usable_from_another_thread(db, rng):
    a = unit(rng)
    g = FaceGallery(db)
    g.enroll("Ann", a, model_id=MODEL)
    out = []
    t = threading.Thread(target=lambda: out.append(g.identify(a, model_id=MODEL)[0].name))
    t.start()
    t.join()
    assert out == ["Ann"]
    g.close()
    g.close()  # idempotent
    with pytest.raises(GalleryError, match="closed"):
        len(g)


def test_durability_settings(db, rng):
    with FaceGallery(db) as g:
        g.enroll("Ann", unit(rng), model_id=MODEL)
        assert g._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert g._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert g._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_threshold_validation(db):
    with pytest.raises(InputError):
        FaceGallery(db, threshold=1.5)
    with FaceGallery(db) as g:
        assert g.threshold == DEFAULT_THRESHOLD == 0.363
        g.threshold = 0.6
        assert g.threshold == 0.6
        with pytest.raises(InputError):
            g.threshold = "high"


def test_refuses_foreign_and_missing_files(tmp_path):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(GalleryError, match="not an edgelite face gallery"):
        FaceGallery(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryError, match="cannot open gallery"):
        FaceGallery(junk)
    with pytest.raises(GalleryError, match="does not exist"):
        FaceGallery(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(GalleryError, match="directory"):
        FaceGallery(tmp_path)


def test_refuses_newer_schema(db, rng):
    with FaceGallery(db) as g:
        g.enroll("Ann", unit(rng), model_id=MODEL)
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(GalleryError, match="schema version 99"):
        FaceGallery(db)


def test_integrity_check_reports_damage(db, rng):
    with FaceGallery(db) as g:
        g.enroll("Ann", unit(rng, 2), model_id=MODEL)
        g.enroll("Bob", unit(rng), model_id=MODEL)
    con = sqlite3.connect(db)
    con.execute("UPDATE templates SET embedding = X'00010203' WHERE id = 1")
    con.execute("UPDATE templates SET embedding = ? WHERE id = 2", (np.full(D, 3, "<f4").tobytes(),))
    con.execute("INSERT INTO people(name, created) VALUES ('Ghost', 'now')")
    con.execute("PRAGMA foreign_keys = OFF")
    con.execute(
        "INSERT INTO templates(person_id, model_id, dim, embedding, created) VALUES (999, ?, ?, ?, 'now')",
        (MODEL, D, unit(rng).astype("<f4").tobytes()),
    )
    con.commit()
    con.close()
    with FaceGallery(db) as g:
        problems = g.integrity_check()
        text = "\n".join(problems)
        assert "template 1: embedding has 4 bytes" in text
        assert "template 2: embedding is not unit-norm" in text
        assert "'Ghost'" in text and "no templates" in text
        assert "foreign key" in text
        with pytest.raises(GalleryError, match="corrupt"):
            g.identify(unit(rng), model_id=MODEL)


def test_memory_gallery(rng):
    with FaceGallery(":memory:") as g:
        g.enroll("Ann", unit(rng), model_id=MODEL)
        assert len(g) == 1


# ----------------------------------------------------------------------------- crash safety

_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from edgelite.face.gallery import FaceGallery

    path, start, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    gallery = FaceGallery(path, model_id="crash-test")
    print("ready", flush=True)
    i = start
    while True:
        n = 1 + i % 4  # template count is a function of the index: lets the parent check atomicity
        name = f"p{i:07d}"
        gallery.enroll(name, rng.normal(size=(n, 128)).astype(np.float32), model_id="crash-test",
                       source=f"seed {seed}")
        # Only after enroll() returned, i.e. after COMMIT (and its fsync) completed.
        print(f"committed {name} {n}", flush=True)
        i += 1
    """
)
_LINE = re.compile(r"^committed (p\d{7}) (\d+)$")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_during_enrolment_loses_nothing_committed(tmp_path):
    script = tmp_path / "enrol_forever.py"
    script.write_text(_CHILD)
    db = tmp_path / "crash.db"
    rng = np.random.default_rng(99)
    committed: dict[str, int] = {}
    rounds, unreported, start = 12, 0, 0
    for rnd in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db), str(start), str(rnd)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready and proc.stdout.readline().strip() == "ready", "child did not start"
            time.sleep(float(rng.uniform(0.05, 0.5)))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            tail = proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        for line in tail.splitlines(keepends=True):
            m = _LINE.match(line.rstrip("\n"))
            if m and line.endswith("\n"):  # a line cut by the kill does not count
                committed[m.group(1)] = int(m.group(2))
        with FaceGallery(db, create=False) as g:
            assert g.integrity_check() == [], f"round {rnd}"
            present = {p.name: p.templates for p in g.people()}
        missing = {n: c for n, c in committed.items() if present.get(n) != c}
        assert not missing, f"round {rnd}: reported committed but missing/incomplete: {missing}"
        # Atomicity: whatever is present is complete (no person with a partial enrolment).
        partial = {n: c for n, c in present.items() if c != 1 + int(n[1:]) % 4}
        assert not partial, f"round {rnd}: partial enrolments {partial}"
        unreported += len(set(present) - set(committed))
        committed.update({n: c for n, c in present.items() if n not in committed})
        start = max((int(n[1:]) for n in present), default=-1) + 1
    total_templates = sum(committed.values())
    print(
        f"\ncrash test: {rounds} SIGKILL rounds, {len(committed)} people / {total_templates} templates "
        f"committed, {unreported} committed-but-unreported (killed between COMMIT and print), 0 lost"
    )
    assert len(committed) >= rounds  # the child made progress in (nearly) every round


def test_best_matches_equals_identify_top1(tmp_path):
    """The per-frame call gives identify(top_k=1)'s answer as (name, score) tuples."""
    rng = np.random.default_rng(11)
    g = FaceGallery(tmp_path / "g.db", threshold=0.9)
    assert g.best_matches(rng.normal(size=(2, 8)), model_id="m") == [(None, 0.0), (None, 0.0)]
    people = {f"p{i}": rng.normal(size=(3, 8)) for i in range(5)}
    for name, e in people.items():
        g.enroll(name, e, model_id="m")
    q = np.concatenate([people["p2"][:1] + 0.05 * rng.normal(size=(1, 8)), rng.normal(size=(6, 8))])
    got = g.best_matches(q, model_id="m")
    want = [(r[0].name, r[0].score) for r in g.identify(q, model_id="m", top_k=1)]
    assert got == want and got[0][0] == "p2" and any(n is None for n, _ in got)
    with pytest.raises(ModelMismatchError):
        g.best_matches(q, model_id="other")


def test_query_normalisation_fast_path_gives_the_checked_paths_bits():
    """Rows that cannot fail the checks skip them; the result has the same bits as the
    checked path (taken here for a whole batch by one very small but valid row)."""
    from edgelite.face.gallery import _prepare_embeddings

    rng = np.random.default_rng(8)
    rows = np.concatenate([rng.normal(0, 1, (6, 128)), rng.normal(0, 1e30, (2, 128)),
                           rng.normal(0, 1e-4, (2, 128))]).astype(np.float32)
    tiny = np.full((1, 128), 5e-7, np.float32)  # largest magnitude < 1e-6, norm 5.7e-6: valid, checked path
    for dtype in (np.float32, np.float64):
        fast = _prepare_embeddings(rows.astype(dtype))
        checked = _prepare_embeddings(np.concatenate([rows, tiny]).astype(dtype))
        assert fast.dtype == np.float32 and np.array_equal(fast, checked[:-1])
        np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(InputError, match="zero norm"):
        _prepare_embeddings(np.full((1, 128), 1e-9, np.float32))
    with pytest.raises(InputError, match="NaN or infinity"):
        _prepare_embeddings(np.r_[rows[0, :-1], np.inf][None])
