"""Issue 11, biometric data: gallery files private by default, foreign files untouched,
forged/corrupt contents refused with typed errors, atomic replace, deceptive names.

Real SQLite files in tmp_path; random unit vectors stand in for embeddings.
"""
from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgelite.errors import GalleryError, InputError, ModelMismatchError
from edgelite.face.gallery import FaceGallery, GalleryPermissionWarning, validate_name

MODEL = "test-model:0123"
ROOT = Path(__file__).resolve().parents[1]


def _unit(rng, n=1, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_new_gallery_files_and_folder_are_private_whatever_the_umask(tmp_path, rng, umask):
    folder = tmp_path / "new" / "edgelite"
    db = folder / "g.sqlite"
    old = os.umask(umask)
    try:
        with FaceGallery(db) as g:
            g.enroll("Ann", _unit(rng, 3), model_id=MODEL)
            # while open, the WAL companions exist: they must be private too
            companions = [p for p in (Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
            assert companions, "expected -wal/-shm files while the gallery is open"
            for p in [db, *companions]:
                assert _mode(p) == 0o600, f"{p.name} is {oct(_mode(p))}"
            g.remove("Ann")
            g.purge()
    finally:
        os.umask(old)
    assert _mode(folder) == 0o700
    assert _mode(folder.parent) == 0o700  # every folder we created
    assert _mode(db) == 0o600
    # nothing else was written next to it (temporary files)
    assert {p.name for p in folder.iterdir()} <= {"g.sqlite", "g.sqlite-wal", "g.sqlite-shm"}


def test_demo_default_folder_is_private(tmp_path, zoo_models):
    """face_unlock's default --db folder ($XDG_DATA_HOME/edgelite) is created 0700, the file 0600."""
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    photo = ROOT / "data" / "faces" / "demo" / "Andrew_Morgan.jpg"
    code = ("import os, runpy, sys; os.umask(0o022); sys.argv = ['face_unlock.py'] + sys.argv[1:]; "
            "runpy.run_path('demos/face_unlock.py', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code, "--enroll", "Andrew", "--images", str(photo), "--headless"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    db = tmp_path / "xdg" / "edgelite" / "unlock.sqlite"
    assert _mode(db.parent) == 0o700
    assert _mode(db) == 0o600


def test_exposed_existing_gallery_warns_once_naming_the_fix(tmp_path, rng):
    db = tmp_path / "g.sqlite"
    with FaceGallery(db) as g:
        g.enroll("Ann", _unit(rng), model_id=MODEL)
    os.chmod(db, 0o644)
    with pytest.warns(GalleryPermissionWarning, match="chmod 600"):
        FaceGallery(db).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second open of the same file stays quiet
        FaceGallery(db).close()


def test_private_gallery_does_not_warn(tmp_path, rng):
    db = tmp_path / "g.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with FaceGallery(db) as g:
            g.enroll("Ann", _unit(rng), model_id=MODEL)
        FaceGallery(db).close()


def test_foreign_sqlite_file_is_left_untouched(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE notes(x TEXT)")
        c.execute("INSERT INTO notes VALUES ('keep me')")
    c.close()
    before = db.read_bytes()
    with pytest.raises(GalleryError, match="not an edgelite face gallery"):
        FaceGallery(db)
    assert db.read_bytes() == before  # journal mode byte (offset 18/19) not switched to WAL
    assert not Path(f"{db}-wal").exists()
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    c.close()


def test_foreign_meta_table_is_left_untouched(tmp_path):
    db = tmp_path / "other.db"
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE meta(key TEXT, value TEXT)")
    c.execute("INSERT INTO meta VALUES ('format', 'something-else')")
    c.commit()
    c.close()
    before = db.read_bytes()
    with pytest.raises(GalleryError, match="not an edgelite face gallery"):
        FaceGallery(db)
    assert db.read_bytes() == before


def test_zero_length_file_is_refused_without_create(tmp_path):
    db = tmp_path / "empty.sqlite"
    db.touch()
    with pytest.raises(GalleryError, match="empty"):
        FaceGallery(db, create=False)
    assert db.stat().st_size == 0


@pytest.mark.parametrize("key,value", [("schema_version", "one"), ("dim", "x12"), ("dim", "-3"), ("dim", "1e99")])
def test_forged_meta_value_is_a_gallery_error(tmp_path, rng, key, value):
    db = tmp_path / "g.sqlite"
    with FaceGallery(db) as g:
        g.enroll("Ann", _unit(rng), model_id=MODEL)
    c = sqlite3.connect(db)
    c.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    c.commit()
    c.close()
    with pytest.raises(GalleryError, match=key):
        with FaceGallery(db) as g:
            g.identify(_unit(rng)[0], model_id=MODEL)


def test_nan_template_is_refused_on_write_and_on_read(tmp_path, rng):
    db = tmp_path / "g.sqlite"
    bad = _unit(rng)[0].copy()
    bad[3] = np.nan
    with FaceGallery(db) as g:
        with pytest.raises(InputError, match="NaN"):
            g.enroll("Eve", bad, model_id=MODEL)
        assert "Eve" not in g
        # a huge (finite) vector: its squared norm overflows; it must be stored as a unit vector, not zeros
        g.enroll("Big", np.full(16, 1e308), model_id=MODEL)
        big = g.embeddings("Big")
        assert np.all(np.isfinite(big)) and np.isclose(np.linalg.norm(big), 1.0, atol=1e-5)
        g.remove("Big")
        g.enroll("Ann", _unit(rng), model_id=MODEL)
    # forge a NaN template behind the gallery's back
    c = sqlite3.connect(db)
    c.execute("UPDATE templates SET embedding = ?", (bad.astype("<f4").tobytes(),))
    c.commit()
    c.close()
    with FaceGallery(db) as g:
        with pytest.raises(GalleryError, match="NaN"):
            g.identify(_unit(rng)[0], model_id=MODEL)
        with pytest.raises(GalleryError, match="NaN"):
            g.embeddings("Ann")
        assert any("NaN" in p for p in g.integrity_check())


def test_replace_is_one_transaction(tmp_path, rng):
    db = tmp_path / "g.sqlite"
    old = _unit(rng, 2)
    with FaceGallery(db) as g:
        g.enroll("Ann", old, model_id=MODEL)
        # a failing replace (wrong dimension: detected inside the transaction) keeps the old templates
        with pytest.raises(ModelMismatchError):
            g.enroll("Ann", _unit(rng, 3, d=32), model_id=MODEL, replace=True)
        np.testing.assert_allclose(g.embeddings("Ann"), old, atol=1e-6)
        new = _unit(rng, 3)
        g.enroll("Ann", new, model_id=MODEL, replace=True)
        np.testing.assert_allclose(g.embeddings("Ann"), new, atol=1e-6)


@pytest.mark.parametrize("name", [
    "Ann\u202eyrraH",  # right-to-left override: renders as "AnnHarry"-like text
    "Ann\u200b",  # zero-width space
    "An\u200dn",  # zero-width joiner
    "\u2066Ann\u2069",  # bidi isolate
    "Ann\ufeff",  # BOM / zero-width no-break space
    "Ann\u00ad",  # soft hyphen
    "Ann\udcff",  # lone surrogate: how Python decodes argv bytes that are not UTF-8
    "Ann\ue000",  # private use
])
def test_deceptive_names_are_refused(name):
    with pytest.raises(InputError):
        validate_name(name)


def test_ordinary_unicode_names_still_work():
    for name in ("José", "Åsa Öberg", "李小龍", "Zoë 🙂", "O'Brien-Smith"):
        assert validate_name(name) == name


def test_cli_enroll_with_non_utf8_name_is_a_typed_error(tmp_path, zoo_models):
    db = tmp_path / "g.sqlite"
    img = ROOT / "data" / "faces" / "demo" / "Andrew_Morgan.jpg"
    argv = [sys.executable, "-m", "edgelite.cli", "enroll", os.fsdecode(b"Ann\xff"), str(img), "--db", str(db)]
    r = subprocess.run([os.fsencode(a) for a in argv], capture_output=True, cwd=ROOT)
    assert r.returncode == 2, r.stderr.decode(errors="replace")
    assert b"Traceback" not in r.stderr
    assert b"person name" in r.stderr


def test_demo_enroll_from_non_utf8_file_name(tmp_path, zoo_models):
    """A photo named bad\\xffname.jpg enrols; its name is stored as readable text."""
    db = tmp_path / "g.sqlite"
    src = ROOT / "data" / "faces" / "demo" / "Andrew_Morgan.jpg"
    photo = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/bad\xffname.jpg"))
    photo.write_bytes(src.read_bytes())
    r = subprocess.run([sys.executable, "demos/face_unlock.py", "--enroll", "Andrew", "--images", str(photo),
                        "--db", str(db), "--headless"], capture_output=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert b"Traceback" not in r.stderr
    c = sqlite3.connect(db)
    (source,) = c.execute("SELECT source FROM templates").fetchone()
    c.close()
    assert "bad\\xffname.jpg" in source


def test_gallery_refuses_surrogates_in_source(tmp_path, rng):
    with FaceGallery(tmp_path / "g.sqlite") as g:
        with pytest.raises(InputError, match="surrogate"):
            g.enroll("Ann", _unit(rng), model_id=MODEL, source="bad\udcffname.jpg")


def test_purge_leaves_no_copy_of_a_removed_person(tmp_path, rng):
    db = tmp_path / "g.sqlite"
    marker = "Zelda-Unique-Marker"
    with FaceGallery(db) as g:
        g.enroll(marker, _unit(rng, 2), model_id=MODEL, source="zelda-photo-marker.jpg")
        g.enroll("Ann", _unit(rng), model_id=MODEL)
        g.remove(marker)
        g.purge()
        files = [p for p in tmp_path.iterdir() if p.name.startswith("g.sqlite")]
        blob = b"".join(p.read_bytes() for p in files)
        assert marker.encode() not in blob and b"zelda-photo-marker" not in blob
        assert g.people()[0].name == "Ann"
