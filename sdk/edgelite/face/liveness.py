"""Passive face liveness (anti-spoofing): :class:`FaceLivenessChecker`.

Two small MiniFASNet classifiers (Minivision's Silent-Face-Anti-Spoofing,
Apache-2.0; ~0.4 M parameters and ~80 MFLOPs each, 80x80 input) look at a face
with context around it and say whether it is a real face or a presentation
attack (a printed photo, a screen). The zoo converts both to int8
(``minifasnet_v2``, ``minifasnet_v1se``; ``edgelite models build``).

Pre- and post-processing follow the original project's inference code, as
documented with the ONNX files (``data/models/antispoof/README.md``):

* **Crop.** The face box is scaled about its centre by 2.7 (V2) or 4.0 (V1SE),
  the scale capped so the box fits the image; where it still overflows it is
  shifted back inside; the crop is resized to 80x80 (bilinear).
* **Input.** BGR, values 0..255 (not divided by 255).
* **Output.** Three logits per face; softmax per model, the two models'
  probabilities averaged. Class 1 is "real"; 0 and 2 are spoof types.

What it is and is not: a **deterrent** that raises the bar above a casual
printed photo, not a guarantee. The vendor reports TPR 97.8% at FPR 1e-5 on an
undisclosed data set; users report about 80% on public print/replay attacks. We
had no licensed spoof samples to evaluate on, so the project has measured only
that real faces pass and that int8 agrees with the ONNX reference (see
docs/face.md for the figures). Boxes from YuNet differ a little from the
original project's detector, which shifts the crops by a few per cent. A
stronger, active check (ask for a blink or a head turn and verify it with the
detector's landmarks over several frames) is described in docs/face.md.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from .. import zoo
from ..errors import InputError
from ..image import as_rgb
from ..model import Model
from ..preprocess import PreprocessSpec
from ..task import Task

#: Zoo model name -> crop scale of the original project.
LIVENESS_MODELS: dict[str, float] = {"minifasnet_v2": 2.7, "minifasnet_v1se": 4.0}
#: Input side of the MiniFASNet models.
LIVENESS_INPUT: int = 80
#: Index of the "real face" class in the models' 3 outputs.
REAL_CLASS: int = 1
#: Default decision threshold on the averaged "real" probability. The original
#: project takes the arg-max of the averaged probabilities; with three classes a
#: real probability >= 0.5 always wins it, so 0.5 is the stricter, simpler rule.
DEFAULT_LIVENESS_THRESHOLD: float = 0.5


def liveness_box(image_hw: Sequence[int], box: Sequence[float], scale: float) -> tuple[int, int, int, int]:
    """The context box of one face for a MiniFASNet model: ``(x0, y0, x1, y1)``, inclusive pixels.

    The face box ``(x_min, y_min, x_max, y_max)`` is scaled about its centre by
    ``scale``, capped so the scaled box fits in the image, then shifted inside it.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    s = min(float(scale), (h - 1) / bh, (w - 1) / bw)
    nw, nh = bw * s, bh * s
    cx, cy = x0 + bw / 2, y0 + bh / 2
    left, top, right, bottom = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > w - 1:
        left, right = left - (right - (w - 1)), float(w - 1)
    if bottom > h - 1:
        top, bottom = top - (bottom - (h - 1)), float(h - 1)
    return int(max(left, 0)), int(max(top, 0)), int(right), int(bottom)


