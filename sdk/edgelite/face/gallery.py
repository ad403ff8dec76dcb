"""FaceGallery: a durable SQLite store of enrolled face embeddings, with 1:N and 1:1 matching.

File format (stdlib ``sqlite3``, one file plus SQLite's ``-wal``/``-shm`` companions):

* ``meta(key, value)``: ``format`` (``edgelite-face-gallery``), ``schema_version``,
  ``created``, and once bound ``model_id`` and ``dim``.
* ``people(id, name UNIQUE, created)``.
* ``templates(id, person_id -> people ON DELETE CASCADE, model_id, dim, embedding
  BLOB (little-endian float32, L2-normalised), created, source)``.

Design choices:

* **Names are data, never paths.** ``"../../etc/passwd"`` is stored verbatim as a
  name; nothing here builds a file path from a name. Names are validated (1-128
  characters, no control characters, no leading/trailing whitespace) and compared
  exactly (case-sensitive, no Unicode normalisation).
* **One embedder per gallery.** Cosine scores between embeddings of different
  models are meaningless, so the gallery is bound to a ``model_id`` (by the
  constructor or the first enrolment) and refuses others with
  :class:`~edgelite.errors.ModelMismatchError`, naming both ids.
* **Durability: WAL journal + ``synchronous=FULL``.** An enrolment is a rare,
  user-visible event (someone stood in front of the camera), so each commit pays
  for an fsync of the WAL: once :meth:`FaceGallery.enroll` returns, the templates
  survive a crash *and* a power cut. With ``NORMAL``, WAL commits are only
  synced at checkpoints, so a power cut (not a process crash) may lose the last
  enrolments. WAL also lets other processes read while one writes.
* **Matching is one matmul.** Templates are cached as a ``(T, D)`` float32 matrix,
  grouped by person; the cache is dropped on our own writes and when SQLite's
  ``PRAGMA data_version`` shows another connection committed.
* **Score per person = max cosine over that person's templates.** The max
  rewards the single best-matching enrolment photo, so adding varied photos (with
  and without glasses, different light) can only help recall. The alternative,
  the cosine to the mean of the templates, is smoother against one bad
  enrolment photo but penalises people enrolled under varied conditions.
* **Private by default.** Face templates are personal data. The database file is
  created ``0600`` (owner read/write only) and a missing parent folder ``0700``,
  whatever the process umask; SQLite gives its ``-wal``/``-shm`` companions the
  mode of the database file, and temporary tables and indices are kept in memory
  (``PRAGMA temp_store = MEMORY``), so no other file is written. Opening an
  existing gallery that is group- or world-readable emits one
  :class:`GalleryPermissionWarning` per path naming the fix (``chmod 600``); it is
  not refused, because the file may be shared on purpose.
* **Optional encryption at rest** (``key=``, or ``$EDGELITE_GALLERY_KEY_FILE`` /
  ``$EDGELITE_GALLERY_KEY``; needs the ``crypto`` extra, the ``cryptography``
  package): each template and its ``source`` text are sealed with AES-256-GCM
  under a 32-byte key, with a fresh 96-bit nonce per value and the person id,
  model id and dimension as associated data (a template moved to another person
  fails to decrypt). Names, creation times and model ids stay in clear: lookups by
  name need them. Threat model: protects templates in a copied file, a backup or a
  lost SD card when the key is kept elsewhere (another device, a separate mount, a
  secret store); it does not protect against anyone who can read the key, i.e.
  root or the service user on a running device. See docs/face.md.
* **Foreign files stay untouched.** An SQLite file that is not a gallery is
  recognised by a read-only look at its schema *before* anything is written (the
  switch to WAL journaling is a write), and refused.
* **Threads.** One connection per ``FaceGallery``, opened with
  ``check_same_thread=False`` and every use serialised by an internal lock:
  Python's default would make a gallery opened on one thread unusable on another
  (camera thread + web handler), and the lock keeps our multi-statement
  transactions and the cache consistent. For processes, open one ``FaceGallery``
  each; writers wait up to ``busy_timeout`` for the write lock.
"""
from __future__ import annotations

import math
import os
import sqlite3
import stat
import threading
import unicodedata
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import GalleryError, InputError, ModelMismatchError
from .types import Match, PersonInfo, VerifyResult

#: Gallery file schema version written by this code.
SCHEMA_VERSION: int = 1
#: ``meta.format`` value identifying our files (refuse other SQLite databases).
FORMAT_TAG: str = "edgelite-face-gallery"
#: Longest accepted person name, in characters.
MAX_NAME_LENGTH: int = 128
#: Default cosine-similarity acceptance threshold, chosen from data: with the zoo's
#: int8 SFace on ORL subjects s21..s40 (never used for calibration; 900 genuine and
#: 19,000 impostor pairs, faces detected and aligned by the int8 pipeline) 0.363 is
#: the false-accept-rate 1e-4 operating point (2 of 19,000 impostor pairs accepted)
#: and accepts all 900 genuine pairs; FAR 1e-3 would be 0.335. It coincides with
#: OpenCV's published SFace threshold (tuned on LFW). A gallery is a security
#: decision: raise it for fewer false accepts, lower it for fewer rejections; pass
#: ``threshold=`` to the constructor or per call. See docs/face.md.
DEFAULT_THRESHOLD: float = 0.363

