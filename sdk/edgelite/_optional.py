"""Optional dependencies, imported lazily (OpenCV is the ``vision`` extra and slow to
import on a Pi; the runtime works without it through numpy fallbacks)."""
from __future__ import annotations

import sys


def cv2_or_none():
    """The ``cv2`` module, or ``None`` when OpenCV is not installed."""
    cv2 = sys.modules.get("cv2")  # already imported: skip the import machinery (per-frame callers)
    if cv2 is not None:
        return cv2
    try:
        import cv2  # noqa: PLC0415
    except ImportError:
        return None
    return cv2


def resolve_cv2(use_cv2: bool | None):
    """``use_cv2``: ``None`` = OpenCV if installed, ``True`` = require it, ``False`` = never.

    Returns the module or ``None`` (use the numpy path).
    """
    if use_cv2 is False:
        return None
    cv2 = cv2_or_none()
    if cv2 is None and use_cv2:
        raise ImportError("use_cv2=True but OpenCV is not installed: pip install 'edgelite[vision]'")
    return cv2
