"""Options of a batch run: frozen, validated dataclasses and ``str`` enums.

Only the options that change *what* a run writes (task, models, thresholds,
shard size, format) go into the run's fingerprint: a resumed run must have the
same ones. How the work is executed (workers, threads, batch size, engine) may
change between a run and its resume, since it does not change the rows.
"""
from __future__ import annotations

import dataclasses
import enum
import os

from ..errors import EdgeliteError, InputError


class BatchError(EdgeliteError, RuntimeError):
    """A batch run could not start or continue (output made with other options, a worker died...)."""


class Task(str, enum.Enum):
    """What to compute for every input.

    ``detect``: one row per face (box, landmarks, score). ``embed``: the same plus
    the L2-normalised embedding of the aligned face. ``identify``: the same plus the
    best gallery match (``name`` is null for an unknown face). ``model``: one row per
    input for any edgelite model (``.npy`` inputs, or images through the model's
    embedded preprocessing).
    """

    DETECT = "detect"
    EMBED = "embed"
    IDENTIFY = "identify"
    MODEL = "model"


class Engine(str, enum.Enum):
    """``local``: worker processes on this machine. ``ray``: Ray Data (extra ``ray``)."""

    LOCAL = "local"
    RAY = "ray"


class OutputFormat(str, enum.Enum):
    """``parquet`` (default, typed columns, what Spark/DuckDB/pandas read) or ``jsonl``."""

    PARQUET = "parquet"
    JSONL = "jsonl"


class IfExists(str, enum.Enum):
    """What to do when the output directory already holds a run.

    ``resume`` (default): skip the shards it completed; refused when the earlier run
    used other options, models or inputs. ``overwrite``: delete its shards and start
    again. ``error``: refuse.
    """

    RESUME = "resume"
    OVERWRITE = "overwrite"
    ERROR = "error"


#: Shard size: inputs per output file. 256 keeps a shard of SFace rows (~0.6 KB
#: each) well under a few MB while a killed run loses at most ``workers`` shards
#: of work in progress.
DEFAULT_SHARD_SIZE = 256
#: Crops per embedder call (and inputs per call for ``model``); measured in
#: device_tests/bench_batch.py (see docs/batch.md for the figures).
DEFAULT_BATCH_SIZE = 16
#: Files larger than this are refused before reading (a stray video or disk image
#: in a photo folder must not exhaust memory). 256 MB is above any photo.
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp")
NPY_EXTS = (".npy",)