_MAX_MODEL_ID_LENGTH = 256
_MAX_SOURCE_LENGTH = 4096
_MIN_NORM = 1e-6

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE people (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE templates (
    id        INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    model_id  TEXT NOT NULL,
    dim       INTEGER NOT NULL CHECK (dim > 0),
    embedding BLOB NOT NULL,
    created   TEXT NOT NULL,
    source    TEXT
);
CREATE INDEX templates_person ON templates(person_id);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: Unicode categories refused in names: Cc = C0/C1 controls (newline, NUL, ESC...);
#: Cf = format characters (bidi overrides such as U+202E, zero-width space/joiners,
#: soft hyphen: they make a name render as something else); Cs = lone surrogates
#: (what Python makes of bytes that are not UTF-8, e.g. a name from ``argv``);
#: Co/Cn = private-use and unassigned code points (render unpredictably);
#: Zl/Zp = line/paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

#: Mode bits of a gallery file and of a folder created for it.
FILE_MODE: int = 0o600
DIR_MODE: int = 0o700


class GalleryPermissionWarning(UserWarning):
    """An existing gallery file can be read by other users of the machine."""


_warned_paths: set[str] = set()


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in text)


def _describe_refused(text: str) -> str:
    bad = sorted({f"U+{ord(ch):04X} ({unicodedata.category(ch)})" for ch in text
                  if unicodedata.category(ch) in _REFUSED_CATEGORIES})
    return ", ".join(bad[:5])


def _ensure_private_dir(folder: Path) -> None:
    """Create ``folder`` (and missing parents) ``0700`` regardless of the umask."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask; chmod is not


def _create_private_file(path: Path) -> bool:
    """Create an empty ``0600`` file if none exists; True when we created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have removed bits we want; never adds any
    finally:
        os.close(fd)
    return True


def _warn_if_exposed(path: Path) -> None:
    key = str(path.resolve())
    if key in _warned_paths:
        return
    exposed = []
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = p.stat().st_mode
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            exposed.append(f"{p.name} ({stat.filemode(mode)})")
    if exposed:
        _warned_paths.add(key)
        warnings.warn(
            f"face gallery {str(path)!r} holds biometric templates but is readable or writable by other "
            f"users: {', '.join(exposed)}. Fix: chmod 600 {str(path)!r}* (and chmod 700 its folder)",
            GalleryPermissionWarning,
            stacklevel=4,
        )


#: Environment variables read when ``FaceGallery(key=None)``: a file holding the key
#: (32 raw bytes, or its base64 text), or the base64 key itself.
ENV_KEY_FILE = "EDGELITE_GALLERY_KEY_FILE"
ENV_KEY = "EDGELITE_GALLERY_KEY"
_ENC_SCHEME = "aes-256-gcm"
_NONCE = 12
_TAG = 16
_KEY_CHECK = b"edgelite-face-gallery-key-check"


def generate_key() -> bytes:
    """A new random 32-byte gallery key (store it away from the gallery; see docs/face.md)."""
    return os.urandom(32)


