"""edgelite_convert: workstation-side conversion of Keras / SavedModel / ONNX models
to full-integer int8 TFLite (needs the ``convert`` extra: tensorflow-cpu, onnx,
onnxruntime)."""
from __future__ import annotations
