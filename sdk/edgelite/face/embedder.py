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

import numpy as np

from .. import zoo
from ..errors import InputError
from ..model import Model
from ..preprocess import PreprocessSpec
from ..task import Task
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


#: SFace's input for a model file that does not embed it (the zoo's do): aligned
#: 112x112 RGB crops, 0..255 (the normalisation is inside the network).
SFACE_SPEC = PreprocessSpec(size=(EMBED_SIZE, EMBED_SIZE), resize="none", color="RGB", mean=0.0, std=1.0)


class FaceEmbedder(Task):
    """Embed aligned face crops. The model loads lazily on first use.

    The crops become the model's input through its embedded :class:`PreprocessSpec`
    (one fused lookup table for an int8 input), the same function the converter
    calibrated with.
    """

    Options = FaceEmbedderOptions

    @classmethod
    def from_zoo(cls, precision: str = "int8", **kw) -> "FaceEmbedder":
        return cls(precision=precision, **kw)

    @classmethod
    def from_model(cls, path: str | os.PathLike, **kw) -> "FaceEmbedder":
        return cls(model_path=str(path), **kw)

    def _load(self) -> Model:
        o = self.options
        path = o.model_path or zoo.require_model("sface", o.precision, o.cache_dir)
        with open(path, "rb") as f:
            data = f.read()
        m = Model(data, num_threads=o.num_threads)
        name = (m.metadata.name if m.metadata else None) or os.path.basename(path)
        self._model_id = f"{name}:{hashlib.sha256(data).hexdigest()[:16]}"
        return m

    @property
    def model(self) -> Model:
        return self._model("sface", self._load)

    @property
    def model_id(self) -> str:
        """Stable id of the embedding model (name + SHA-256 prefix of the file)."""
        self.model  # noqa: B018 - loads it (and sets the id)
        return self._model_id

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
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = (m.preprocessing or SFACE_SPEC).to_tensor(crops, m.inputs[0])
        out = m(x, quantize=False)
        return l2_normalize(np.asarray(out, np.float32).reshape(len(x), -1))

    def embed_faces(self, image: np.ndarray, faces) -> np.ndarray:
        """Align each detected face of ``image`` (RGB) and embed it: ``(N, D)``."""
        if len(faces) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.embed(align_faces(image, np.stack([f.landmarks for f in faces])))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.sqrt(np.add.reduce(x * x, axis=-1, keepdims=True))  # np.linalg.norm's operations for real x
    return (x / np.maximum(n, np.float32(eps))).astype(np.float32, copy=False)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of (…, D) embeddings (normalised here, so raw vectors work too)."""
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
