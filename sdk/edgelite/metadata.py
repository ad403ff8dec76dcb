"""The edgelite metadata block embedded in a ``.tflite`` file.

The converter writes one entry of the TFLite ``Model.metadata`` list, named
``"edgelite"``, whose buffer holds a UTF-8 JSON object. JSON rather than a
second flatbuffer schema because it is readable with the standard library on the
device, trivially forward compatible (unknown keys are kept, not rejected), and
tiny next to the weights.

Keys (``format_version`` 1)::

    format: "edgelite-metadata", format_version: 1,
    task: "face_detection" | "face_embedding" | "classification" | "generic" | ...,
    name: str, preprocessing: PreprocessSpec dict | null, labels: [str] | null,
    source: {filename, format, sha256}, versions: {edgelite, tensorflow, ...},
    calibration: {count, source}, quantization: {mode, inputs, outputs, per_channel},
    validation: {...}  (converter's report summary), extra: {...}

A model without metadata still runs; :func:`read_metadata` then returns ``None``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

from .errors import MetadataError
from .preprocess import PreprocessSpec

METADATA_NAME = "edgelite"
FORMAT = "edgelite-metadata"
FORMAT_VERSION = 1

#: Largest metadata JSON we parse (bytes). Real blocks are 1-10 KB; a model file
#: is untrusted input and ``json.loads`` holds the whole parsed tree in memory.
MAX_JSON_BYTES: int = 1 << 20
#: Deepest nesting of objects/arrays we parse. Real blocks nest 4 levels;
#: ``json.loads`` recurses per level and dies with ``RecursionError`` (or worse,
#: a C stack overflow in other parsers) on 50,000 levels.
MAX_JSON_DEPTH: int = 64

_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def loads_bounded(raw: bytes, *, what: str = "metadata JSON", max_bytes: int = MAX_JSON_BYTES,
                  max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted bytes, with size and nesting depth checked first.

    The depth is measured by a linear scan (strings skipped, brackets counted)
    before anything is parsed, so the check costs no recursion at all.

    Raises:
        MetadataError: too large, too deep, not UTF-8 or not JSON.
    """
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise MetadataError(f"{what} is {len(raw):,} bytes; the limit is {max_bytes:,}")
    depth = 0
    for m in _JSON_TOKENS.finditer(raw):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise MetadataError(f"{what} nests deeper than {max_depth} levels; refusing to parse it")
        elif tok in (b"]", b"}"):
            depth -= 1
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise MetadataError(f"{what} is not UTF-8 ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise MetadataError(f"{what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    except RecursionError as e:  # belt and braces: the scan above should make this unreachable
        raise MetadataError(f"{what} nests too deeply to parse") from e


@dataclasses.dataclass(frozen=True)
class EdgeliteMetadata:
    """Parsed edgelite metadata. ``raw`` keeps every key, known or not."""

    task: str = "generic"
    name: str = ""
    preprocessing: PreprocessSpec | None = None
    labels: tuple[str, ...] | None = None
    source: dict = dataclasses.field(default_factory=dict)
    versions: dict = dataclasses.field(default_factory=dict)
    calibration: dict = dataclasses.field(default_factory=dict)
    quantization: dict = dataclasses.field(default_factory=dict)
    validation: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)
    raw: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.task, str) or not self.task:
            raise MetadataError(f"metadata 'task' must be a non-empty string, got {self.task!r}")
        if self.labels is not None and not all(isinstance(x, str) for x in self.labels):
            raise MetadataError("metadata 'labels' must be a list of strings")

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.raw)
        d.update(
            format=FORMAT, format_version=FORMAT_VERSION, task=self.task, name=self.name,
            preprocessing=self.preprocessing.to_dict() if self.preprocessing else None,
            labels=list(self.labels) if self.labels is not None else None,
            source=self.source, versions=self.versions, calibration=self.calibration,
            quantization=self.quantization, validation=self.validation, extra=self.extra,
        )
        return d

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False).encode("utf-8")

    @classmethod
    def from_dict(cls, d: dict) -> "EdgeliteMetadata":
        if not isinstance(d, dict):
            raise MetadataError(f"edgelite metadata must be a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise MetadataError(f"metadata 'format' is {d.get('format')!r}, expected {FORMAT!r}")
        ver = d.get("format_version")
        if not isinstance(ver, int) or ver < 1:
            raise MetadataError(f"metadata 'format_version' {ver!r} is not a positive integer")
        pre = d.get("preprocessing")
        labels = d.get("labels")
        try:
            return cls(
                task=d.get("task") or "generic", name=d.get("name") or "",
                preprocessing=PreprocessSpec.from_dict(pre) if pre else None,
                labels=tuple(labels) if labels is not None else None,
                source=dict(d.get("source") or {}), versions=dict(d.get("versions") or {}),
                calibration=dict(d.get("calibration") or {}),
                quantization=dict(d.get("quantization") or {}),
                validation=dict(d.get("validation") or {}), extra=dict(d.get("extra") or {}), raw=dict(d),
            )
        except (TypeError, ValueError) as e:
            if isinstance(e, MetadataError):
                raise
            raise MetadataError(f"malformed edgelite metadata: {e}") from e

    @classmethod
    def from_bytes(cls, data: bytes) -> "EdgeliteMetadata":
        d = loads_bounded(data, what="the 'edgelite' metadata entry")
        return cls.from_dict(d)


def metadata_from_info(info) -> EdgeliteMetadata | None:
    """Metadata from a parsed :class:`edgelite._tflite.ModelInfo` (``None`` when absent)."""
    raw = info.metadata.get(METADATA_NAME)
    if raw is None:
        return None
    return EdgeliteMetadata.from_bytes(raw)


def read_metadata(model: str | os.PathLike | bytes) -> EdgeliteMetadata | None:
    """Read the edgelite metadata of a ``.tflite`` path or bytes; ``None`` when it has none.

    Pure Python (no TensorFlow, no interpreter): the flatbuffer is verified and
    walked by :mod:`edgelite._tflite`.
    """
    from ._tflite import read_model_info

    return metadata_from_info(read_model_info(model))
