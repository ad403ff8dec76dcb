"""The edgelite error hierarchy.

Every error edgelite raises on purpose derives from :class:`EdgeliteError`, and
each subclass *also* derives from the builtin that fits, so callers can catch
either ``edgelite.EdgeliteError`` (everything from us) or ``ValueError`` /
``FileNotFoundError`` / ``RuntimeError`` (the usual Python idiom).

Messages name the bad value and say how to fix it.
"""
from __future__ import annotations


class EdgeliteError(Exception):
    """Base class of every error edgelite raises on purpose."""


class ModelNotFoundError(EdgeliteError, FileNotFoundError):
    """A model path does not exist (or is not a file)."""


class InvalidModelError(EdgeliteError, ValueError):
    """The bytes are not a valid TFLite model: empty, truncated, corrupt, wrong format."""


class UnsupportedModelError(EdgeliteError, ValueError):
    """A valid model that this runtime/backend cannot run (e.g. custom ops, unknown op versions)."""


class InputError(EdgeliteError, ValueError):
    """Inputs given to a model do not match its signature (count, name, rank, shape, dtype)."""


class BackendError(EdgeliteError, RuntimeError):
    """No interpreter backend is usable, or the one that was asked for is unusable."""


class DelegateError(EdgeliteError, RuntimeError):
    """A delegate could not be loaded or applied (missing library, unsupported model)."""


class MetadataError(EdgeliteError, ValueError):
    """The embedded edgelite metadata block is malformed."""


class ImageError(EdgeliteError, ValueError):
    """An image could not be read, or has an unsupported layout/dtype."""


class ImageTooLargeError(ImageError):
    """An image over a size limit (``max_pixels``, ``max_bytes``), refused before decoding."""


class GalleryError(EdgeliteError, RuntimeError):
    """An enrolment gallery operation failed (bad database, unknown person...)."""


class ModelMismatchError(GalleryError, ValueError):
    """Embeddings from different embedder models were mixed."""


class ConversionError(EdgeliteError, RuntimeError):
    """A model conversion failed (unsupported ops, float ops left, converter crash)."""


class InvalidSourceError(ConversionError, ValueError):
    """A source model file (e.g. ONNX) is corrupt, too new, or its external data does not match."""


class CalibrationDataError(EdgeliteError, ValueError):
    """Representative/calibration data was refused (too few, wrong shape, constant...)."""


class ZooError(EdgeliteError, RuntimeError):
    """The model zoo could not fetch, verify or build a model."""


class IntegrityError(ZooError, ValueError):
    """A downloaded or extracted file's SHA-256 does not match its pin."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """An image path does not exist (catchable as ``FileNotFoundError`` too)."""


__all__ = [n for n in dir() if n.endswith("Error")]
