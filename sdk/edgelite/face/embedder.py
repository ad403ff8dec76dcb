"""Layer 2: :class:`FaceEmbedder` — SFace (int8 or float32 TFLite): aligned 112x112
RGB crops → L2-normalised 128-D ``float32`` embeddings (cosine similarity).

SFace expects RGB 0..255 (OpenCV's ``FaceRecognizerSF`` calls ``blobFromImage``
with ``swapRB=true`` on its BGR crop); the normalisation ``(x − 127.5)/128`` is
inside the network.

``model_id`` identifies the exact model file (name + SHA-256 prefix): galleries
stamp every template with it and refuse to mix embeddings of different models.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time

import numpy as np

from .. import zoo
from ..errors import InputError
from ..model import Model
from .align import align_faces

EMBED_SIZE = 112


@dataclasses.dataclass(frozen=True)
class FaceEmbedderOptions:
    precision: str = "int8"
    model_path: str | None = None
    num_threads: int | None = None
    cache_dir: str | None = None

    def __post_init__(self):
        if self.precision not in zoo.PRECISIONS:
            raise InputError(f"precision must be one of {zoo.PRECISIONS}, got {self.precision!r}")


class FaceEmbedder:
    """Embed aligned face crops. The model loads lazily on first use."""

    def __init__(self, options: FaceEmbedderOptions | None = None, **kw):
        self.options = options or FaceEmbedderOptions(**kw)
        self._model: Model | None = None
        self._model_id: str | None = None
        self._lock = threading.Lock()
        self.last_timings: dict[str, float] = {}

    @classmethod
    def from_zoo(cls, precision: str = "int8", **kw) -> "FaceEmbedder":
        return cls(FaceEmbedderOptions(precision=precision, **kw))

    @classmethod
    def from_model(cls, path: str | os.PathLike, **kw) -> "FaceEmbedder":
        return cls(FaceEmbedderOptions(model_path=str(path), **kw))

    @property
    def model(self) -> Model:
        with self._lock:
            if self._model is None:
                path = self.options.model_path or zoo.require_model("sface", self.options.precision,
                                                                     self.options.cache_dir)
                data = open(path, "rb").read()
                self._model = Model(data, num_threads=self.options.num_threads)
                name = (self._model.metadata.name if self._model.metadata else None) or os.path.basename(path)
                self._model_id = f"{name}:{hashlib.sha256(data).hexdigest()[:16]}"
            return self._model

    @property
    def model_id(self) -> str:
        """Stable id of the embedding model (name + SHA-256 prefix of the file)."""
        self.model  # noqa: B018 - loads
        return self._model_id  # type: ignore[return-value]

    @property
    def dim(self) -> int:
        return int(self.model.outputs[0].shape[-1])

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """``uint8 (N, 112, 112, 3)`` (or one ``(112, 112, 3)``) aligned RGB crops → ``float32 (N, D)``."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:] != (EMBED_SIZE, EMBED_SIZE, 3) or crops.dtype != np.uint8:
            raise InputError(f"crops must be uint8 (N, {EMBED_SIZE}, {EMBED_SIZE}, 3) RGB aligned faces "
                             f"(use align_face), got {crops.dtype} {crops.shape}")
        m = self.model
        t0 = time.perf_counter()
        spec = m.inputs[0]
        if spec.quantized:
            from .detector import _lut, apply_lut
            x = apply_lut(crops, _lut(spec.scale, spec.zero_point, np.dtype(spec.dtype)))
        else:
            x = crops.astype(np.float32)
        if len(x) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = m(x, quantize=False)
        emb = np.asarray(out, np.float32).reshape(len(x), -1)
        self.last_timings = {"embed_ms": (time.perf_counter() - t0) * 1e3}
        return l2_normalize(emb)

    def embed_faces(self, image: np.ndarray, faces) -> np.ndarray:
        """Align each detected face of ``image`` (RGB) and embed it: ``(N, D)``."""
        lms = np.stack([f.landmarks for f in faces]) if len(faces) else np.zeros((0, 5, 2), np.float32)
        if len(lms) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.embed(align_faces(image, lms))

    def close(self):
        self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of (…, D) embeddings (normalised here, so raw vectors work too)."""
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
