"""The output directory of a run: atomic shards, the errors table and ``_manifest.json``.

Layout (``OUT/``)::

    part-00000.parquet        one shard per ``shard_size`` sorted inputs (or .jsonl)
    _errors/part-00000.parquet  the errors of that shard (written before the shard)
    _errors.parquet           all errors, gathered when the run completes
    _manifest.json            task, options, models (SHA-256), inputs, completed shards

Names starting with ``_`` or ``.`` are skipped by pyarrow/Spark/DuckDB dataset
readers, so ``pyarrow.dataset.dataset(OUT)`` reads exactly the rows.

Every file is written to a temporary ``.name.<pid>.tmp`` in the same folder,
flushed, ``fsync``-ed and renamed over its final name: a reader or a killed run
sees a whole shard or none. A shard is *complete* once its data file exists and
the manifest lists it; the manifest is rewritten (atomically) by the parent
process only.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .. import __version__
from ._arrow import errors_schema, require_pyarrow
from .options import BatchError, OutputFormat

MANIFEST = "_manifest.json"
ERRORS_DIR = "_errors"
MANIFEST_FORMAT = "edgelite-batch/1"


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync the file, rename it to ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_table(table, path: Path, fmt: OutputFormat) -> None:
    """Write a pyarrow table atomically as Parquet (zstd) or JSON lines."""
    pa, pq = require_pyarrow()
    if fmt == OutputFormat.PARQUET:
        _atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    else:
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as fh:
                for row in table.to_pylist():
                    # NaN/inf (a float model may output them) are written as Python's json writes
                    # them, not refused: a run must not fail on a value
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        _atomic(path, write)


def write_json(path: Path, obj) -> None:
    data = json.dumps(obj, indent=1, sort_keys=False) + "\n"

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
    _atomic(path, write)


def write_shard(out: Path, index: int, table, errors: list[dict], fmt: OutputFormat) -> None:
    """Errors first, then the data shard: the data file's rename is the commit point."""
    ext = "." + fmt.value
    write_table(_errors_table(errors), out / ERRORS_DIR / (shard_name(index) + ext), fmt)
    write_table(table, out / (shard_name(index) + ext), fmt)


def _errors_table(errors: list[dict]):
    pa, _ = require_pyarrow()
    return pa.Table.from_pylist(errors, schema=errors_schema())


def gather_errors(out: Path, shards: list[int], fmt: OutputFormat) -> int:
    """Concatenate the per-shard errors into ``_errors.<fmt>`` (atomic); returns the row count."""
    pa, pq = require_pyarrow()
    ext = "." + fmt.value
    tables = [read_table(out / ERRORS_DIR / (shard_name(i) + ext), fmt, errors_schema()) for i in sorted(shards)]
    table = pa.concat_tables(tables) if tables else _errors_table([])
    write_table(table, out / ("_errors" + ext), fmt)
    return table.num_rows


def read_table(path: Path, fmt: OutputFormat, schema=None):
    pa, pq = require_pyarrow()
    if fmt == OutputFormat.PARQUET:
        return pq.read_table(path, schema=schema)
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
    return pa.Table.from_pylist(rows, schema=schema)


def read_manifest(out: Path) -> dict | None:
    p = Path(out) / MANIFEST
    if not p.exists():
        return None
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BatchError(f"{p} is not a readable batch manifest ({e}); pass if_exists='overwrite' "
                         "(--overwrite) to start again") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise BatchError(f"{p} was not written by edgelite batch ({MANIFEST_FORMAT}); choose another output folder")
    return m


def new_manifest(task: str, fingerprint: dict, models: dict, inputs: dict, options: dict, engine: str) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"format": MANIFEST_FORMAT, "edgelite_version": __version__, "task": task, "engine": engine,
            "fingerprint": fingerprint, "models": models, "inputs": inputs, "options": options,
            "shards_total": inputs.get("shards"), "completed": [], "rows": {}, "errors": {},
            "started": now, "updated": now, "finished": False}


def compare_manifest(old: dict, new: dict) -> list[str]:
    """What differs between an existing run and the one asked for (empty: resumable)."""
    diffs = []
    for key in ("task", "fingerprint", "models", "inputs"):
        a, b = old.get(key), new.get(key)
        if key == "models" and isinstance(a, dict) and isinstance(b, dict):
            # The same bytes are the same model, wherever the cache lives now.
            a = {k: v.get("sha256") if isinstance(v, dict) else v for k, v in a.items()}
            b = {k: v.get("sha256") if isinstance(v, dict) else v for k, v in b.items()}
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                for k in sorted(set(a) | set(b)):
                    if a.get(k) != b.get(k):
                        diffs.append(f"{key}.{k}: {a.get(k)!r} then, {b.get(k)!r} now")
            else:
                diffs.append(f"{key}: {a!r} then, {b!r} now")
    return diffs


def clear_output(out: Path) -> None:
    """Remove what a previous run wrote (only our own files: shards, errors, manifest, temps)."""
    for p in list(out.glob("part-*.parquet")) + list(out.glob("part-*.jsonl")) + \
            list(out.glob("_errors.*")) + list(out.glob(".*.tmp")):
        p.unlink()
    ed = out / ERRORS_DIR
    if ed.is_dir():
        for p in ed.iterdir():
            if p.name.startswith(("part-", ".")):
                p.unlink()
    (out / MANIFEST).unlink(missing_ok=True)


def remove_temps(out: Path) -> None:
    """Temporary files left by a killed run (never renamed, so never part of the output)."""
    for d in (out, out / ERRORS_DIR):
        if d.is_dir():
            for p in d.glob(".*.tmp"):
                p.unlink(missing_ok=True)
