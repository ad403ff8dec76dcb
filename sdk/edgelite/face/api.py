"""Layer 3: the five-line use. Models load lazily on first call and are shared.

    import edgelite.face as ef
    img = ef.load_image("photo.jpg")
    faces = ef.detect_faces(img)
    emb = ef.embed_faces(img, faces)
    print(ef.face_similarity(emb[0], emb[1]))   # cosine similarity
"""
from __future__ import annotations

import threading

import numpy as np

from .detector import FaceDetector
from .embedder import FaceEmbedder, cosine_similarity

_lock = threading.Lock()
_default: dict = {}


def _get(kind: str, precision: str):
    key = (kind, precision)
    with _lock:
        obj = _default.get(key)
        if obj is None:
            obj = FaceDetector.from_zoo(precision) if kind == "det" else FaceEmbedder.from_zoo(precision)
            _default[key] = obj
        return obj


def detect_faces(image: np.ndarray, *, precision: str = "int8"):
    """Faces in an RGB uint8 image (a :class:`DetectionResult`, best score first)."""
    return _get("det", precision).detect(image)


def embed_faces(image: np.ndarray, faces=None, *, precision: str = "int8") -> np.ndarray:
    """L2-normalised embeddings ``(N, 128)`` of the given (or detected) faces of an RGB image."""
    if faces is None:
        faces = detect_faces(image, precision=precision)
    return _get("emb", precision).embed_faces(image, faces)


def face_similarity(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Cosine similarity of two embeddings (or row-wise of two batches), in [-1, 1].

    Compare it with a threshold (``FaceGallery.threshold``, 0.363 for SFace int8 as
    measured on ORL) to decide "same person"."""
    s = cosine_similarity(np.asarray(a), np.asarray(b))
    return float(s) if np.ndim(s) == 0 else s


def compare_faces(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Deprecated alias of :func:`face_similarity` (returns a cosine, not booleans).

    Renamed because the best-known face library's ``compare_faces`` returns
    booleans under a tolerance; code ported from it would misread a cosine.
    """
    import warnings

    warnings.warn("edgelite.face.compare_faces is deprecated: use face_similarity (it returns a cosine)",
                  DeprecationWarning, stacklevel=2)
    return face_similarity(a, b)