def _pos_int(name: str, v, *, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InputError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {v!r}")


def _unit(name: str, v, *, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise InputError(f"{name} must be in [0, 1]{' or None' if allow_none else ''}, got {v!r}")


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """Everything a batch run needs besides its task, inputs and output.

    Attributes:
        engine: ``local`` (default) or ``ray``.
        format: ``parquet`` (default) or ``jsonl`` shards.
        workers: worker processes (local) or model actors (Ray). ``None``: the
            number of CPU cores. Each holds its own interpreters: a TFLite
            interpreter is not re-entrant and is never shared across processes.
        threads: interpreter threads per worker. ``None``: ``cores // workers``
            (at least 1, at most 4), so the workers together use the cores once.
            Processes scale better than threads here: decoding, NMS, alignment and
            Parquet encoding are Python/numpy work a second interpreter thread
            does not help with.
        shard_size: inputs per output shard (the unit of resume): a killed run
            redoes at most the shards in progress. Smaller shards waste less on a
            kill but make more files.
        batch_size: face crops per embedder call (``embed``/``identify``) and inputs
            per call (``model``); 1 turns batching off. Crops of consecutive images
            are pooled, so photos with one face still fill a batch.
        prefetch: decoded images queued ahead of inference per worker (a reader
            thread decodes while the interpreter runs: OpenCV and TFLite both
            release the GIL). Bounds memory: ``prefetch`` decoded images per worker.
        precision: zoo model precision (``int8`` or ``float32``).
        detector_model, embedder_model: your own YuNet / SFace-compatible
            ``.tflite`` instead of the zoo's.
        model: the ``.tflite`` for the ``model`` task.
        gallery: the SQLite gallery for ``identify``.
        threshold: cosine threshold for ``identify`` (``None``: the gallery's).
        score_threshold: detector score threshold.
        input_size: detector input, ``"auto"``, 320 or 640.
        max_faces: keep at most this many faces per image (``None``: all).
        cache_dir: zoo cache override.
        max_file_bytes: refuse larger files before reading them.
        if_exists: ``resume`` (default), ``overwrite`` or ``error``; see :class:`IfExists`.
        start_method: ``spawn`` (default) or ``forkserver``: a worker never
            inherits a parent's interpreter, thread pools or open files through
            ``fork``.
        progress: show a progress bar (images/s, ETA) on stderr.
        ray_address: Ray cluster address (``None``: ``RAY_ADDRESS`` or a local
            Ray started for the run); ignored by the local engine.
        files_per_block: Ray only: files per Ray Data read block (``None``:
            Ray's default); see docs/batch.md.
    """

    engine: Engine = Engine.LOCAL
    format: OutputFormat = OutputFormat.PARQUET
    workers: int | None = None
    threads: int | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    prefetch: int = 4
    precision: str = "int8"
    detector_model: str | None = None
    embedder_model: str | None = None
    model: str | None = None
    gallery: str | None = None
    threshold: float | None = None
    score_threshold: float = 0.6
    input_size: int | str = "auto"
    max_faces: int | None = None
    cache_dir: str | None = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    if_exists: IfExists = IfExists.RESUME
    start_method: str = "spawn"
    progress: bool = True
    ray_address: str | None = None
    files_per_block: int | None = None

    def __post_init__(self):
        for name, enum_cls in (("engine", Engine), ("format", OutputFormat), ("if_exists", IfExists)):
            v = getattr(self, name)
            try:
                object.__setattr__(self, name, enum_cls(v))
            except ValueError:
                raise InputError(f"{name} must be one of {[e.value for e in enum_cls]}, got {v!r}") from None
        _pos_int("workers", self.workers, allow_none=True)
        _pos_int("threads", self.threads, allow_none=True)
        _pos_int("shard_size", self.shard_size)
        _pos_int("batch_size", self.batch_size)
        _pos_int("prefetch", self.prefetch)
        _pos_int("max_file_bytes", self.max_file_bytes)
        _pos_int("max_faces", self.max_faces, allow_none=True)
        _pos_int("files_per_block", self.files_per_block, allow_none=True)
        if self.precision not in ("int8", "float32"):
            raise InputError(f"precision must be 'int8' or 'float32', got {self.precision!r}")
        if self.input_size != "auto" and self.input_size not in (320, 640):
            raise InputError(f"input_size must be 'auto', 320 or 640, got {self.input_size!r}")
        _unit("score_threshold", self.score_threshold)
        if self.threshold is not None and (isinstance(self.threshold, bool) or not isinstance(
                self.threshold, (int, float)) or not -1.0 <= float(self.threshold) <= 1.0):
            raise InputError(f"threshold must be a cosine in [-1, 1] or None, got {self.threshold!r}")
        if self.start_method not in ("spawn", "forkserver"):
            raise InputError(f"start_method must be 'spawn' or 'forkserver' (never fork: an interpreter's "
                             f"thread pool does not survive it), got {self.start_method!r}")
        for name in ("detector_model", "embedder_model", "model", "gallery", "cache_dir"):
            v = getattr(self, name)
            if v is not None:
                if not isinstance(v, (str, os.PathLike)):
                    raise InputError(f"{name} must be a path, got {type(v).__name__}")
                object.__setattr__(self, name, os.fspath(v))

    def resolved_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    def resolved_threads(self) -> int:
        if self.threads:
            return self.threads
        return max(1, min(4, (os.cpu_count() or 1) // self.resolved_workers()))

    def fingerprint(self, task: Task) -> dict:
        """The options that decide the rows and the shard layout (compared on resume)."""
        d = {"task": Task(task).value, "format": self.format.value, "shard_size": self.shard_size,
             "precision": self.precision, "score_threshold": float(self.score_threshold),
             "input_size": self.input_size, "max_faces": self.max_faces}
        if Task(task) == Task.IDENTIFY:
            d["threshold"] = None if self.threshold is None else float(self.threshold)
        return d

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.value if isinstance(v, enum.Enum) else v
        return out
