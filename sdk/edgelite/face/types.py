"""Result and record types of the face pipeline.

Conventions (the same everywhere in edgelite):

* Images are ``numpy`` HWC ``uint8`` **RGB**.
* Boxes are pixels ``(x_min, y_min, x_max, y_max)`` in the coordinates of the image
  the caller passed in (not the network input).
* Landmarks are ``(5, 2)`` pixels ``(x, y)`` in the order right eye, left eye, nose
  tip, right mouth corner, left mouth corner — "right eye" is the subject's right
  eye, which appears on the *left* of an unmirrored photo. This is the order YuNet
  outputs and the order the ArcFace/SFace alignment template uses.
* Embeddings are L2-normalised ``float32``; similarity is cosine.

Every type here is a frozen dataclass validated in ``__post_init__``; array fields
are stored as read-only copies so a frozen object really cannot change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import InputError

#: Landmark names, in the order of the rows of :attr:`Face.landmarks`.
LANDMARK_NAMES: tuple[str, ...] = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "right_mouth_corner",
    "left_mouth_corner",
)


def _frozen_array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Return a read-only float32 copy of ``value`` with exactly ``shape``.

    Raises:
        InputError: wrong shape or non-finite values.
    """
    try:
        arr = np.array(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be numeric with shape {shape}, got {value!r}") from exc
    if arr.shape != shape:
        raise InputError(f"{what} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinity: {arr.tolist()}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        box: ``float32 (4,)`` pixels ``(x_min, y_min, x_max, y_max)``. The box may
            extend past the image border (a face cut by the frame edge); use
            :meth:`clipped` if you need it inside.
        landmarks: ``float32 (5, 2)`` pixels, order in :data:`LANDMARK_NAMES`.
        score: detector confidence in ``[0, 1]``.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    def __post_init__(self) -> None:
        box = _frozen_array(self.box, (4,), "Face.box")
        if box[2] < box[0] or box[3] < box[1]:
            raise InputError(
                f"Face.box must be (x_min, y_min, x_max, y_max) with max >= min, got {box.tolist()}"
            )
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "landmarks", _frozen_array(self.landmarks, (5, 2), "Face.landmarks"))
        try:
            score = float(self.score)
        except (TypeError, ValueError) as exc:
            raise InputError(f"Face.score must be a number in [0, 1], got {self.score!r}") from exc
        if not (0.0 <= score <= 1.0):
            raise InputError(f"Face.score must be in [0, 1], got {score!r}")
        object.__setattr__(self, "score", score)

    @classmethod
    def _of(cls, box: np.ndarray, landmarks: np.ndarray, score: float) -> "Face":
        """A face made of values its maker has already checked, as the YuNet decoder
        does for a whole frame at once: read-only finite ``float32`` rows (views of
        its per-frame arrays), ``max >= min``, a float score in ``[0, 1]``."""
        face = object.__new__(cls)
        object.__setattr__(face, "box", box)
        object.__setattr__(face, "landmarks", landmarks)
        object.__setattr__(face, "score", score)
        return face

    # ndarray fields make the generated __eq__ ambiguous, so compare values here.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Face):
            return NotImplemented
        return (
            self.score == other.score
            and np.array_equal(self.box, other.box)
            and np.array_equal(self.landmarks, other.landmarks)
        )

    __hash__ = None  # type: ignore[assignment]  # value objects holding arrays are not hashable

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        return (float(self.box[0] + self.box[2]) / 2.0, float(self.box[1] + self.box[3]) / 2.0)

    def clipped(self, image_hw: tuple[int, int]) -> "Face":
        """Return a copy whose box is clipped to an image of size ``(height, width)``.

        Landmarks are left unchanged: a landmark outside the frame is still the
        best estimate of where that feature is, and alignment needs it.
        """
        h, w = int(image_hw[0]), int(image_hw[1])
        box = np.clip(self.box, [0, 0, 0, 0], [w, h, w, h])
        return Face(box=box, landmarks=self.landmarks, score=self.score)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: plain floats and lists only."""
        return {
            "box": [float(v) for v in self.box],
            "landmarks": [[float(x), float(y)] for x, y in self.landmarks],
            "score": float(self.score),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Face":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(box=data["box"], landmarks=data["landmarks"], score=data["score"])
        except KeyError as exc:
            raise InputError(f"Face dict is missing key {exc.args[0]!r}; expected box, landmarks, score") from exc

    def to_yunet_row(self) -> np.ndarray:
        """The 15-float row OpenCV's ``FaceDetectorYN`` uses.

        ``(x, y, w, h, re_x, re_y, le_x, le_y, nt_x, nt_y, rcm_x, rcm_y, lcm_x,
        lcm_y, score)`` as ``float32`` — e.g. for ``cv2.FaceRecognizerSF.alignCrop``.
        """
        row = np.empty(15, dtype=np.float32)
        row[0:2] = self.box[0:2]
        row[2:4] = self.box[2:4] - self.box[0:2]
        row[4:14] = self.landmarks.reshape(-1)
        row[14] = self.score
        return row

    @classmethod
    def from_yunet_row(cls, row: Sequence[float] | np.ndarray) -> "Face":
        """Build a face from an OpenCV ``FaceDetectorYN`` 15-float row."""
        arr = np.asarray(row, dtype=np.float32).reshape(-1)
        if arr.shape != (15,):
            raise InputError(f"a YuNet row has 15 values (x, y, w, h, 10 landmarks, score), got {arr.shape}")
        box = np.array([arr[0], arr[1], arr[0] + arr[2], arr[1] + arr[3]], dtype=np.float32)
        return cls(box=box, landmarks=arr[4:14].reshape(5, 2), score=float(arr[14]))


class SelectRule(str, Enum):
    """Which face :meth:`DetectionResult.select` picks."""

    LARGEST = "largest"
    SCORE = "score"
    CENTER = "center"


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """All faces found in one image, best score first.

    Attributes:
        faces: detected faces, sorted by descending score.
        image_hw: ``(height, width)`` of the image the coordinates refer to.
        timings: milliseconds per stage of the call that made it (``preprocess``,
            ``inference``, ``decode``); not part of equality.
    """

    faces: tuple[Face, ...]
    image_hw: tuple[int, int]
    timings: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timings", MappingProxyType(dict(self.timings)))
        faces = tuple(self.faces)
        for f in faces:
            if not isinstance(f, Face):
                raise InputError(f"DetectionResult.faces must hold Face objects, got {type(f).__name__}")
        object.__setattr__(self, "faces", faces)
        try:
            h, w = (int(v) for v in self.image_hw)
        except (TypeError, ValueError) as exc:
            raise InputError(f"image_hw must be (height, width), got {self.image_hw!r}") from exc
        if h <= 0 or w <= 0:
            raise InputError(f"image_hw must be positive, got {(h, w)}")
        object.__setattr__(self, "image_hw", (h, w))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DetectionResult):
            return NotImplemented
        return self.image_hw == other.image_hw and self.faces == other.faces

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces)

    def __getitem__(self, index: int) -> Face:
        return self.faces[index]

    @property
    def boxes(self) -> np.ndarray:
        """``float32 (N, 4)`` boxes."""
        if not self.faces:
            return np.zeros((0, 4), dtype=np.float32)
        return np.stack([f.box for f in self.faces])

    @property
    def landmarks(self) -> np.ndarray:
        """``float32 (N, 5, 2)`` landmarks."""
        if not self.faces:
            return np.zeros((0, 5, 2), dtype=np.float32)
        return np.stack([f.landmarks for f in self.faces])

    @property
    def scores(self) -> np.ndarray:
        """``float32 (N,)`` scores."""
        return np.array([f.score for f in self.faces], dtype=np.float32)

    def largest(self) -> Face | None:
        """The face with the largest box area (ties: higher score), or ``None``."""
        return self.select(SelectRule.LARGEST)

    def select(self, rule: "SelectRule | str" = "largest") -> Face | None:
        """The one face to use when a task needs one (enrol, verify, unlock), or ``None``.

        Rules: ``largest`` box area (a portrait, a door camera), ``score`` (the most
        face-like), ``center`` — nearest the image centre (face-verification sets in
        the LFW format centre every image on the labelled person, and a bystander's
        face can be larger). Ties go to the higher score.
        """
        try:
            rule = SelectRule(rule)
        except ValueError:
            raise InputError(f"unknown face selection rule {rule!r}; use one of "
                             f"{[r.value for r in SelectRule]}") from None
        if not self.faces:
            return None
        if rule is SelectRule.SCORE:
            return max(self.faces, key=lambda f: f.score)
        if rule is SelectRule.CENTER:
            cy, cx = self.image_hw[0] / 2.0, self.image_hw[1] / 2.0

            def dist(f):
                return ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2

            return min(self.faces, key=lambda f: (dist(f), -f.score))
        return max(self.faces, key=lambda f: (f.area, f.score))

    def to_yunet_rows(self) -> np.ndarray:
        """``float32 (N, 15)`` rows in OpenCV ``FaceDetectorYN`` layout."""
        if not self.faces:
            return np.zeros((0, 15), dtype=np.float32)
        return np.stack([f.to_yunet_row() for f in self.faces])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "image_hw": list(self.image_hw),
            "faces": [f.to_dict() for f in self.faces],
        }


def _check_name_field(value: Any, what: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InputError(f"{what} must be a str{' or None' if optional else ''}, got {value!r}")


def _check_score(value: Any, what: str) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a number, got {value!r}") from exc
    if not math.isfinite(score):
        raise InputError(f"{what} must be finite, got {score!r}")
    return score


@dataclass(frozen=True)
class Match:
    """One identification candidate.

    Attributes:
        name: the enrolled person's name, or ``None`` when the query is unknown
            (best score below the threshold, or an empty gallery).
        score: cosine similarity in ``[-1, 1]`` of the query to this person (the
            maximum over the person's templates). For an unknown query it is the
            best score found, so you can see how close it came; ``-1.0`` when the
            gallery had nobody to compare with.
        person_id: database id of the person, ``None`` when unknown.
        is_known: ``score >= threshold`` and a person was found.
    """

    name: str | None
    score: float
    person_id: int | None
    is_known: bool

    def __post_init__(self) -> None:
        _check_name_field(self.name, "Match.name", optional=True)
        object.__setattr__(self, "score", _check_score(self.score, "Match.score"))
        if self.person_id is not None and not isinstance(self.person_id, int):
            raise InputError(f"Match.person_id must be int or None, got {self.person_id!r}")
        if self.is_known and (self.name is None or self.person_id is None):
            raise InputError("a known Match needs a name and a person_id")
        object.__setattr__(self, "is_known", bool(self.is_known))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {"name": self.name, "score": self.score, "person_id": self.person_id, "is_known": self.is_known}


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a 1:1 verification.

    Attributes:
        name: the claimed identity.
        score: best cosine similarity of the query to that person's templates.
        accepted: ``score >= threshold``.
        threshold: the threshold used.
    """

    name: str
    score: float
    accepted: bool
    threshold: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        _check_name_field(self.name, "VerifyResult.name", optional=False)
        object.__setattr__(self, "score", _check_score(self.score, "VerifyResult.score"))
        object.__setattr__(self, "accepted", bool(self.accepted))
        object.__setattr__(self, "threshold", float(self.threshold))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (a NaN threshold becomes ``None``)."""
        thr = None if math.isnan(self.threshold) else self.threshold
        return {"name": self.name, "score": self.score, "accepted": self.accepted, "threshold": thr}


@dataclass(frozen=True)
class PersonInfo:
    """One enrolled person, as listed by :meth:`FaceGallery.people`.

    Attributes:
        name: the person's name (data, never a path).
        templates: how many embeddings are enrolled for them.
        created: ISO-8601 UTC time of the first enrolment.
        person_id: database id.
    """

    name: str
    templates: int
    created: str
    person_id: int = -1

    def __post_init__(self) -> None:
        _check_name_field(self.name, "PersonInfo.name", optional=False)
        if not isinstance(self.templates, int) or self.templates < 0:
            raise InputError(f"PersonInfo.templates must be an int >= 0, got {self.templates!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {"name": self.name, "templates": self.templates, "created": self.created, "person_id": self.person_id}


__all__ = ["LANDMARK_NAMES", "Face", "DetectionResult", "Match", "VerifyResult", "PersonInfo"]
