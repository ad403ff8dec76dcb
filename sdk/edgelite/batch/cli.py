"""``edgelite batch TASK INPUT… -o OUT``: the command line over :func:`run_batch`.

Importing this module is light (argparse only); the run imports pyarrow and
the models when it starts.
"""
from __future__ import annotations

import argparse
import json
import sys

TASKS = ("detect", "embed", "identify", "model")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=TASKS, help="detect | embed (box, landmarks, score, embedding per face) | "
                   "identify (against --gallery) | model (any edgelite model, --model)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders (recursive), files, globs, manifests (.txt/.csv/.parquet with a path column) "
                        "or URIs (s3://, gs:// with --engine ray)")
    p.add_argument("-o", "--output", required=True, help="output folder (or URI with --engine ray)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local worker processes (default), or Ray Data (extra 'ray')")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet", help="shard format (default: parquet)")
    p.add_argument("--workers", type=int, default=None, help="worker processes / Ray actors (default: CPU cores)")
    p.add_argument("--threads", type=int, default=None,
                   help="interpreter threads per worker (default: cores // workers, 1..4)")
    p.add_argument("--shard-size", type=int, default=None, help="inputs per output shard (unit of resume; "
                   "default 256)")
    p.add_argument("--batch-size", type=int, default=None, help="face crops per embedder call / inputs per "
                   "model call; 1 = off (default 16)")
    p.add_argument("--precision", choices=("int8", "float32"), default="int8", help="zoo model precision (default: int8)")
    p.add_argument("--model", default=None, help="the .tflite of the model task")
    p.add_argument("--detector-model", default=None, help="your own YuNet .tflite instead of the zoo's")
    p.add_argument("--embedder-model", default=None, help="your own SFace-compatible .tflite")
    p.add_argument("--gallery", "--db", dest="gallery", default=None, help="SQLite gallery for identify")
    p.add_argument("--threshold", type=float, default=None, help="identify: cosine threshold (default: "
                   "the gallery's)")
    p.add_argument("--score-threshold", type=float, default=None, help="detector score threshold (default 0.6)")
    p.add_argument("--input-size", default="auto", help="detector input: auto (default), 320 or 640")
    p.add_argument("--max-faces", type=int, default=None, help="keep at most this many faces per image")
    p.add_argument("--cache-dir", default=None, help="zoo cache (default: $EDGELITE_CACHE_DIR or ~/.cache/edgelite)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="delete a previous run in OUT and start again "
                   "(default: resume it)")
    g.add_argument("--no-resume", action="store_true", help="refuse to write into an OUT that holds a run")
    p.add_argument("--start-method", choices=("spawn", "forkserver"), default="spawn",
                   help="how worker processes start (default: spawn; never fork)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--files-per-block", type=int, default=None, help="Ray: files per read block")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def options_from_args(a):
    from .options import BatchOptions

    kw = {}
    for name in ("shard_size", "batch_size", "score_threshold"):
        v = getattr(a, name)
        if v is not None:
            kw[name] = v
    size = a.input_size
    if size != "auto":
        try:
            size = int(size)
        except ValueError:
            pass  # BatchOptions names the bad value
    return BatchOptions(engine=a.engine, format=a.format, workers=a.workers, threads=a.threads,
                        precision=a.precision, model=a.model, detector_model=a.detector_model,
                        embedder_model=a.embedder_model, gallery=a.gallery, threshold=a.threshold,
                        input_size=size, max_faces=a.max_faces, cache_dir=a.cache_dir,
                        if_exists="overwrite" if a.overwrite else "error" if a.no_resume else "resume",
                        start_method=a.start_method, progress=not a.quiet, ray_address=a.ray_address,
                        files_per_block=a.files_per_block, **kw)


def run(a) -> int:
    from .api import run_batch

    options = options_from_args(a)
    try:
        r = run_batch(a.task, a.inputs, a.output, options)
    except KeyboardInterrupt:
        sys.stderr.write(f"edgelite batch: interrupted; completed shards are kept in {a.output}. "
                         "Rerun the same command to resume.\n")
        return 130
    if a.json:
        json.dump(r.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        resumed = f", {r.shards_skipped} shard(s) already done" if r.shards_skipped else ""
        print(f"{r.inputs} inputs -> {r.rows} rows, {r.errors} errors in {r.output} "
              f"({r.shards_total} shards{resumed}; {r.seconds:.1f} s, {r.images_per_s:.1f} img/s)")
        if r.errors:
            print(f"errors: {r.output}/_errors.{options.format.value}")
    return 0
