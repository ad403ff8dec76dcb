"""Face pipeline: detection decoding (YuNet), alignment, embeddings gallery.

Importing ``edgelite.face`` is cheap: every name below is loaded from its
submodule on first access (no OpenCV, no SQLite, no model at import time).

Conventions: images HWC ``uint8`` RGB; boxes ``(x_min, y_min, x_max, y_max)``
pixels; landmarks ``(5, 2)`` pixels ordered right eye, left eye, nose tip, right
mouth corner, left mouth corner; embeddings L2-normalised ``float32``, cosine.
"""
from __future__ import annotations

import importlib

_LAZY = {
    # types
    "Face": "edgelite.face.types",
    "DetectionResult": "edgelite.face.types",
    "SelectRule": "edgelite.face.types",
    "Match": "edgelite.face.types",
    "VerifyResult": "edgelite.face.types",
    "PersonInfo": "edgelite.face.types",
    "LANDMARK_NAMES": "edgelite.face.types",
    # geometry
    "iou": "edgelite.face.geometry",
    "nms": "edgelite.face.geometry",
    "ResizeMode": "edgelite.face.geometry",
    "ResizePlan": "edgelite.face.geometry",
    "plan_resize": "edgelite.face.geometry",
    "resize_image": "edgelite.face.geometry",
    "MIN_FACE_AT_INPUT": "edgelite.face.geometry",
    # yunet
    "YUNET_OUTPUT_NAMES": "edgelite.face.yunet",
    "decode_yunet": "edgelite.face.yunet",
    "decode_yunet_raw": "edgelite.face.yunet",
    "yunet_spec": "edgelite.face.yunet",
    # align
    "ARCFACE_TEMPLATE_112": "edgelite.face.align",
    "estimate_similarity": "edgelite.face.align",
    "align_face": "edgelite.face.align",
    "align_faces": "edgelite.face.align",
    "warp_affine": "edgelite.face.align",
    # gallery
    "FaceGallery": "edgelite.face.gallery",
    "DEFAULT_THRESHOLD": "edgelite.face.gallery",
    # task classes (layer 2)
    "FaceDetector": "edgelite.face.detector",
    "FaceDetectorOptions": "edgelite.face.detector",
    "FaceEmbedder": "edgelite.face.embedder",
    "FaceEmbedderOptions": "edgelite.face.embedder",
    "cosine_similarity": "edgelite.face.embedder",
    "FaceRecognizer": "edgelite.face.recognizer",
    "FaceRecognizerOptions": "edgelite.face.recognizer",
    "RecognizedFace": "edgelite.face.recognizer",
    "RecognitionResult": "edgelite.face.recognizer",
    "SelectedFace": "edgelite.face.recognizer",
    "FaceTracker": "edgelite.face.tracker",
    "FaceLivenessChecker": "edgelite.face.liveness",
    "FaceLivenessOptions": "edgelite.face.liveness",
    "LivenessResult": "edgelite.face.liveness",
    "GalleryPermissionWarning": "edgelite.face.gallery",
    # convenience (layer 3)
    "detect_faces": "edgelite.face.api",
    "embed_faces": "edgelite.face.api",
    "face_similarity": "edgelite.face.api",
    "compare_faces": "edgelite.face.api",
    # images
    "load_image": "edgelite.image",
    "to_bgr": "edgelite.image",
    "from_bgr": "edgelite.image",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'edgelite.face' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
