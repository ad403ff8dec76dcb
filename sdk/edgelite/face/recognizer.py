"""Layer 2: :class:`FaceRecognizer` — every face in a frame: detect → align → embed → match.

Video mode keeps a small IoU tracker (:class:`~edgelite.face.tracker.FaceTracker`):
a face is re-embedded when its track is new, after ``reembed_every`` reused frames,
or at once when its aligned crop no longer looks like the one last embedded (the
identity-change guard, ``min_appearance``), so a steady face costs one detector
run per frame instead of detector + embedder, and a different face stepping into
a tracked box does not keep the old name. A reused name is marked
``RecognizedFace.reused``: never count it as evidence of identity. Per-stage timings (ms) are in every
result: ``detect`` (incl. letterbox/quantize and decode), ``align``, ``embed``,
``match``, ``total``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputError
from ..image import as_rgb
from ..task import Task
from .align import align_faces
from .detector import FaceDetector, FaceDetectorOptions
from .embedder import FaceEmbedder, FaceEmbedderOptions
from .tracker import FaceTracker, appearance_signature
from .types import DetectionResult, Face


@dataclasses.dataclass(frozen=True)
class FaceRecognizerOptions:
    """Options of :class:`FaceRecognizer`.

    Attributes:
        precision: ``int8`` or ``float32`` for both zoo models.
        threshold: cosine threshold for a match (``None``: the gallery's).
        video: track faces across frames and re-embed only new tracks / every N frames.
        reembed_every: at most this many frames in a row reuse a tracked face's
            embedding; 0 embeds every face on every frame (ids still tracked).
        track_iou: IoU that links a detection to a track.
        max_track_age: frames a lost track is kept.
        min_appearance: identity-change guard: re-embed a tracked face at once when
            the cosine of its appearance signature (16x16 grey of the aligned crop)
            to the one at its last embedding falls below this; ``None`` disables
            it. See :mod:`edgelite.face.tracker` for the measured trade-off.
        min_face: ignore faces narrower than this many pixels (0: keep all).
        num_threads: interpreter threads for both models.
    """

    precision: str = "int8"
    threshold: float | None = None
    video: bool = False
    reembed_every: int = 10
    track_iou: float = 0.3
    max_track_age: int = 5
    min_appearance: float | None = 0.9
    min_face: float = 0.0
    num_threads: int | None = None
    cache_dir: str | None = None
    detector: FaceDetectorOptions | None = None
    embedder: FaceEmbedderOptions | None = None

    def __post_init__(self):
        if self.threshold is not None and not -1.0 <= float(self.threshold) <= 1.0:
            raise InputError(f"threshold must be a cosine in [-1, 1], got {self.threshold!r}")
        if not isinstance(self.reembed_every, int) or isinstance(self.reembed_every, bool) or self.reembed_every < 0:
            raise InputError(f"reembed_every must be an int >= 0 (0: embed every frame), got {self.reembed_every!r}")
        if not 0.0 < self.track_iou <= 1.0:
            raise InputError(f"track_iou must be in (0, 1], got {self.track_iou!r}")
        if not isinstance(self.max_track_age, int) or self.max_track_age < 0:
            raise InputError(f"max_track_age must be an int >= 0, got {self.max_track_age!r}")
        if self.min_appearance is not None and not -1.0 <= float(self.min_appearance) <= 1.0:
            raise InputError(f"min_appearance must be a cosine in [-1, 1] or None, got {self.min_appearance!r}")
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


class SelectedFace(NamedTuple):
    """What :meth:`FaceRecognizer.embed_face` returns."""

    face: Face
    embedding: np.ndarray
    detection: DetectionResult


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
        elif gallery is not None and not hasattr(gallery, "identify"):
            raise InputError(f"gallery must be a FaceGallery, a path to one, or None, got {type(gallery).__name__}"
                             + ("; pass options as options=..." if isinstance(gallery, FaceRecognizerOptions) else ""))
        self.gallery = gallery
        self.tracker = FaceTracker(iou_threshold=o.track_iou, max_age=o.max_track_age,
                                   reembed_every=o.reembed_every, min_appearance=o.min_appearance)

    def reset_tracks(self) -> None:
        self.tracker.reset()

    def _match(self, emb: np.ndarray) -> list[tuple[str | None, float]]:
        if self.gallery is None or len(emb) == 0:
            return [(None, 0.0)] * len(emb)
        if hasattr(self.gallery, "best_matches"):
            return self.gallery.best_matches(emb, model_id=self.embedder.model_id, threshold=self.options.threshold)
        if len(self.gallery) == 0:
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
        video = self.options.video
        track_of = self.tracker.associate([f.box for f in faces]) if video and faces else {}
        guard = video and self.options.min_appearance is not None
        if guard and faces:
            # Align every face (a warpAffine each, cheap) so the identity guard can
            # compare appearances; only the faces that need it are embedded.
            all_crops = align_faces(img, np.stack([f.landmarks for f in faces]))
            sigs = [appearance_signature(c) for c in all_crops]
        else:
            all_crops, sigs = None, [None] * len(faces)
        if video:
            todo = [i for i in range(len(faces)) if self.tracker.needs_embedding(track_of.get(i), sigs[i])]
        else:
            todo = list(range(len(faces)))
        if not todo:
            crops = np.zeros((0, 112, 112, 3), np.uint8)
        elif all_crops is not None:
            crops = all_crops[todo]
        else:
            crops = align_faces(img, np.stack([faces[i].landmarks for i in todo]))
        t2 = time.perf_counter()
        emb = self.embedder.embed(crops) if todo else np.zeros((0, 128), np.float32)
        t3 = time.perf_counter()
        matches = self._match(emb)
        t4 = time.perf_counter()
        new = {i: (emb[k], *matches[k]) for k, i in enumerate(todo)}
        out = []
        seen_ids = set()
        for i, f in enumerate(faces):
            if i in new:
                e, name, score = new[i]
                reused = False
            else:
                tr = track_of[i]
                e, name, score, reused = tr.embedding, tr.name, tr.score, True
            tid = None
            if video:
                tr = self.tracker.update(track_of.get(i), f.box, e, name, score, refreshed=not reused,
                                         signature=sigs[i])
                tid = tr.id
                seen_ids.add(tid)
            out.append(RecognizedFace(f, e, name, score, tid, reused))
        if video:
            self.tracker.age(seen_ids)
        t5 = time.perf_counter()
        timings = {"detect": (t1 - t0) * 1e3, "align": (t2 - t1) * 1e3, "embed": (t3 - t2) * 1e3,
                   "match": (t4 - t3) * 1e3, "total": (t5 - t0) * 1e3}
        return RecognitionResult(tuple(out), tuple(img.shape[:2]), timings)

    __call__ = recognize

    def embed_face(self, image: np.ndarray, *, select: str = "largest") -> "SelectedFace | None":
        """The one face a task needs (enrol, verify, unlock) and its embedding, or ``None``.

        Args:
            image: HWC uint8 RGB.
            select: ``largest`` (default), ``score`` or ``center`` — see
                :meth:`~edgelite.face.DetectionResult.select`.

        Returns:
            :class:`SelectedFace` ``(face, embedding, detection)`` — ``detection`` holds
            every face found, e.g. to warn when there was more than one.
        """
        img = as_rgb(image)
        det = self.detector._detect_rgb(img)
        face = det.select(select)
        if face is None:
            return None
        return SelectedFace(face, self.embedder.embed(align_faces(img, face.landmarks[None]))[0], det)

    def close(self):
        self.detector.close()
        self.embedder.close()
        if self.gallery is not None and hasattr(self.gallery, "close"):
            self.gallery.close()
