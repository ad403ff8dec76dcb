"""``edgelite serve`` and the container entry point (``python -m edgelite.serve serve``)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from .config import SAGEMAKER_MODEL_DIR, BatchPolicy, ServeConfig, Task

#: Micro-batching defaults per task, from the measurement in docs/serving.md: on the
#: batch-polymorphic zoo models, running what is already queued together (up to 8,
#: never waiting: delay 0) gave +8-12 % images/s at saturation and adds no latency to
#: a lone request; waiting 5 ms for company bought less. A model of your own is not
#: known to batch (a batch-1 file is run in a loop), so `model` stays off.
_OPPORTUNISTIC = BatchPolicy(8, 0.0)
DEFAULT_BATCH = {
    Task.MODEL: BatchPolicy(1, 0.0),
    Task.DETECT: _OPPORTUNISTIC,
    Task.EMBED: _OPPORTUNISTIC,
    Task.IDENTIFY: _OPPORTUNISTIC,
    Task.VERIFY: _OPPORTUNISTIC,
}


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model-dir", default=None,
                   help="models to serve (default: the zoo cache, built if missing; $EDGELITE_MODEL_DIR)")
    s.add_argument("--task", choices=[t.value for t in Task], default=None,
                   help="what POST /invocations does (default: $EDGELITE_SERVE_TASK or embed)")
    s.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: $SAGEMAKER_MODEL_SERVER_WORKERS or the number of cores)")
    s.add_argument("--threads", type=int, default=None, help="interpreter threads per worker (default: cores/workers)")
    s.add_argument("--host", default=None, help="address to bind (default 127.0.0.1: loopback only)")
    s.add_argument("--port", type=int, default=None, help="port (default: $SAGEMAKER_BIND_TO_PORT or 8080)")
    s.add_argument("--precision", choices=["int8", "float32"], default=None, help="zoo face models (default int8)")
    s.add_argument("--max-batch-size", type=int, default=None,
                   help="micro-batch size per worker; 1 turns batching off (default: per task, measured)")
    s.add_argument("--max-batch-delay-ms", type=float, default=None,
                   help="longest a request waits for batch-mates (default: per task, measured)")
    s.add_argument("--max-queue", type=int, default=None,
                   help="requests accepted and not yet answered before 503 (default 8 per worker: the bound on queueing latency)")
    s.add_argument("--timeout", type=float, default=None,
                   help="per-request timeout in s, then 504 (default: $SAGEMAKER_MODEL_SERVER_TIMEOUT or 60)")
    s.add_argument("--gallery", default=None, help="SQLite gallery (default: <model-dir>/gallery.db)")
    s.add_argument("--token-file", default=None,
                   help="file holding the bearer token of the gallery routes ($EDGELITE_SERVE_TOKEN_FILE); "
                        "without a token they are off")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.add_argument("--no-access-log", action="store_true", help="no per-request log line")


def config_from_args(a, *, container: bool = False) -> ServeConfig:
    task = Task(a.task or os.environ.get("EDGELITE_SERVE_TASK") or "embed")
    default_batch = DEFAULT_BATCH[task]
    batch = BatchPolicy(
        a.max_batch_size if a.max_batch_size is not None else default_batch.max_batch_size,
        a.max_batch_delay_ms if a.max_batch_delay_ms is not None else default_batch.max_batch_delay_ms)
    model_dir = a.model_dir or os.environ.get("EDGELITE_MODEL_DIR") or (SAGEMAKER_MODEL_DIR if container else None)
    host = a.host or (os.environ.get("EDGELITE_SERVE_HOST") or "0.0.0.0" if container else "127.0.0.1")
    cfg = ServeConfig.from_env(task=task, model_dir=model_dir, workers=a.workers, threads_per_worker=a.threads,
                               host=host, port=a.port, precision=a.precision, batch=batch,
                               timeout_s=a.timeout, gallery=a.gallery, token_file=a.token_file,
                               access_log=not a.no_access_log)
    # the queue bound is per worker by default, so it needs the resolved worker count
    return dataclasses.replace(cfg, max_queue=a.max_queue if a.max_queue is not None else 8 * cfg.workers)


def run(a, *, container: bool = False) -> int:
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        from ..errors import EdgeliteError
        raise EdgeliteError(f"`edgelite serve` needs the serve extra (missing: {', '.join(missing)}): "
                            "pip install 'edgelite[serve]'")
    from .app import serve

    serve(config_from_args(a, container=container), log_level=a.log_level)
    return 0


def container_main(argv=None) -> int:
    """The container's ENTRYPOINT. SageMaker starts it as ``docker run IMAGE serve``:
    then it serves ``/opt/ml/model`` on 0.0.0.0:$SAGEMAKER_BIND_TO_PORT (8080).
    Anything else is run as a command (``docker run IMAGE edgelite inspect m.tflite``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "serve":
        if argv:
            os.execvp(argv[0], argv)
        print("usage: IMAGE serve [edgelite serve options] | IMAGE <command>", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog="serve")
    add_arguments(p)
    a = p.parse_args(argv[1:])
    from ..errors import EdgeliteError
    try:
        return run(a, container=True)
    except EdgeliteError as e:
        print(f"edgelite serve: error: {e}", file=sys.stderr)
        return 2
