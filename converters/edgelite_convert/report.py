"""The conversion report: one typed record, serialised in one place.

:func:`edgelite_convert.convert` returns it in ``ConversionResult.report`` and
writes it as ``<model>.report.json``; the CLI prints it (``--json``) or summarises
it; the zoo keeps it beside each model. Read it by attribute
(``report.validation``, ``report.fully_integer``). It is also a read-only mapping
with the JSON's keys, so ``report["validation"]`` and ``{**report}`` keep working.
The optional parts (``validation``, ``keep_float_cost``, …) are ``None`` when the
conversion did not produce them, and are then absent from the JSON.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, Iterator

import numpy as np


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What was converted."""

    kind: str  # keras, saved_model, onnx, "torch (exported to onnx)"
    filename: str | None
    sha256: str | None


@dataclasses.dataclass(frozen=True)
class ConversionReport(Mapping):
    """What a conversion did and measured.

    Attributes:
        source: :class:`SourceInfo`.
        mode, input_type, output_type, per_channel: the quantization asked for.
        rewrites: graph rewrites applied (module, ONNX import and int8 passes).
        fully_integer: no float op left in the int8 model.
        float_ops: the float ops left (name, op type), if any.
        xnnpack_unsupported: ops XNNPACK does not run (they split the graph).
        op_histogram: op type -> count in the converted model.
        size_bytes, float_size_bytes: model sizes (the int8 one with metadata).
        batch: batch polymorphism of the two models.
        onnx_folded: ONNX nodes folded to constants before import.
        calibration: summary of the calibration set (``None`` without one).
        tensorflow, edgelite: versions used.
        seconds: time spent (``prepare_and_convert``, ``quantize``).
        degenerate_activation_ranges: tensors whose calibrated range collapsed.
        layer_stats: per-layer quantization error (the debugger's top entries).
        keep_float: layers kept in float (``--keep-float``).
        keep_float_cost: latency with those layers in float vs fully int8.
        validation: int8 vs float on held-out samples, per output.
        onnx_vs_float_tflite: the ONNX importer's float parity with onnxruntime.
        onnxruntime_int8_baseline: onnxruntime's static int8 on the same data.
        calibration_ranges: the int8 activation range method and what it changed
            (:mod:`edgelite_convert.ranges`).
        precision_suggestion: which layers to keep in float, measured
            (:mod:`edgelite_convert.precision`).
        extra: anything a caller adds (e.g. the zoo's build figures).
    """

    source: SourceInfo
    mode: str
    input_type: str
    output_type: str
    per_channel: bool
    rewrites: list[str]
    fully_integer: bool
    float_ops: list[Any]
    xnnpack_unsupported: list[Any]
    op_histogram: dict[str, int]
    size_bytes: int
    float_size_bytes: int
    batch: dict
    onnx_folded: Any
    calibration: dict | None
    tensorflow: str | None
    edgelite: str
    seconds: dict[str, float]
    degenerate_activation_ranges: list[str] | None = None
    layer_stats: list[dict] | None = None
    keep_float: list[str] | None = None
    keep_float_cost: dict | None = None
    validation: dict | None = None
    onnx_vs_float_tflite: dict | None = None
    onnxruntime_int8_baseline: dict | None = None
    calibration_ranges: dict | None = None
    precision_suggestion: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    # -- the mapping view (the JSON's keys) ------------------------------------------
    def _keys(self) -> list[str]:
        keys = [f.name for f in dataclasses.fields(self) if f.name != "extra"]
        optional = {f.name for f in dataclasses.fields(self) if f.default is None}
        return [k for k in keys if k not in optional or getattr(self, k) is not None] + list(self.extra)

    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key == "extra" or key not in self._keys():
            raise KeyError(key)
        v = getattr(self, key)
        return dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-ready data (the ``.report.json`` content)."""
        return json.loads(self.to_json())

    def to_json(self, indent: int | None = 2) -> str:
        """The one serialisation of a report."""
        return json.dumps({k: self[k] for k in self}, indent=indent, default=_json_default)

    def with_extra(self, **extra) -> "ConversionReport":
        """A copy with more entries (e.g. build figures), serialised with the rest."""
        return dataclasses.replace(self, extra={**self.extra, **extra})


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, (np.ndarray, tuple, set, frozenset)):
        return list(o.tolist() if isinstance(o, np.ndarray) else o)
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    return o if isinstance(o, (int, float)) else str(o)
