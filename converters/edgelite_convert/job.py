"""The conversion job: what crosses from :func:`edgelite_convert.convert` into the
TensorFlow subprocess (:mod:`edgelite_convert._worker`), typed and serialised in one
place.

The heavy TensorFlow work runs in a subprocess (a crash or a leak there cannot take
the caller down, and the caller never imports TensorFlow). The job is written as
``job.json`` by :meth:`Job.write` and read back by :meth:`Job.read`; unknown or
missing keys are an error on either side, so the two cannot silently disagree.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edgelite.errors import ConversionError


@dataclasses.dataclass(frozen=True)
class Job:
    """One conversion, as the worker needs it.

    Attributes:
        source_kind: ``keras``, ``saved_model`` or ``onnx``.
        source: path of the source model (for ONNX, possibly a folded copy).
        mode: :class:`~edgelite_convert.convert.QuantMode` value.
        input_type, output_type: :class:`~edgelite_convert.convert.IOType` values.
        per_channel: per-channel weight quantization (off only to debug).
        allow_float_fallback: let TFLite keep float ops it cannot quantize.
        prelu_rewrite: rewrite PReLU into the form measured exact in int8.
        static_batch: export Keras models with batch 1 so shape chains fold.
        keep_float: layer names kept in float (int8 mode).
        debug_layers: run TFLite's quantization debugger.
        debug_samples: calibration samples the debugger uses.
        input_shapes: static ONNX input shapes, by input name.
        calibration_ranges: activation range method (:mod:`edgelite_convert.ranges`).
        suggest_precision: ``"never"``, ``"always"``, or ``"auto"`` (when the int8 model's
            cosine on ``held.npz`` is below ``suggest_below_cosine``): search which layers
            to keep float (:mod:`edgelite_convert.precision`).
    """

    source_kind: str
    source: str
    mode: str
    input_type: str
    output_type: str
    per_channel: bool = True
    allow_float_fallback: bool = False
    prelu_rewrite: bool = True
    static_batch: bool = True
    keep_float: tuple[str, ...] = ()
    debug_layers: bool = False
    debug_samples: int = 16
    input_shapes: dict | None = None
    calibration_ranges: str = "minmax"
    suggest_precision: str = "never"
    suggest_below_cosine: float = 0.99

    def __post_init__(self):
        if self.source_kind not in ("keras", "saved_model", "onnx"):
            raise ConversionError(f"job: unknown source kind {self.source_kind!r}")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))

    def replace(self, **changes) -> "Job":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Job":
        d = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) - names:
            raise ConversionError(f"job.json has unknown keys {sorted(set(d) - names) if isinstance(d, dict) else d}")
        return cls(**d)

    def write(self, d: Path) -> None:
        (Path(d) / "job.json").write_text(self.to_json())

    @classmethod
    def read(cls, d: Path) -> "Job":
        return cls.from_json((Path(d) / "job.json").read_text())

    def prepare_key(self, source_sha256: str) -> str:
        """What the ``prepare`` phase depends on (its result is cached on this)."""
        return json.dumps([source_sha256, self.source_kind, self.input_shapes, self.prelu_rewrite,
                           self.static_batch], sort_keys=True)