def liveness_crop(image: np.ndarray, box: Sequence[float], scale: float, size: int = LIVENESS_INPUT) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 **RGB** input crop of one face (see :func:`liveness_box`).

    The converter calibrates through this same function, so calibration and
    inference see identical crops.
    """
    x0, y0, x1, y1 = liveness_box(image.shape[:2], box, scale)
    crop = image[y0:y1 + 1, x0:x1 + 1]
    if crop.size == 0:
        crop = image
    try:
        import cv2  # noqa: PLC0415 - bilinear, as the models were trained with

        return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        from ..preprocess import resize

        return resize(crop, (size, size))


@dataclasses.dataclass(frozen=True)
class LivenessResult:
    """One face's liveness verdict.

    Attributes:
        score: averaged probability of the "real" class, in [0, 1].
        is_real: ``score >= threshold``.
        threshold: the threshold used.
        probabilities: averaged ``(3,)`` class probabilities (spoof, real, spoof).
    """

    score: float
    is_real: bool
    threshold: float
    probabilities: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "is_real": self.is_real, "threshold": self.threshold,
                "probabilities": [round(p, 4) for p in self.probabilities]}


@dataclasses.dataclass(frozen=True)
class FaceLivenessOptions:
    """Options of :class:`FaceLivenessChecker`.

    Attributes:
        precision: ``int8`` or ``float32`` zoo models.
        threshold: "real" probability needed (default 0.5).
        num_threads: interpreter threads.
        cache_dir: zoo cache override.
        model_paths: explicit ``.tflite`` files ``{zoo name: path}`` instead of the zoo.
    """

    precision: str = "int8"
    threshold: float | None = None
    num_threads: int | None = None
    cache_dir: str | None = None
    model_paths: dict[str, str] | None = None

    def __post_init__(self):
        if self.precision not in zoo.PRECISIONS:
            raise InputError(f"precision must be one of {zoo.PRECISIONS}, got {self.precision!r}")
        if self.threshold is not None and not 0.0 <= float(self.threshold) <= 1.0:
            raise InputError(f"threshold is a probability in [0, 1], got {self.threshold!r}")
        if self.model_paths is not None and set(self.model_paths) - set(LIVENESS_MODELS):
            raise InputError(f"model_paths keys must be among {sorted(LIVENESS_MODELS)}, got {sorted(self.model_paths)}")


#: The input of the MiniFASNets for a model file that does not embed it (the zoo's
#: do): 80x80 BGR crops, 0..255, no normalisation (the original pre-processing).
LIVENESS_SPEC = PreprocessSpec(size=(LIVENESS_INPUT, LIVENESS_INPUT), resize="none", color="BGR", mean=0.0, std=1.0)


class FaceLivenessChecker(Task):
    """Is this face real or a presentation attack? Two int8 MiniFASNets, averaged.

    Example::

        live = FaceLivenessChecker.from_zoo()
        faces = detector.detect(frame).faces
        for face, verdict in zip(faces, live.check(frame, faces)):
            print(verdict.is_real, verdict.score)

    Cost: two 80x80 models per face (measured in docs/face.md). Models load
    lazily on first use; crops become model inputs through each model's embedded
    :class:`~edgelite.preprocess.PreprocessSpec` (one input path).
    """

    Options = FaceLivenessOptions

    def __init__(self, options: FaceLivenessOptions | None = None, **overrides) -> None:
        super().__init__(options, **overrides)
        self.threshold = (DEFAULT_LIVENESS_THRESHOLD if self.options.threshold is None
                          else float(self.options.threshold))

    @classmethod
    def from_zoo(cls, precision: str = "int8", **kw) -> "FaceLivenessChecker":
        return cls(precision=precision, **{k: v for k, v in kw.items() if v is not None})

    def models(self) -> dict[str, Model]:
        """The two loaded models (verified against their recorded SHA-256 when from the zoo)."""
        o = self.options

        def loader(name):
            return lambda: Model((o.model_paths or {}).get(name) or zoo.require_model(name, o.precision, o.cache_dir),
                                 num_threads=o.num_threads)

        return {name: self._model(name, loader(name)) for name in LIVENESS_MODELS}

    def crops(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> dict[str, np.ndarray]:
        """``{model name: uint8 (N, 80, 80, 3) RGB crops}`` for the given face boxes."""
        return {name: np.stack([liveness_crop(image, b, scale) for b in boxes]) if len(boxes)
                else np.zeros((0, LIVENESS_INPUT, LIVENESS_INPUT, 3), np.uint8)
                for name, scale in LIVENESS_MODELS.items()}

    def probabilities(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """Averaged class probabilities, ``float32 (N, 3)``."""
        img = as_rgb(image)
        total = np.zeros((len(boxes), 3), np.float64)
        if not len(boxes):
            return total.astype(np.float32)
        crops = self.crops(img, boxes)
        for name, m in self.models().items():
            x = (m.preprocessing or LIVENESS_SPEC).to_tensor(crops[name], m.inputs[0])
            logits = np.asarray(m(x, quantize=False), np.float64).reshape(len(boxes), -1)
            if logits.shape[1] != 3:
                raise InputError(f"liveness model {name} gives {logits.shape[1]} outputs, expected 3")
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            total += e / e.sum(axis=1, keepdims=True)
        return (total / len(LIVENESS_MODELS)).astype(np.float32)

    def check(self, image: np.ndarray, faces: Sequence[Any]) -> list[LivenessResult]:
        """Liveness of each face of an RGB frame.

        Args:
            image: the whole HWC uint8 RGB frame (the models need context around the face).
            faces: :class:`~edgelite.face.Face` objects or boxes ``(x_min, y_min, x_max, y_max)``.
        """
        boxes = [np.asarray(getattr(f, "box", f), np.float32).reshape(4) for f in faces]
        probs = self.probabilities(image, boxes)
        return [LivenessResult(float(p[REAL_CLASS]), bool(p[REAL_CLASS] >= self.threshold), self.threshold,
                               tuple(float(v) for v in p)) for p in probs]
