"""``edgelite serve``: the same int8 models behind a SageMaker-compatible HTTP server.

Needs the ``serve`` extra (Starlette, Uvicorn, prometheus-client). Import this
package only to serve: ``import edgelite`` never imports it.

Layers: :mod:`~edgelite.serve.config` (one frozen config from flags + SageMaker's
environment), :mod:`~edgelite.serve.engine` (what a worker does with a batch:
decode, the face task classes / :class:`edgelite.Model`, encode),
:mod:`~edgelite.serve.workers` (processes, micro-batching, restarts, backpressure),
:mod:`~edgelite.serve.app` (routes, limits, metrics). See ``docs/serving.md``.
"""
from __future__ import annotations

from .config import BatchPolicy, ServeConfig, Task

__all__ = ["BatchPolicy", "ServeConfig", "Task", "create_app", "serve"]


def __getattr__(name):
    if name in ("create_app", "serve", "Server"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'edgelite.serve' has no attribute {name!r}")
