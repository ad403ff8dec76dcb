"""edgelite: run full-integer int8 TFLite models on Raspberry Pi / mobile-class CPUs.

Import is light: numpy only. The interpreter backend, OpenCV and the face models
are loaded lazily, on first use, never at import time; TensorFlow is never
imported by this package (the converters live in ``edgelite_convert``).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all

_LAZY = {
    # layer 1
    "Model": "edgelite.model",
    "TensorSpec": "edgelite.model",
    "ModelPool": "edgelite.model",
    "quantize": "edgelite.quant",
    "load_image": "edgelite.image",
    "dequantize": "edgelite.quant",
    "QuantParams": "edgelite._tflite",
    "read_model_info": "edgelite._tflite",
    "read_metadata": "edgelite.metadata",
    "EdgeliteMetadata": "edgelite.metadata",
    "PreprocessSpec": "edgelite.metadata",
    "available_backends": "edgelite.backends",
    "inspect_model": "edgelite.inspect",
    "benchmark": "edgelite.bench",
    "BenchmarkResult": "edgelite.bench",
}


_SUBMODULES = {"backends", "bench", "doctor", "face", "image", "inspect", "metadata", "model", "preprocess",
               "quant", "zoo", "cli", "errors"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"edgelite.{name}")
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'edgelite' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["__version__", *_errors_all, *_LAZY]
