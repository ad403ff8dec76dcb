"""Layer 2: :class:`FaceRecognizer` — every face in a frame: detect → align → embed → match.

Video mode keeps a small IoU tracker: a face is re-embedded only when its track
is new or every ``reembed_every`` frames, so a steady face costs one detector run
per frame instead of detector + embedder. Per-stage timings (ms) are in every
result: ``detect`` (incl. letterbox/quantize and decode), ``align``, ``embed``,
``match``, ``total``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from ..errors import InputError
from ..image import as_rgb
from ..task import Task
from .align import align_faces
from .detector import FaceDetector, FaceDetectorOptions
from .embedder import FaceEmbedder, FaceEmbedderOptions
from .geometry import iou
from .types import Face


@dataclasses.dataclass(frozen=True)
class FaceRecognizerOptions:
    """Options of :class:`FaceRecognizer`.

    Attributes:
        precision: ``int8`` or ``float32`` for both zoo models.
        threshold: cosine threshold for a match (``None``: the gallery's).
        video: track faces across frames and re-embed only new tracks / every N frames.
        reembed_every: frames between re-embeddings of a tracked face.
        track_iou: IoU that links a detection to a track.
        max_track_age: frames a lost track is kept.
        min_face: ignore faces narrower than this many pixels (0: keep all).
        num_threads: interpreter threads for both models.
    """

    precision: str = "int8"
    threshold: float | None = None
    video: bool = False
    reembed_every: int = 10
    track_iou: float = 0.3
    max_track_age: int = 5
    min_face: float = 0.0
    num_threads: int | None = None
    cache_dir: str | None = None
    detector: FaceDetectorOptions | None = None
    embedder: FaceEmbedderOptions | None = None

    def __post_init__(self):
        if self.threshold is not None and not -1.0 <= float(self.threshold) <= 1.0:
            raise InputError(f"threshold must be a cosine in [-1, 1], got {self.threshold!r}")
        if not isinstance(self.reembed_every, int) or self.reembed_every < 1:
            raise InputError(f"reembed_every must be a positive int, got {self.reembed_every!r}")
        if not 0.0 < self.track_iou <= 1.0:
            raise InputError(f"track_iou must be in (0, 1], got {self.track_iou!r}")
        if not isinstance(self.max_track_age, int) or self.max_track_age < 0:
            raise InputError(f"max_track_age must be an int >= 0, got {self.max_track_age!r}")
        if self.min_face < 0:
            raise InputError(f"min_face must be >= 0, got {self.min_face!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class RecognizedFace:
    """One face of a frame with its identity.

    ``name`` is ``None`` for an unknown face (best score below the threshold, or an
    empty gallery). ``reused`` is True when video mode reused a track's embedding.
    """

    face: Face
    embedding: np.ndarray
    name: str | None
    score: float
    track_id: int | None = None
    reused: bool = False

    @property
    def is_known(self) -> bool:
        return self.name is not None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(float(self.score), 4), "track_id": self.track_id,
                "reused": self.reused, **self.face.to_dict()}


@dataclasses.dataclass(frozen=True, eq=False)
class RecognitionResult:
    faces: tuple[RecognizedFace, ...]
    image_hw: tuple[int, int]
    timings: dict[str, float]

    def __len__(self):
        return len(self.faces)

    def __iter__(self):
        return iter(self.faces)

    def to_dict(self) -> dict[str, Any]:
        return {"image_hw": list(self.image_hw), "faces": [f.to_dict() for f in self.faces],
                "timings_ms": {k: round(v, 3) for k, v in self.timings.items()}}


@dataclasses.dataclass
class _Track:
    id: int
    box: np.ndarray
    embedding: np.ndarray
    name: str | None
    score: float
    since_embed: int = 0
    missed: int = 0


class FaceRecognizer(Task):
    """Detect, align, embed and match every face of a frame against a :class:`FaceGallery`.

    Args:
        gallery: a :class:`~edgelite.face.gallery.FaceGallery`, a path to one (opened/created),
            or ``None`` (faces are embedded but all unknown).
        options: :class:`FaceRecognizerOptions`.
        detector, embedder: ready instances (else built from the zoo lazily).
    """

    Options = FaceRecognizerOptions

    def __init__(self, gallery=None, options: FaceRecognizerOptions | None = None, *,
                 detector: FaceDetector | None = None, embedder: FaceEmbedder | None = None, **overrides):
        super().__init__(options, **overrides)
        o = self.options
        self.detector = detector or FaceDetector(o.detector or FaceDetectorOptions(
            precision=o.precision, num_threads=o.num_threads, cache_dir=o.cache_dir))
        self.embedder = embedder or FaceEmbedder(o.embedder or FaceEmbedderOptions(
            precision=o.precision, num_threads=o.num_threads, cache_dir=o.cache_dir))
        if isinstance(gallery, (str, os.PathLike)):
            from .gallery import FaceGallery
            gallery = FaceGallery(gallery)
        self.gallery = gallery
        self._tracks: list[_Track] = []
        self._next_id = 1

    def reset_tracks(self) -> None:
        self._tracks.clear()

    def _match(self, emb: np.ndarray) -> list[tuple[str | None, float]]:
        if self.gallery is None or len(emb) == 0 or len(self.gallery) == 0:
            return [(None, 0.0)] * len(emb)
        res = self.gallery.identify(emb, model_id=self.embedder.model_id, top_k=1,
                                    threshold=self.options.threshold)
        out = []
        for matches in res:
            best = matches[0] if matches else None
            if best is None:
                out.append((None, 0.0))
            else:
                out.append((best.name if best.is_known else None, float(best.score)))
        return out

    def recognize(self, image: np.ndarray) -> RecognitionResult:
        """All faces of one RGB frame, with names. In video mode, call it on consecutive frames."""
        t0 = time.perf_counter()
        img = as_rgb(image)  # the one validation of this frame
        det = self.detector._detect_rgb(img)
        faces = [f for f in det.faces if f.width >= self.options.min_face]
        t1 = time.perf_counter()
        todo = list(range(len(faces)))
        track_of: dict[int, _Track] = {}
        if self.options.video:
            track_of = self._associate(faces)
            todo = [i for i in range(len(faces)) if i not in track_of
                    or track_of[i].since_embed >= self.options.reembed_every]
        lms = np.stack([faces[i].landmarks for i in todo]) if todo else np.zeros((0, 5, 2), np.float32)
        crops = align_faces(img, lms) if todo else np.zeros((0, 112, 112, 3), np.uint8)
        t2 = time.perf_counter()
        emb = self.embedder.embed(crops) if todo else np.zeros((0, 128), np.float32)
        t3 = time.perf_counter()
        matches = self._match(emb)
        t4 = time.perf_counter()
        new = {i: (emb[k], *matches[k]) for k, i in enumerate(todo)}
        out = []
        for i, f in enumerate(faces):
            if i in new:
                e, name, score = new[i]
                reused = False
            else:
                tr = track_of[i]
                e, name, score, reused = tr.embedding, tr.name, tr.score, True
            tid = None
            if self.options.video:
                tid = self._update_track(track_of.get(i), f, e, name, score, refreshed=not reused)
            out.append(RecognizedFace(f, e, name, score, tid, reused))
        if self.options.video:
            self._age_tracks({id(t) for t in track_of.values()})
        t5 = time.perf_counter()
        timings = {"detect": (t1 - t0) * 1e3, "align": (t2 - t1) * 1e3, "embed": (t3 - t2) * 1e3,
                   "match": (t4 - t3) * 1e3, "total": (t5 - t0) * 1e3}
        return RecognitionResult(tuple(out), tuple(img.shape[:2]), timings)

    __call__ = recognize

    # -- tracking -----------------------------------------------------------------
    def _associate(self, faces: list[Face]) -> dict[int, _Track]:
        if not self._tracks or not faces:
            return {}
        boxes = np.stack([f.box for f in faces])
        tboxes = np.stack([t.box for t in self._tracks])
        m = iou(boxes, tboxes)
        pairs = {}
        used_t = set()
        # greedy by IoU, highest first
        for flat in np.argsort(-m, axis=None):
            i, j = np.unravel_index(flat, m.shape)
            if m[i, j] < self.options.track_iou:
                break
            if i in pairs or j in used_t:
                continue
            pairs[int(i)] = self._tracks[int(j)]
            used_t.add(int(j))
        return pairs

    def _update_track(self, tr, face, emb, name, score, refreshed) -> int:
        if tr is None:
            tr = _Track(self._next_id, face.box.copy(), emb, name, score)
            self._next_id += 1
            self._tracks.append(tr)
        else:
            tr.box = face.box.copy()
            tr.missed = 0
            if refreshed:
                tr.embedding, tr.name, tr.score, tr.since_embed = emb, name, score, 0
            else:
                tr.since_embed += 1
        tr._seen = True  # type: ignore[attr-defined]
        return tr.id

    def _age_tracks(self, matched_ids) -> None:
        keep = []
        for t in self._tracks:
            if getattr(t, "_seen", False):
                t._seen = False  # type: ignore[attr-defined]
                keep.append(t)
            else:
                t.missed += 1
                if t.missed <= self.options.max_track_age:
                    keep.append(t)
        self._tracks = keep

    def embed_face(self, image: np.ndarray, *, select: str = "largest") -> tuple[Face, np.ndarray] | None:
        """The one face a task needs (enrol, verify, unlock) and its embedding, or ``None``.

        Args:
            image: HWC uint8 RGB.
            select: ``largest`` (default), ``score`` or ``center`` — see
                :meth:`~edgelite.face.DetectionResult.select`.
        """
        img = as_rgb(image)
        face = self.detector._detect_rgb(img).select(select)
        if face is None:
            return None
        return face, self.embedder.embed(align_faces(img, face.landmarks[None]))[0]

    def close(self):
        self.detector.close()
        self.embedder.close()
        if self.gallery is not None and hasattr(self.gallery, "close"):
            self.gallery.close()
