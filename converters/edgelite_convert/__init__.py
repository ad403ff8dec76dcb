"""edgelite_convert: workstation-side conversion of Keras / SavedModel / ONNX models
to full-integer int8 TFLite (needs the ``convert`` extra: tensorflow-cpu, onnx,
onnxruntime).

    from edgelite_convert import convert, ConvertOptions
    res = convert("model.keras", "model.tflite", calibration="imgs/",
                  preprocess=PreprocessSpec(size=(96, 96), mean=0, std=255))
"""
from __future__ import annotations

from .calibration import CalibrationSet, CalibrationWarning, build_calibration_set
from .convert import ConversionResult, ConvertOptions, IOType, QuantMode, convert
from .metadata_writer import embed_metadata

__all__ = ["convert", "ConvertOptions", "ConversionResult", "QuantMode", "IOType", "build_calibration_set",
           "CalibrationSet", "CalibrationWarning", "embed_metadata"]
