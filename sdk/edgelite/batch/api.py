"""``run_batch``: the library entry point under ``edgelite batch``."""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from .inputs import collect_inputs, is_uri
from .options import BatchError, BatchOptions, Engine, IfExists, Task
from .output import (
    clear_output, compare_manifest, new_manifest, read_manifest, write_json, MANIFEST,
)
from .runner import input_fingerprint, model_identity


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """What a run did.

    Attributes:
        output: the output folder (or URI for Ray).
        task, engine: as run.
        inputs: inputs in the run (after expanding folders, globs, manifests).
        shards_total: shards of the whole run; ``shards_skipped`` were already
            complete (resume) and not redone.
        rows, errors: rows and error rows of the whole output.
        seconds: wall time of this call.
        manifest: the manifest as written.
    """

    output: str
    task: str
    engine: str
    inputs: int
    shards_total: int
    shards_skipped: int
    rows: int
    errors: int
    seconds: float
    manifest: dict

    @property
    def images_per_s(self) -> float:
        done = self.inputs * (1 - self.shards_skipped / self.shards_total) if self.shards_total else 0
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "manifest"}
        d["images_per_s"] = round(self.images_per_s, 2)
        return d


def model_identities(task: Task, options: BatchOptions) -> dict:
    """Path and SHA-256 of every model (and gallery) a run uses; raises early when one is missing."""
    from .. import zoo
    from ..errors import ModelNotFoundError

    def ident(path, what):
        if not os.path.isfile(path):
            raise ModelNotFoundError(f"{what} {path} does not exist")
        return model_identity(path)

    o = options
    models = {}
    if task == Task.MODEL:
        if not o.model:
            raise InputError("the model task needs a model: options.model / --model PATH.tflite")
        models["model"] = ident(o.model, "model")
        return models
    if o.detector_model:
        models["detector"] = ident(o.detector_model, "detector model")
    else:
        sizes = (320, 640) if o.input_size == "auto" else (int(o.input_size),)
        for s in sizes:
            models[f"detector_{s}"] = model_identity(zoo.require_model(f"yunet_{s}", o.precision, o.cache_dir))
    if task in (Task.EMBED, Task.IDENTIFY):
        models["embedder"] = (ident(o.embedder_model, "embedder model") if o.embedder_model
                              else model_identity(zoo.require_model("sface", o.precision, o.cache_dir)))
    if task == Task.IDENTIFY:
        if not o.gallery:
            raise InputError("the identify task needs a gallery: options.gallery / --gallery DB.sqlite "
                             "(make one with `edgelite enroll`)")
        models["gallery"] = ident(o.gallery, "gallery")
    return models


def run_batch(task: Task | str, inputs: Iterable[str | os.PathLike] | str | os.PathLike,
              output: str | os.PathLike, options: BatchOptions | None = None, **kw) -> BatchResult:
    """Run ``task`` over every input and write sharded rows, an errors table and a manifest.

    Args:
        task: ``detect``, ``embed``, ``identify`` or ``model`` (see :class:`Task`).
        inputs: folders (recursive), files, globs, manifests (``.txt``, ``.csv``,
            ``.parquet`` with a ``path`` column) or filesystem URIs; one or a list.
        output: the output folder (a URI such as ``s3://bucket/out`` with the Ray engine).
        options: :class:`BatchOptions`; keyword arguments build or override one.

    Returns:
        A :class:`BatchResult`. Rerunning the same call after a crash or Ctrl-C
        resumes: completed shards are kept and skipped.

    Raises:
        InputError: bad options, no inputs found.
        BatchError: the output holds a run made with other options/models/inputs
            (pass ``if_exists="overwrite"`` to start again), or a worker failed.
        ZooError, ModelNotFoundError: a model is missing.
        KeyboardInterrupt: after a clean stop on Ctrl-C (completed shards are kept).
    """
    t0 = time.perf_counter()
    try:
        task = Task(task)
    except ValueError:
        raise InputError(f"task must be one of {[t.value for t in Task]}, got {task!r}") from None
    if options is None:
        options = BatchOptions(**kw)
    elif kw:
        options = dataclasses.replace(options, **kw)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    from ._arrow import require_pyarrow

    require_pyarrow()
    models = model_identities(task, options)
    paths = collect_inputs(list(inputs), npy=task == Task.MODEL)
    if not paths:
        raise InputError(f"no input files found in {', '.join(map(str, inputs))}")
    shards = math.ceil(len(paths) / options.shard_size)
    inputs_info = {"count": len(paths), "sha256": input_fingerprint(paths), "shards": shards}
    manifest = new_manifest(task.value, options.fingerprint(task), models, inputs_info, options.to_dict(),
                            options.engine.value)

    if options.engine == Engine.RAY:
        from .ray_engine import run_ray

        done = run_ray(task, paths, os.fspath(output), options, manifest)
        skipped = shards if done is not manifest else 0  # the same finished run was found: nothing redone
        manifest = done
    else:
        out_s = os.fspath(output)
        if is_uri(out_s):
            raise InputError(f"the local engine writes to a local folder, got {out_s}; use engine='ray' "
                             "(--engine ray) to write to object storage")
        out = Path(out_s.removeprefix("file://"))
        out.mkdir(parents=True, exist_ok=True)
        old = read_manifest(out)
        if old is None and any(out.glob("part-*")):
            # Not ours (no manifest): never delete someone else's part files.
            raise BatchError(f"{out} holds part-* files but no edgelite batch manifest; choose another output "
                             "folder")
        if old is not None:
            if options.if_exists == IfExists.ERROR:
                raise BatchError(f"{out} already holds a batch run; choose another folder or pass "
                                 "if_exists='resume' / 'overwrite'")
            if options.if_exists == IfExists.OVERWRITE:
                clear_output(out)
            else:
                diffs = compare_manifest(old, manifest)
                if diffs:
                    raise BatchError(f"{out} holds a run made with other settings, so its shards cannot be "
                                     f"reused: {'; '.join(diffs)}. Use the same command to resume it, or pass "
                                     "if_exists='overwrite' (--overwrite) to start again, or another output folder")
                manifest["completed"] = list(old.get("completed", []))
                manifest["rows"] = dict(old.get("rows", {}))
                manifest["errors"] = dict(old.get("errors", {}))
                manifest["started"] = old.get("started", manifest["started"])
        skipped = len(manifest["completed"])
        write_json(out / MANIFEST, manifest)
        from .local import run_local

        manifest = run_local(task, paths, out, options, manifest)
        skipped = min(skipped, len(manifest["completed"]))
    return BatchResult(output=os.fspath(output), task=task.value, engine=options.engine.value, inputs=len(paths),
                       shards_total=shards, shards_skipped=skipped, rows=int(manifest.get("rows_total", 0)),
                       errors=int(manifest.get("errors_total", 0)), seconds=time.perf_counter() - t0,
                       manifest=manifest)
