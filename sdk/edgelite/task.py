"""The base of the task classes (layer 2): one rule for options, lazy models, closing.

Every task (:class:`~edgelite.face.FaceDetector`, :class:`~edgelite.face.FaceEmbedder`,
:class:`~edgelite.face.FaceRecognizer`) is built the same way:

* ``Task(options=None, **overrides)``: ``options`` (default: the options class's
  defaults) with each override applied through ``dataclasses.replace``, so the
  options' own validation runs on the result. An override that is not a field of
  the options raises :class:`~edgelite.errors.InputError` — nothing is dropped
  silently.
* Models load on first use (:meth:`Task._model`), under a lock, never at
  construction: building a task is free, and a Pi app can create its tasks
  before the camera is up.
* ``close()`` releases the interpreters; tasks are context managers.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, ClassVar

from .errors import InputError


def resolve_options(cls: type, options: Any, overrides: dict) -> Any:
    """``options`` (an instance of ``cls`` or ``None``) with ``overrides`` applied."""
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise InputError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    if not overrides:
        return options
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"{cls.__name__} has no option(s) {unknown}; known: {sorted(fields)}")
    return dataclasses.replace(options, **overrides)


class Task:
    """Base class: options + overrides, lazily loaded models, ``close`` / ``with``."""

    Options: ClassVar[type]

    def __init__(self, options: Any = None, **overrides: Any):
        self.options = resolve_options(self.Options, options, overrides)
        self._lock = threading.RLock()
        self._models: dict = {}

    def _model(self, key: Any, load: Callable[[], Any]) -> Any:
        """The model stored under ``key``, loaded by ``load()`` on first use."""
        m = self._models.get(key)  # the per-frame case: loaded already (a dict read is atomic)
        if m is not None:
            return m
        with self._lock:
            m = self._models.get(key)
            if m is None:
                m = load()
                self._models[key] = m
            return m

    def close(self) -> None:
        """Release the interpreters (the task reloads them if used again)."""
        with self._lock:
            for m in self._models.values():
                close = getattr(m, "close", None)
                if close is not None:
                    close()
            self._models.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
