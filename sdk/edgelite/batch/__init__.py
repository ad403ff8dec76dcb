"""Batch inference: a task over many files, sharded, resumable, on one machine or Ray.

``run_batch(task, inputs, output, options)`` is the library API under the CLI
``edgelite batch TASK INPUT… -o OUT [--engine local|ray]``; see ``docs/batch.md``.
Importing this package is cheap: pyarrow, Ray and the models load on first use.
Writing Parquet needs the ``batch`` extra, the Ray engine the ``ray`` extra.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "run_batch": "edgelite.batch.api",
    "BatchResult": "edgelite.batch.api",
    "BatchOptions": "edgelite.batch.options",
    "BatchError": "edgelite.batch.options",
    "Task": "edgelite.batch.options",
    "Engine": "edgelite.batch.options",
    "OutputFormat": "edgelite.batch.options",
    "IfExists": "edgelite.batch.options",
    "collect_inputs": "edgelite.batch.inputs",
    "read_output": "edgelite.batch.read",
    "read_errors": "edgelite.batch.read",
    "TIMING_COLUMNS": "edgelite.batch._arrow",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'edgelite.batch' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
