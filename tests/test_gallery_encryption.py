"""Optional encryption at rest of gallery templates (issue 11, optional bullet)."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

pytest.importorskip("cryptography")

from edgelite.errors import GalleryError  # noqa: E402
from edgelite.face.gallery import ENV_KEY_FILE, FaceGallery, generate_key  # noqa: E402

MODEL = "test-model:0123"


def _unit(rng, n=1, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_encrypted_round_trip_and_nothing_in_clear(tmp_path):
    rng = np.random.default_rng(3)
    db, key = tmp_path / "g.sqlite", generate_key()
    ann, bob = _unit(rng, 2), _unit(rng)
    with FaceGallery(db, key=key) as g:
        assert g.encrypted
        g.enroll("Ann", ann, model_id=MODEL, source="ann-holiday-photo.jpg")
        g.enroll("Bob", bob, model_id=MODEL)
        assert g.identify(ann[1], model_id=MODEL)[0].name == "Ann"
        np.testing.assert_allclose(g.embeddings("Ann"), ann, atol=1e-6)
        assert g.integrity_check() == []
        g.purge()  # everything in the main file
    raw = db.read_bytes()
    assert ann[0].astype("<f4").tobytes()[:16] not in raw and b"ann-holiday-photo" not in raw
    with FaceGallery(db, key=key) as g:  # reopen with the key
        assert g.verify(bob[0], "Bob", model_id=MODEL).accepted


def test_key_is_required_and_checked(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    db, key = tmp_path / "g.sqlite", generate_key()
    with FaceGallery(db, key=key) as g:
        g.enroll("Ann", _unit(rng), model_id=MODEL)
    with pytest.raises(GalleryError, match="encrypted; give its key"):
        FaceGallery(db)
    with pytest.raises(GalleryError, match="wrong key"):
        FaceGallery(db, key=generate_key())
    with pytest.raises(GalleryError, match="32 bytes"):
        FaceGallery(db, key=b"short")
    keyfile = tmp_path / "gallery.key"
    keyfile.write_bytes(key)
    monkeypatch.setenv(ENV_KEY_FILE, str(keyfile))
    with FaceGallery(db) as g:  # key from the environment
        assert g.encrypted and len(g) == 1


def test_template_moved_to_another_person_does_not_decrypt(tmp_path):
    rng = np.random.default_rng(5)
    db, key = tmp_path / "g.sqlite", generate_key()
    with FaceGallery(db, key=key) as g:
        g.enroll("Ann", _unit(rng), model_id=MODEL)
        g.enroll("Eve", _unit(rng), model_id=MODEL)
    c = sqlite3.connect(db)
    # an attacker with write access moves Eve's sealed template onto Ann
    c.execute("UPDATE templates SET person_id = (SELECT id FROM people WHERE name = 'Ann') "
              "WHERE person_id = (SELECT id FROM people WHERE name = 'Eve')")
    c.commit()
    c.close()
    with FaceGallery(db, key=key) as g:
        with pytest.raises(GalleryError, match="does not decrypt"):
            g.embeddings("Ann")
        assert any("does not decrypt" in p for p in g.integrity_check())


def test_key_for_a_plain_gallery_with_templates_is_refused(tmp_path):
    rng = np.random.default_rng(6)
    db = tmp_path / "g.sqlite"
    with FaceGallery(db) as g:
        g.enroll("Ann", _unit(rng), model_id=MODEL)
        assert not g.encrypted
    with pytest.raises(GalleryError, match="unencrypted template"):
        FaceGallery(db, key=generate_key())
