"""The ``ray`` engine: the same task on Ray Data, for more than one machine.

No home-made cluster layer: Ray Data reads the files, schedules the work and
writes the output; edgelite only supplies the per-batch function.

Pipeline::

    read_binary_files(paths, include_paths=True)      # blocks of files, read on the cluster
      .map_batches(_EdgeliteActor, compute=ActorPoolStrategy(size=workers),
                   num_cpus=threads, batch_format="pyarrow")  # one TaskRunner (its own interpreters) per actor
      .write_parquet(output)                          # or write_json for --format jsonl

Paths can be local (every node must see them: a shared filesystem) or any URI
pyarrow resolves (``s3://``, ``gs://``…), and so can the output: the code does
not change, Ray and pyarrow pick the filesystem from the URI. Each actor decodes
and infers with the same :class:`~edgelite.batch.runner.TaskRunner` as a local
worker, so the rows are the same. Errors are written by the actors under
``OUTPUT/_errors/`` (one file per batch, named by a hash of its paths, so a
retried batch overwrites its own file) and gathered into ``OUTPUT/_errors.parquet``.

Models: the driver reads the model files the manifest names (SHA-256) and Ray
carries their bytes to every actor, which loads them from a private folder, so
worker nodes need no zoo of their own. The ``identify`` gallery is not copied
(SQLite in WAL mode): its path must be visible on every node.

Resume is not shard-based here: Ray retries failed tasks and actors itself; a
run that fails as a whole is rerun whole (the output is replaced).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time

from ..errors import IntegrityError
from .options import BatchError, BatchOptions, IfExists, OutputFormat, Task
from .output import MANIFEST_FORMAT, compare_manifest

#: Files per ``map_batches`` call at most: bounds the bytes an actor holds at once.
RAY_MAX_BATCH = 64
#: CPU reserved by each read or write task, and by an actor per interpreter thread (see run_ray).
READ_NUM_CPUS = 0.1
ACTOR_CPU_SHARE = 0.8


def _fs_and_path(uri: str):
    import pyarrow.fs as pafs

    if "://" in uri and not uri.startswith("file://"):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri.removeprefix("file://"))


class _EdgeliteActor:
    """A Ray Data callable class: one :class:`TaskRunner` (one set of interpreters) per actor."""

    def __init__(self, task: str, options: BatchOptions, threads: int, errors_dir: str, scheme: str | None,
                 models: dict | None = None):
        from .runner import TaskRunner

        if models is not None:
            import ray

            if isinstance(models, ray.ObjectRef):
                models = ray.get(models)
            options = _install_models(options, models)
        self.runner = TaskRunner(task, options, threads)
        self.runner.schema  # noqa: B018 - load the models when the actor starts, not on the first batch
        self.errors_dir = errors_dir
        self.scheme = scheme
        self.fmt = options.format

    def __call__(self, batch):
        paths = [self._full(p) for p in batch.column("path").to_pylist()]
        blobs = batch.column("bytes").to_pylist()
        items = (self.runner.decode_bytes(p, b) for p, b in zip(paths, blobs))
        table, errors = self.runner.process(items)
        if errors:
            self._write_errors(paths, errors)
        return table

    def _full(self, path: str) -> str:
        # Ray hands back paths without the scheme (bucket/key); the local engine keeps the URI.
        return f"{self.scheme}://{path}" if self.scheme and "://" not in path else path

    def _write_errors(self, paths, errors) -> None:
        import pyarrow as pa

        from ._arrow import errors_schema
        from .output import write_table

        name = hashlib.sha1("\0".join(paths).encode("utf-8", "surrogateescape")).hexdigest()[:20]
        table = pa.Table.from_pylist(errors, schema=errors_schema())
        fs, root = _fs_and_path(self.errors_dir)
        if fs.type_name == "local":
            from pathlib import Path

            write_table(table, Path(root) / f"{name}.{self.fmt.value}", self.fmt)
        else:
            _write_remote(fs, f"{root}/{name}.{self.fmt.value}", table, self.fmt)


def _ship_models(options: BatchOptions, models: dict) -> dict:
    """The bytes of every model (and gallery) the run uses, to install on each actor's node.

    Nodes of a cluster need not have the zoo at the driver's path, and must not load
    other bytes than the ones the manifest names: the driver reads each file once,
    Ray carries the bytes to every actor (object store), the actor writes them to a
    private folder and loads them from there.
    """
    out = {}
    for key, info in models.items():
        if key == "gallery":
            # SQLite in WAL mode may hold committed rows in its -wal file: copying the main
            # file alone could lose them. The gallery stays a path every node must see.
            continue
        with open(info["path"], "rb") as f:
            data = f.read()
        sha = hashlib.sha256(data).hexdigest()
        if info.get("sha256") and sha != info["sha256"]:
            raise IntegrityError(f"{info['path']} changed since the run started (SHA-256 {sha[:16]}, the manifest "
                                 f"records {info['sha256'][:16]}); rerun the command")
        out[key] = (os.path.basename(info["path"]), data, sha)
    return out


def _install_models(options: BatchOptions, models: dict) -> BatchOptions:
    """Write shipped model bytes under a private folder; options that point at them."""
    import dataclasses
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="edgelite-batch-models-"))
    (root / "models").mkdir()
    (root / "files").mkdir()
    paths = {}
    from .. import zoo

    for key, (name, data, sha) in models.items():
        # zoo models keep the zoo layout (the detector picks 320 or 640 per image);
        # the others keep their file name (it is part of their model id)
        dest = (root / "models" / name) if key.startswith("detector_") or (
            key == "embedder" and not options.embedder_model) else (root / "files" / key / name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if hashlib.sha256(data).hexdigest() != sha:  # what arrived is what the driver read
            raise IntegrityError(f"model {name}: the bytes received on this node do not match their SHA-256")
        dest.write_bytes(data)
        zoo.write_sha256_sidecar(dest, sha)  # zoo loads verify models against it
        paths[key] = str(dest)
    repl = {"cache_dir": str(root)}
    for key, opt in (("detector", "detector_model"), ("embedder", "embedder_model"), ("model", "model")):
        if getattr(options, opt) and key in paths:
            repl[opt] = paths[key]
    return dataclasses.replace(options, **repl)


def _write_remote(fs, path: str, table, fmt: OutputFormat) -> None:
    """Object stores replace an object in one PUT: readers see the old or the new one."""
    import pyarrow.parquet as pq

    if fmt == OutputFormat.PARQUET:
        pq.write_table(table, path, filesystem=fs, compression="zstd")
    else:
        with fs.open_output_stream(path) as f:
            for row in table.to_pylist():
                f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))


def _prefilter(paths: list[str], max_bytes: int) -> tuple[list[str], list[dict]]:
    """Refuse special files and oversized files before Ray opens them (a FIFO would hang a reader)."""
    import pyarrow.fs as pafs

    from .inputs import UnreadableError, check_stat

    good, errors = [], []
    local = [p for p in paths if "://" not in p]
    remote = [p for p in paths if "://" in p]
    for p in local:
        try:
            check_stat(p, os.stat(p), max_bytes)  # the same checks and messages as the local engine
        except UnreadableError as e:
            errors.append({"path": p, "reason": "unreadable", "message": str(e)})
        except OSError as e:
            errors.append({"path": p, "reason": "unreadable", "message": f"{p}: cannot stat ({e.strerror or e})"})
        else:
            good.append(p)
    if remote:
        fs, _ = pafs.FileSystem.from_uri(remote[0])
        infos = fs.get_file_info([pafs.FileSystem.from_uri(p)[1] for p in remote])
        for p, info in zip(remote, infos):
            if info.type != pafs.FileType.File:
                errors.append({"path": p, "reason": "unreadable", "message": f"{p}: not a file ({info.type.name})"})
            elif info.size is not None and info.size > max_bytes:
                errors.append({"path": p, "reason": "unreadable",
                               "message": f"{p}: {info.size} bytes is above max_file_bytes={max_bytes}"})
            else:
                good.append(p)
    return good, errors


def run_ray(task: Task, paths: list[str], output: str, options: BatchOptions, manifest: dict) -> dict:
    """Run the task with Ray Data; returns the manifest written to ``OUTPUT/_manifest.json``."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise BatchError("the ray engine needs Ray Data: pip install 'edgelite[ray]'") from e
    import pyarrow as pa
    import pyarrow.fs as pafs

    from ._arrow import errors_schema

    t0 = time.perf_counter()
    schemes = {p.split("://", 1)[0] for p in paths if "://" in p}
    if len(schemes) > 1 or (schemes and len(schemes) == 1 and any("://" not in p for p in paths)):
        raise BatchError(f"all inputs of a Ray run must be on one filesystem, got schemes {sorted(schemes)} "
                         "and local paths")
    scheme = next(iter(schemes)) if schemes else None
    fs, root = _fs_and_path(output)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise BatchError(f"output {output} is a file; give a folder (or prefix)")
    if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(root)):
        old = _read_remote_manifest(fs, f"{root}/_manifest.json")
        if old is None:
            # Never delete a folder edgelite did not write (it could be the photos themselves).
            raise BatchError(f"{output} is not empty and holds no edgelite batch manifest; choose another output")
        if options.if_exists == IfExists.ERROR:
            raise BatchError(f"{output} already holds a batch run; choose another output or pass "
                             "if_exists='overwrite'")
        if options.if_exists == IfExists.RESUME:
            diffs = compare_manifest(old, manifest)
            if diffs:
                raise BatchError(f"{output} holds a run made with other settings: {'; '.join(diffs)}. Pass "
                                 "if_exists='overwrite' (--overwrite) to replace it, or choose another output")
            if old.get("finished"):
                return old  # the same run, complete: nothing to do
        # Ray runs are not resumed shard by shard: an unfinished or replaced run starts again.
        fs.delete_dir_contents(root)
    fs.create_dir(root, recursive=True)
    errors_dir = output.rstrip("/") + "/_errors"
    fs.create_dir(_fs_and_path(errors_dir)[1], recursive=True)

    good, early_errors = _prefilter(paths, options.max_file_bytes)
    started_here = False
    if not ray.is_initialized():
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        started_here = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = bool(options.progress)
        threads = options.threads or 1
        workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
        if good:
            blocks = math.ceil(len(good) / options.files_per_block) if options.files_per_block else None
            # Reading and writing are I/O: their tasks reserve a tenth of a CPU, and an actor
            # reserves ACTOR_CPU_SHARE of a CPU per thread. With whole CPUs, a pool of as many
            # actors as cores holds every CPU, Ray Data's budget for reads drops to 0 and the run
            # never starts (seen with Ray 2.60 on a 2-CPU node).
            ds = ray.data.read_binary_files(good, include_paths=True, override_num_blocks=blocks,
                                            num_cpus=READ_NUM_CPUS)
            ds = ds.map_batches(
                _EdgeliteActor,
                fn_constructor_kwargs={"task": task.value, "options": options, "threads": threads,
                                       "errors_dir": errors_dir, "scheme": scheme,
                                       "models": ray.put(_ship_models(options, manifest["models"]))},
                batch_size=min(options.shard_size, RAY_MAX_BATCH), batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads * ACTOR_CPU_SHARE)
            io_args = {"num_cpus": READ_NUM_CPUS}
            if options.format == OutputFormat.PARQUET:
                ds.write_parquet(output, ray_remote_args=io_args)
            else:
                ds.write_json(output, ray_remote_args=io_args)
    finally:
        if started_here:
            ray.shutdown()
    # Gather the errors (actors' files + the files refused before reading).
    ext = options.format.value
    tables = [pa.Table.from_pylist(early_errors, schema=errors_schema())]
    edir = _fs_and_path(errors_dir)[1]
    for f in sorted(fs.get_file_info(pafs.FileSelector(edir)), key=lambda f: f.path):
        if f.type == pafs.FileType.File and f.path.endswith("." + ext):
            tables.append(_read_any(fs, f.path, options.format, errors_schema()))
    errors = pa.concat_tables(tables).sort_by([("path", "ascending")])
    _write_remote(fs, f"{root}/_errors.{ext}", errors, options.format)
    rows = _count_rows(fs, root, options.format)
    manifest.update({"completed": ["all"], "rows_total": rows, "errors_total": errors.num_rows,
                     "finished": True, "seconds_last_run": round(time.perf_counter() - t0, 3),
                     "ray": {"workers": workers, "threads_per_actor": threads,
                             "files_per_block": options.files_per_block,
                             "batch_size": min(options.shard_size, RAY_MAX_BATCH)},
                     "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    with fs.open_output_stream(f"{root}/_manifest.json") as f:
        f.write((json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
    return manifest


def _read_remote_manifest(fs, path: str) -> dict | None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        try:
            m = json.loads(f.read().decode("utf-8"))
        except ValueError:
            return None
    return m if isinstance(m, dict) and m.get("format") == MANIFEST_FORMAT else None


def _read_any(fs, path: str, fmt: OutputFormat, schema):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == OutputFormat.PARQUET:
        return pq.read_table(path, filesystem=fs, schema=schema)
    with fs.open_input_stream(path) as f:
        rows = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line]
    return pa.Table.from_pylist(rows, schema=schema)


def _count_rows(fs, root: str, fmt: OutputFormat) -> int:
    import pyarrow.dataset as pads

    ds = pads.dataset(root, filesystem=fs, format="json" if fmt == OutputFormat.JSONL else "parquet")
    return ds.count_rows()