def _parse_key(raw: bytes, where: str) -> bytes:
    import base64
    import binascii

    raw = raw.strip() if len(raw) != 32 else raw
    if len(raw) == 32:
        return bytes(raw)
    try:
        key = base64.b64decode(raw, altchars=b"-_" if (b"-" in raw or b"_" in raw) else None, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise GalleryError(f"{where}: a gallery key must be 32 bytes (raw, or base64 of 32 bytes); "
                           "make one with edgelite.face.gallery.generate_key()")
    return key


def load_key(key: bytes | str | os.PathLike | None = None) -> bytes | None:
    """Resolve a gallery key: ``bytes`` (raw 32 or base64), a path to a key file, or the environment.

    With ``None``, ``$EDGELITE_GALLERY_KEY_FILE`` then ``$EDGELITE_GALLERY_KEY`` are
    read; ``None`` is returned when neither is set (no encryption).

    Raises:
        GalleryError: the key is not 32 bytes, or the key file cannot be read.
    """
    if isinstance(key, (bytes, bytearray)):
        return _parse_key(bytes(key), "key")
    if isinstance(key, (str, os.PathLike)):
        path = os.fspath(key)
    elif key is None:
        path = os.environ.get(ENV_KEY_FILE) or None
        if path is None:
            env = os.environ.get(ENV_KEY)
            return None if not env else _parse_key(env.encode(), f"${ENV_KEY}")
    else:
        raise InputError(f"key must be bytes, a key file path or None, got {type(key).__name__}")
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError as exc:
        raise GalleryError(f"cannot read the gallery key file {path!r}: {exc.strerror or exc}") from None
    return _parse_key(data, f"key file {path!r}")


class _Sealer:
    """AES-256-GCM sealing of template blobs and source texts (``cryptography``)."""

    def __init__(self, key: bytes) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
        except ImportError:
            raise GalleryError("gallery encryption needs the 'cryptography' package: "
                               "pip install 'edgelite[crypto]'") from None
        self._aead = AESGCM(key)

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes | None:
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415

        if len(blob) < _NONCE + _TAG:
            return None
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag:
            return None


def _template_aad(person_id: int, model_id: str, dim: int) -> bytes:
    return f"edgelite-template\x00{person_id}\x00{model_id}\x00{dim}".encode()


def validate_name(name: Any) -> str:
    """Check a person name and return it unchanged.

    Rules: a ``str`` of 1-128 characters, no control characters (newlines, NUL,
    escape sequences would corrupt logs and UIs), no leading/trailing whitespace
    (``"Ann"`` and ``"Ann "`` would look identical). Anything else — slashes,
    dots, quotes, emoji — is just data.

    Raises:
        InputError: the name breaks a rule (the message says which).
    """
    if not isinstance(name, str):
        raise InputError(f"person name must be a str, got {type(name).__name__}: {name!r}")
    if not name or not name.strip():
        raise InputError(f"person name must not be empty or blank, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(f"person name is {len(name)} characters; the limit is {MAX_NAME_LENGTH}")
    if _has_control(name):
        raise InputError(
            f"person name contains control, format (bidi override, zero-width), surrogate (not UTF-8) "
            f"or unassigned characters: {name!r} [{_describe_refused(name)}]; names must render as what they are"
        )
    if name != name.strip():
        raise InputError(f"person name has leading/trailing whitespace: {name!r}; strip it first")
    return name


_VALID_MODEL_IDS: set[str] = set()  # the same id arrives with every frame: check it once


def _validate_model_id(model_id: Any) -> str:
    if type(model_id) is str and model_id in _VALID_MODEL_IDS:
        return model_id
    if not isinstance(model_id, str) or not model_id.strip():
        raise InputError(f"model_id must be a non-empty str naming the embedder, got {model_id!r}")
    if len(model_id) > _MAX_MODEL_ID_LENGTH or _has_control(model_id):
        raise InputError(f"model_id must be <= {_MAX_MODEL_ID_LENGTH} printable characters, got {model_id!r}")
    if type(model_id) is str and len(_VALID_MODEL_IDS) < 256:
        _VALID_MODEL_IDS.add(model_id)
    return model_id


def _validate_threshold(threshold: Any) -> float:
    try:
        thr = float(threshold)
    except (TypeError, ValueError) as exc:
        raise InputError(f"threshold must be a number in [-1, 1], got {threshold!r}") from exc
    if not (-1.0 <= thr <= 1.0):
        raise InputError(f"threshold is a cosine similarity and must be in [-1, 1], got {thr!r}")
    return thr


def _prepare_embeddings(embeddings: Any, what: str = "embeddings") -> np.ndarray:
    """Validate ``(D,)`` / ``(N, D)`` float embeddings; return ``(N, D)`` float32, L2-normalised.

    Normalisation rule: every vector is divided by its L2 norm. Cosine similarity is
    invariant to scale, so this changes no score; it lets callers pass raw model
    outputs. Zero-norm (< 1e-6) and non-finite vectors are refused.
    """
    arr = np.asarray(embeddings)
    if arr.dtype.kind != "f":
        raise InputError(f"{what} must be a float array (D,) or (N, D), got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{what} must have shape (D,) or (N, D) with N, D >= 1, got {np.shape(embeddings)}")
    x = arr.astype(np.float64)
    scale = np.abs(x).max(axis=1)  # NaN or inf in a row makes its max NaN or inf
    if not math.isfinite(scale.max()):
        bad = np.flatnonzero(~np.isfinite(scale)).tolist()
        raise InputError(f"{what} rows {bad} contain NaN or infinity")
    # Scale by the largest magnitude first: the squared norm of a row like
    # [1e308, 1e308] overflows to inf, and x / inf would store a zero row. Each row's
    # largest entry is then ±1, so its norm ny is in [1, √D] and the result is finite.
    small = scale.min() < _MIN_NORM  # only such a row can have a norm below _MIN_NORM
    y = x / (np.where(scale > 0, scale, 1.0) if small else scale)[:, None]
    ny = np.sqrt(np.add.reduce(y * y, axis=1))  # np.linalg.norm(y, axis=1), the same operations
    if small:
        norms = ny * np.minimum(scale, 1.0)  # >= 1 when scale >= 1: no overflow
        if (norms < _MIN_NORM).any():
            bad = np.flatnonzero(norms < _MIN_NORM).tolist()
            raise InputError(f"{what} rows {bad} have (near) zero norm; they cannot be compared by cosine")
    return (y / ny[:, None]).astype(np.float32)


@dataclass
class _Matrix:
    """In-memory copy of all templates, grouped by person for segment-wise max."""

    emb: np.ndarray  # (T, D) float32, rows sorted by person id
    starts: np.ndarray  # (P,) first row of each person's segment
    person_ids: np.ndarray  # (P,)
    names: list[str]  # (P,)
    model_id: str | None
    dim: int | None
    data_version: int

    def person_scores(self, q: np.ndarray) -> np.ndarray:
        """``(N, P)``: each query's best cosine per person (one matmul for the whole gallery)."""
        return np.maximum.reduceat(q @ self.emb.T, self.starts, axis=1)


class FaceGallery:
    """Enrolled faces in a SQLite file; identify (1:N) and verify (1:1) by cosine.

    Example::

        with FaceGallery("family.db") as gallery:
            gallery.enroll("Ann", embeddings, model_id=embedder.model_id)
            best = gallery.identify(query, model_id=embedder.model_id)[0]
            print(best.name if best.is_known else "unknown", best.score)

    Args:
        path: the database file (created if missing and ``create``), or
            ``":memory:"`` for a throw-away gallery.
        model_id: bind the gallery to this embedder id now (else the first
            enrolment binds it). Opening a gallery bound to another id raises
            :class:`~edgelite.errors.ModelMismatchError`.
        threshold: default acceptance threshold (cosine), default
            :data:`DEFAULT_THRESHOLD`. Per-call ``threshold=`` overrides it.
        create: create the file (``0600``, folders ``0700``) if it does not
            exist; with ``False`` a missing or empty (0-byte) file raises
            :class:`~edgelite.errors.GalleryError`.
        busy_timeout: seconds to wait for another process's write lock.
        key: encrypt templates at rest (AES-256-GCM): 32 raw bytes, their
            base64, or a key file path; ``None`` reads ``$EDGELITE_GALLERY_KEY_FILE``
            / ``$EDGELITE_GALLERY_KEY`` and means no encryption when neither is
            set. A new (or still empty) gallery opened with a key is encrypted;
            an encrypted one needs its key, and a wrong key is refused.

    Raises:
        GalleryError: the file cannot be opened/created, is not a gallery, or has
            a newer schema.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        model_id: str | None = None,
        threshold: float | None = None,
        create: bool = True,
        busy_timeout: float = 5.0,
        key: bytes | str | os.PathLike | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._key = load_key(key)
        self._sealer: _Sealer | None = None
        self._conn: sqlite3.Connection | None = None
        self._cache: _Matrix | None = None
        self._check_perms = False
        self._threshold = DEFAULT_THRESHOLD if threshold is None else _validate_threshold(threshold)
        if model_id is not None:
            model_id = _validate_model_id(model_id)
        memory = isinstance(path, str) and path == ":memory:"
        self._path = path if memory else os.fspath(path)
        if not isinstance(self._path, str):
            raise InputError(f"path must be a str or os.PathLike naming a file, got {path!r}")
        if not (isinstance(busy_timeout, (int, float)) and busy_timeout >= 0):
            raise InputError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        if not memory:
            self._prepare_file(Path(self._path), create)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, identically on
            # every Python version (3.12 changed the module's implicit transactions).
            self._conn = sqlite3.connect(
                self._path, timeout=float(busy_timeout), isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA foreign_keys = ON")
            # Sorts, temp tables and VACUUM's copy stay in RAM: no stray temp file
            # holding templates with default permissions.
            self._conn.execute("PRAGMA temp_store = MEMORY")
            # Look before writing anything: switching to WAL is already a write, and
            # a foreign SQLite file must be left exactly as it was.
            self._check_ours()
            if not memory:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise GalleryError(
                        f"gallery {self._path!r}: SQLite refused WAL journaling (got {mode!r}); "
                        "is it on a network or read-only filesystem?"
                    )
            self._conn.execute("PRAGMA synchronous = FULL")
            # Deleted rows are overwritten with zeros instead of lingering in free
            # pages: a removed person's template is not recoverable from the file.
            self._conn.execute("PRAGMA secure_delete = ON")
            self._init_schema(model_id)
            if self._check_perms:
                _warn_if_exposed(Path(self._path))
        except sqlite3.DatabaseError as exc:
            self._abort_open()
            raise GalleryError(f"cannot open gallery {self._path!r}: {exc}") from exc
        except BaseException:
            self._abort_open()
            raise

    def _prepare_file(self, p: Path, create: bool) -> None:
        """Refuse what cannot be a gallery; create a new one private (0600 in a 0700 folder)."""
        if p.is_dir():
            raise GalleryError(f"gallery path {self._path!r} is a directory; give a file name")
        if p.exists():
            if not p.is_file():
                raise GalleryError(f"gallery path {self._path!r} is not a regular file")
            if not create and p.stat().st_size == 0:
                # SQLite treats an empty file as an empty database: with create=False
                # that would silently turn a truncated gallery into "nobody enrolled".
                raise GalleryError(
                    f"gallery {self._path!r} is an empty (0-byte) file, not a gallery (create=False); "
                    "it may have been truncated: restore it from a backup, or delete it and enrol again"
                )
            self._check_perms = True
            return
        if not create:
            raise GalleryError(f"gallery {self._path!r} does not exist (create=False)")
        try:
            _ensure_private_dir(p.parent)
            _create_private_file(p)
        except OSError as exc:
            raise GalleryError(f"cannot create gallery {self._path!r}: {exc.strerror or exc}") from exc

    def _check_ours(self) -> None:
        """Raise unless the open database is empty or an edgelite gallery (read-only look)."""
        conn = self._conn
        assert conn is not None
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return
        if "meta" not in tables:
            raise GalleryError(
                f"{self._path!r} is an SQLite database but not an edgelite face gallery "
                f"(it has tables {sorted(tables)}); refusing to modify it"
            )
        try:
            fmt = self._meta(conn, "format")
        except sqlite3.DatabaseError:
            fmt = None
        if fmt != FORMAT_TAG:
            raise GalleryError(f"{self._path!r} is not an edgelite face gallery (meta.format {fmt!r}); "
                               "refusing to modify it")

    def _abort_open(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ plumbing

    def _check_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError(f"gallery {self._path!r} is closed")
        return self._conn

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front, all or nothing."""
        with self._lock:
            conn = self._check_open()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise GalleryError(f"{what}: gallery {self._path!r} is busy or unwritable: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise GalleryError(f"{what} failed on gallery {self._path!r}: {exc}") from exc
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._cache = None

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    @contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._check_open()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise GalleryError(f"{what} failed on gallery {self._path!r}: {exc}") from exc

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _meta_int(self, conn: sqlite3.Connection, key: str) -> int | None:
        """A positive integer meta value; a forged or corrupt one is a :class:`GalleryError`."""
        v = self._meta(conn, key)
        if v is None:
            return None
        try:
            n = int(v)
        except (TypeError, ValueError):
            n = -1
        if n < 1 or n > 1_000_000:
            raise GalleryError(
                f"gallery {self._path!r}: meta {key!r} is {v!r}, not a plausible positive integer; "
                "the file is corrupt or was edited by hand (run integrity_check(), or restore a backup)"
            )
        return n

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _init_schema(self, model_id: str | None) -> None:
        with self._write("open") as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" not in tables:
                if tables:
                    raise GalleryError(
                        f"{self._path!r} is an SQLite database but not an edgelite face gallery "
                        f"(it has tables {sorted(tables)}); refusing to modify it"
                    )
                # Statement by statement: executescript() would COMMIT our open
                # transaction first, and the schema must appear atomically with meta.
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                self._set_meta(conn, "format", FORMAT_TAG)
                self._set_meta(conn, "schema_version", str(SCHEMA_VERSION))
                self._set_meta(conn, "created", _now())
            fmt = self._meta(conn, "format")
            if fmt != FORMAT_TAG:
                raise GalleryError(f"{self._path!r} is not an edgelite face gallery (format {fmt!r})")
            version = self._meta_int(conn, "schema_version") or 0
            self._meta_int(conn, "dim")
            self._init_encryption(conn)
            if version > SCHEMA_VERSION:
                raise GalleryError(
                    f"gallery {self._path!r} has schema version {version}, newer than this edgelite "
                    f"supports ({SCHEMA_VERSION}); upgrade edgelite"
                )
            if model_id is not None:
                bound = self._meta(conn, "model_id")
                if bound is None:
                    self._set_meta(conn, "model_id", model_id)
                elif bound != model_id:
                    raise ModelMismatchError(
                        f"gallery {self._path!r} holds embeddings of model {bound!r}, "
                        f"but it was opened for model {model_id!r}; use a separate gallery per model"
                    )

    def _init_encryption(self, conn: sqlite3.Connection) -> None:
        import base64

        scheme = self._meta(conn, "encryption")
        if scheme is None:
            if self._key is None:
                return
            (n,) = conn.execute("SELECT COUNT(*) FROM templates").fetchone()
            if n:
                raise GalleryError(
                    f"gallery {self._path!r} holds {n} unencrypted template(s) but a key was given; "
                    "encrypt by re-enrolling into a new gallery opened with the key (then delete this one), "
                    f"or open it without a key (unset ${ENV_KEY_FILE} / ${ENV_KEY})"
                )
            self._sealer = _Sealer(self._key)
            self._set_meta(conn, "encryption", _ENC_SCHEME)
            check = self._sealer.seal(_KEY_CHECK, b"key_check")
            self._set_meta(conn, "key_check", base64.b64encode(check).decode())
            return
        if scheme != _ENC_SCHEME:
            raise GalleryError(f"gallery {self._path!r} uses encryption {scheme!r}, which this edgelite "
                               "does not know; upgrade edgelite")
        if self._key is None:
            raise GalleryError(
                f"gallery {self._path!r} is encrypted; give its key (key=..., or ${ENV_KEY_FILE} naming the "
                f"key file, or ${ENV_KEY})"
            )
        self._sealer = _Sealer(self._key)
        try:
            check = base64.b64decode(self._meta(conn, "key_check") or "", validate=True)
        except ValueError:
            check = b""
        if self._sealer.open(check, b"key_check") != _KEY_CHECK:
            raise GalleryError(f"gallery {self._path!r}: wrong key (it does not open this gallery)")

    @property
    def encrypted(self) -> bool:
        """True when templates are sealed with a key (see the ``key`` argument)."""
        return self._sealer is not None

    def _encode_vec(self, person_id: int, model_id: str, dim: int, vec: np.ndarray) -> bytes:
        raw = vec.astype("<f4").tobytes()
        if self._sealer is None:
            return raw
        return self._sealer.seal(raw, _template_aad(person_id, model_id, dim))

    def _encode_source(self, person_id: int, source: str | None) -> str | None:
        if source is None or self._sealer is None:
            return source
        import base64

        sealed = self._sealer.seal(source.encode("utf-8"), f"edgelite-source\x00{person_id}".encode())
        return "sealed:" + base64.b64encode(sealed).decode()

    def _check_model(self, conn: sqlite3.Connection, model_id: str, dim: int | None, what: str) -> None:
        self._check_bound(self._meta(conn, "model_id"), self._meta_int(conn, "dim"), model_id, dim, what)

    def _check_bound(self, bound: str | None, bound_dim: int | None, model_id: str, dim: int | None,
                     what: str) -> None:
        """Refuse embeddings of another model than the one the gallery is bound to."""
        if bound is not None and bound != model_id:
            raise ModelMismatchError(
                f"{what}: gallery {self._path!r} holds embeddings of model {bound!r}, "
                f"got embeddings of model {model_id!r}"
            )
        if dim is not None and bound_dim is not None and bound_dim != dim:
            raise ModelMismatchError(
                f"{what}: gallery {self._path!r} holds {bound_dim}-d embeddings (model {bound!r}), "
                f"got {dim}-d embeddings; they cannot come from the same model"
            )

    # ------------------------------------------------------------------ lifecycle

    @property
    def path(self) -> str:
        """The database path as given."""
        return self._path

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._conn is None

    def close(self) -> None:
        """Close the connection (idempotent). Committed data is already on disk."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._cache = None

    def __enter__(self) -> "FaceGallery":
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} people, model {self.model_id!r}"
        return f"FaceGallery({self._path!r}, {state})"

    # ------------------------------------------------------------------ properties

    @property
    def model_id(self) -> str | None:
        """Embedder id the gallery is bound to, or ``None`` before the first enrolment."""
        with self._read("model_id") as conn:
            return self._meta(conn, "model_id")

    @property
    def dim(self) -> int | None:
        """Embedding dimension, or ``None`` before the first enrolment."""
        with self._read("dim") as conn:
            return self._meta_int(conn, "dim")

    @property
    def threshold(self) -> float:
        """Default acceptance threshold (cosine similarity) for identify/verify."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = _validate_threshold(value)

    def _resolve_threshold(self, threshold: float | None) -> float:
        return self._threshold if threshold is None else _validate_threshold(threshold)

    # ------------------------------------------------------------------ writes

    def enroll(
        self,
        name: str,
        embeddings: Any,
        *,
        model_id: str,
        source: str | None = None,
        replace: bool = False,
    ) -> list[int]:
        """Add one or more templates for ``name`` (creating the person if new).

        All templates are written in one transaction: after a crash either all of
        them are present or none. Once this returns they are durable (fsynced).
        With ``replace=True`` the person's old templates are deleted in that same
        transaction, so a failure (crash, power cut, bad input) leaves the old
        templates in place instead of nobody.

        Args:
            name: person name (see :func:`validate_name`); stored verbatim.
            embeddings: ``(D,)`` or ``(N, D)`` float embeddings of this person.
                Each is L2-normalised before storage (cosine scores are unchanged);
                zero or non-finite vectors are refused.
            model_id: id of the embedder that produced them; must match the
                gallery's (the first enrolment binds an unbound gallery).
            source: optional free-text provenance (file name, camera id...); must
                be valid Unicode text (decode byte file names with
                ``errors="backslashreplace"`` first).
            replace: delete ``name``'s existing templates first, atomically.

        Returns:
            Template ids, one per embedding.

        Raises:
            InputError: bad name, model_id, source or embeddings.
            ModelMismatchError: model_id or dimension differs from the gallery's.
        """
        name = validate_name(name)
        model_id = _validate_model_id(model_id)
        if source is not None and (not isinstance(source, str) or len(source) > _MAX_SOURCE_LENGTH):
            raise InputError(f"source must be None or a str of <= {_MAX_SOURCE_LENGTH} characters, got {source!r}")
        if source is not None and any(0xD800 <= ord(ch) <= 0xDFFF for ch in source):
            raise InputError(
                f"source {source!r} contains lone surrogates (a file name that is not UTF-8?); decode it with "
                "os.fsencode(s).decode('utf-8', 'backslashreplace') first"
            )
        emb = _prepare_embeddings(embeddings)
        dim = int(emb.shape[1])
        now = _now()
        with self._write(f"enroll {name!r}") as conn:
            self._check_model(conn, model_id, dim, f"enroll {name!r}")
            if self._meta(conn, "model_id") is None:
                self._set_meta(conn, "model_id", model_id)
            if self._meta(conn, "dim") is None:
                self._set_meta(conn, "dim", str(dim))
            row = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                person_id = conn.execute("INSERT INTO people(name, created) VALUES (?, ?)", (name, now)).lastrowid
            else:
                person_id = row[0]
                if replace:
                    conn.execute("DELETE FROM templates WHERE person_id = ?", (person_id,))
            ids = []
            for vec in emb:
                cur = conn.execute(
                    "INSERT INTO templates(person_id, model_id, dim, embedding, created, source) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (person_id, model_id, dim, self._encode_vec(person_id, model_id, dim, vec), now,
                     self._encode_source(person_id, source)),
                )
                ids.append(int(cur.lastrowid))
        return ids

    def remove(self, name: str) -> int:
        """Delete a person and all their templates.

        Returns:
            The number of templates deleted.

        Raises:
            GalleryError: no such person.
        """
        name = validate_name(name)
        with self._write(f"remove {name!r}") as conn:
            row = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise GalleryError(f"no person named {name!r} in gallery {self._path!r}")
            (count,) = conn.execute("SELECT COUNT(*) FROM templates WHERE person_id = ?", (row[0],)).fetchone()
            conn.execute("DELETE FROM people WHERE id = ?", (row[0],))  # templates go by ON DELETE CASCADE
        return int(count)

    def purge(self) -> None:
        """Make deletions final on disk: checkpoint the WAL, ``VACUUM``, truncate the WAL.

        :meth:`remove` deletes a person's rows (zeroed by ``secure_delete``), but
        earlier versions of those pages can still sit in the ``-wal`` file until a
        checkpoint. Call this after removing someone to leave no copy of their
        templates in the gallery's files (backups and filesystem snapshots are
        yours to handle). Costs a rewrite of the whole file; other connections
        must not be in a transaction (else :class:`GalleryError`).
        """
        with self._lock:
            conn = self._check_open()
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("VACUUM")
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                raise GalleryError(f"purge failed on gallery {self._path!r}: {exc}") from exc
            finally:
                self._cache = None
            if busy:
                raise GalleryError(f"purge: gallery {self._path!r} is in use by another connection; "
                                   "close it and call purge() again")

    def rename(self, old: str, new: str) -> None:
        """Rename a person, keeping their templates.

        Raises:
            GalleryError: ``old`` does not exist or ``new`` is already taken.
        """
        old = validate_name(old)
        new = validate_name(new)
        with self._write(f"rename {old!r} -> {new!r}") as conn:
            row = conn.execute("SELECT id FROM people WHERE name = ?", (old,)).fetchone()
            if row is None:
                raise GalleryError(f"no person named {old!r} in gallery {self._path!r}")
            if old == new:
                return
            if conn.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise GalleryError(f"cannot rename {old!r} to {new!r}: that name is already enrolled")
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (new, row[0]))

    # ------------------------------------------------------------------ reads

    def people(self) -> list[PersonInfo]:
        """Everyone enrolled, sorted by name."""
        with self._read("people") as conn:
            rows = conn.execute(
                "SELECT p.id, p.name, p.created, COUNT(t.id) FROM people p "
                "LEFT JOIN templates t ON t.person_id = p.id GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [PersonInfo(name=n, templates=int(c), created=cr, person_id=int(i)) for i, n, cr, c in rows]

    def embeddings(self, name: str) -> np.ndarray:
        """A person's stored templates as ``float32 (N, D)`` (unit vectors).

        Raises:
            GalleryError: no such person.
        """
        name = validate_name(name)
        with self._read("embeddings") as conn:
            row = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise GalleryError(f"no person named {name!r} in gallery {self._path!r}")
            blobs = conn.execute(
                "SELECT id, dim, embedding, model_id FROM templates WHERE person_id = ? ORDER BY id", (row[0],)
            ).fetchall()
            return np.stack([self._decode_blob(tid, dim, blob, row[0], mid) for tid, dim, blob, mid in blobs])

    def __len__(self) -> int:
        with self._read("len") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM people").fetchone()[0])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        with self._read("contains") as conn:
            return conn.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone() is not None

    def _open_blob(self, person_id: int, model_id: Any, dim: Any, blob: Any) -> bytes | None:
        """The plaintext float32 bytes of a stored template, or ``None`` if it does not open."""
        if not isinstance(blob, bytes) or not isinstance(dim, int):
            return None
        if self._sealer is None:
            return blob
        return self._sealer.open(blob, _template_aad(person_id, str(model_id), dim))

    def _decode_blob(self, template_id: int, dim: Any, blob: bytes, person_id: int = 0,
                     model_id: Any = None) -> np.ndarray:
        if self._sealer is not None:
            opened = self._open_blob(person_id, model_id, dim, blob)
            if opened is None:
                raise GalleryError(
                    f"gallery {self._path!r}: template {template_id} does not decrypt with this key (tampered "
                    "with, moved to another person, or corrupt); run integrity_check()"
                )
            blob = opened
        if not isinstance(dim, int) or not isinstance(blob, bytes) or len(blob) != 4 * dim:
            raise GalleryError(
                f"gallery {self._path!r}: template {template_id} is corrupt "
                f"({len(blob) if isinstance(blob, bytes) else type(blob).__name__} bytes for dim {dim}); "
                "run integrity_check()"
            )
        vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(vec)):
            # A NaN row would make every score against it NaN, and NaN compares
            # False both ways: refuse rather than answer with garbage.
            raise GalleryError(
                f"gallery {self._path!r}: template {template_id} contains NaN or infinity; the file is "
                "corrupt or was edited by hand: run integrity_check() and re-enrol that person"
            )
        return vec

    def _matrix(self) -> _Matrix:
        """The template cache, rebuilt if we or another connection changed the data."""
        conn = self._check_open()
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if self._cache is not None and self._cache.data_version == version:
            return self._cache
        rows = conn.execute(
            "SELECT t.id, t.person_id, p.name, t.dim, t.embedding, t.model_id FROM templates t "
            "JOIN people p ON p.id = t.person_id ORDER BY t.person_id, t.id"
        ).fetchall()
        model_id = self._meta(conn, "model_id")
        dim = self._meta_int(conn, "dim")
        if rows:
            emb = np.stack([self._decode_blob(tid, d, blob, pid, mid) for tid, pid, _, d, blob, mid in rows])
            pids = np.array([r[1] for r in rows], dtype=np.int64)
            starts = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1]])
            names = [rows[i][2] for i in starts]
            person_ids = pids[starts]
        else:
            emb = np.zeros((0, dim or 0), dtype=np.float32)
            starts = np.zeros(0, dtype=np.int64)
            names, person_ids = [], np.zeros(0, dtype=np.int64)
        self._cache = _Matrix(emb, starts, person_ids, names, model_id, dim, version)
        return self._cache

    def _person_scores(self, q: np.ndarray, model_id: str, what: str) -> tuple[_Matrix, np.ndarray]:
        model_id = _validate_model_id(model_id)
        with self._read(what) as conn:
            m = self._matrix()  # holds the model binding of the same data version: no query per frame
            self._check_bound(m.model_id, m.dim, model_id, int(q.shape[1]), what)
        if m.emb.shape[0] == 0:
            return m, np.zeros((q.shape[0], 0), dtype=np.float32)
        return m, m.person_scores(q)

    def best_matches(self, embeddings: Any, *, model_id: str,
                     threshold: float | None = None) -> list[tuple[str | None, float]]:
        """Per query, ``(name, score)`` of the best match, or ``(None, best score)`` when
        nobody reaches the threshold — :meth:`identify` with ``top_k=1`` as plain tuples,
        for a per-frame loop (one lock, one query). An empty gallery gives
        ``(None, 0.0)``."""
        q = _prepare_embeddings(embeddings, "query embeddings")
        thr = self._resolve_threshold(threshold)
        model_id = _validate_model_id(model_id)
        with self._read("identify") as conn:
            m = self._matrix()
            if m.emb.shape[0] == 0:
                if int(conn.execute("SELECT COUNT(*) FROM people").fetchone()[0]) == 0:
                    return [(None, 0.0)] * q.shape[0]  # nobody enrolled (and no model bound check)
            self._check_bound(m.model_id, m.dim, model_id, int(q.shape[1]), "identify")
        if m.emb.shape[0] == 0:
            return [(None, -1.0)] * q.shape[0]
        scores = m.person_scores(q)
        best = np.argmax(scores, axis=1)  # first of equal maxima, as identify's stable sort
        out = []
        for qi, j in enumerate(best):
            s = float(scores[qi, j])
            out.append((m.names[j], s) if s >= thr else (None, s))
        return out

    def identify(
        self,
        embeddings: Any,
        *,
        model_id: str,
        top_k: int = 1,
        threshold: float | None = None,
    ) -> list[Match] | list[list[Match]]:
        """Who is this? 1:N search by cosine similarity.

        Args:
            embeddings: ``(D,)`` one query or ``(N, D)`` a batch.
            model_id: id of the embedder that produced them (must match).
            top_k: at most this many candidates per query.
            threshold: acceptance threshold (default: :attr:`threshold`).

        Returns:
            For one query a list of :class:`Match`; for a batch one list per query.
            Each list holds the known candidates (``score >= threshold``), best
            first, at most ``top_k``. If nobody reaches the threshold the list is
            a single ``Match(name=None, score=<best score>, person_id=None,
            is_known=False)`` — so ``result[0]`` is always the answer. To inspect
            sub-threshold candidates, pass ``threshold=-1``.

        Raises:
            ModelMismatchError: model id or embedding size differs from the gallery's.
        """
        single = np.ndim(embeddings) == 1
        q = _prepare_embeddings(embeddings, "query embeddings")
        if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be a positive int, got {top_k!r}")
        thr = self._resolve_threshold(threshold)
        m, scores = self._person_scores(q, model_id, "identify")
        out: list[list[Match]] = []
        k = min(int(top_k), scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k] if k else np.zeros((q.shape[0], 0), int)
        for qi in range(q.shape[0]):
            matches = [
                Match(name=m.names[j], score=float(scores[qi, j]), person_id=int(m.person_ids[j]), is_known=True)
                for j in order[qi]
                if scores[qi, j] >= thr
            ]
            if not matches:
                best = float(scores[qi, order[qi, 0]]) if k else -1.0
                matches = [Match(name=None, score=best, person_id=None, is_known=False)]
            out.append(matches)
        return out[0] if single else out

    def verify(
        self, embedding: Any, name: str, *, model_id: str, threshold: float | None = None
    ) -> VerifyResult:
        """Is this ``name``? 1:1 check against that person's templates (max cosine).

        Raises:
            GalleryError: no such person.
            ModelMismatchError: model id or embedding size differs from the gallery's.
        """
        name = validate_name(name)
        q = _prepare_embeddings(embedding, "query embedding")
        if q.shape[0] != 1:
            raise InputError(f"verify takes one embedding, got {q.shape[0]}; loop or use identify()")
        thr = self._resolve_threshold(threshold)
        m, scores = self._person_scores(q, model_id, f"verify {name!r}")
        try:
            j = m.names.index(name)
        except ValueError:
            raise GalleryError(f"no person named {name!r} in gallery {self._path!r}") from None
        score = float(scores[0, j])
        return VerifyResult(name=name, score=score, accepted=score >= thr, threshold=thr)

    # ------------------------------------------------------------------ maintenance

    def integrity_check(self) -> list[str]:
        """Check the file and its contents; returns a list of problems (empty = healthy).

        Runs SQLite's ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``,
        then checks our invariants: format/schema meta, every template's blob length
        equals ``4 * dim``, dims and model ids agree with the gallery's, vectors are
        finite and unit-norm, and no person is left without templates.
        """
        problems: list[str] = []
        with self._read("integrity_check") as conn:
            for (msg,) in conn.execute("PRAGMA integrity_check").fetchall():
                if msg != "ok":
                    problems.append(f"sqlite integrity: {msg}")
            for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall():
                problems.append(f"foreign key: {table} row {rowid} references a missing {parent} row")
            if self._meta(conn, "format") != FORMAT_TAG:
                problems.append(f"meta.format is {self._meta(conn, 'format')!r}, expected {FORMAT_TAG!r}")
            model_id = self._meta(conn, "model_id")
            dim_s = self._meta(conn, "dim")
            try:
                dim = None if dim_s is None else int(dim_s)
            except ValueError:
                problems.append(f"meta.dim is {dim_s!r}, not an integer")
                dim = None
            for tid, pid, mid, tdim, blob in conn.execute(
                "SELECT id, person_id, model_id, dim, embedding FROM templates"
            ):
                if self._sealer is not None:
                    opened = self._open_blob(pid, mid, tdim, blob)
                    if opened is None:
                        problems.append(f"template {tid}: does not decrypt with this key (tampered or corrupt)")
                        continue
                    blob = opened
                if not isinstance(tdim, int) or not isinstance(blob, bytes) or len(blob) != 4 * tdim:
                    n = len(blob) if isinstance(blob, (bytes, str)) else type(blob).__name__
                    problems.append(f"template {tid}: embedding has {n} bytes for dim {tdim!r}")
                    continue
                if dim is not None and int(tdim) != dim:
                    problems.append(f"template {tid}: dim {tdim} differs from the gallery's {dim}")
                if mid != model_id:
                    problems.append(f"template {tid}: model {mid!r} differs from the gallery's {model_id!r}")
                vec = np.frombuffer(blob, dtype="<f4")
                if not np.all(np.isfinite(vec)):
                    problems.append(f"template {tid}: embedding contains NaN or infinity")
                elif not math.isclose(float(np.linalg.norm(vec.astype(np.float64))), 1.0, abs_tol=1e-3):
                    problems.append(f"template {tid}: embedding is not unit-norm")
            for pid, name in conn.execute(
                "SELECT p.id, p.name FROM people p WHERE NOT EXISTS "
                "(SELECT 1 FROM templates t WHERE t.person_id = p.id)"
            ):
                problems.append(f"person {name!r} (id {pid}) has no templates")
        return problems


__all__ = [
    "SCHEMA_VERSION",
    "FORMAT_TAG",
    "MAX_NAME_LENGTH",
    "DEFAULT_THRESHOLD",
    "FILE_MODE",
    "DIR_MODE",
    "FaceGallery",
    "GalleryPermissionWarning",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "generate_key",
    "load_key",
    "validate_name",
]
