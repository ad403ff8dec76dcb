"""Server configuration: one frozen, validated dataclass, filled from flags and the
SageMaker environment.

Precedence for each setting: an explicit argument (CLI flag) > the environment
variable > the default. The SageMaker bring-your-own-container contract fixes the
environment variable names and defaults:

=================================  ===========================================
``SAGEMAKER_BIND_TO_PORT``         port to listen on (default 8080)
``SAGEMAKER_MODEL_SERVER_WORKERS`` worker processes (default: number of cores)
``SAGEMAKER_MODEL_SERVER_TIMEOUT`` per-request timeout in seconds (default 60)
``SAGEMAKER_MAX_PAYLOAD_IN_MB``    largest request body (default 6, else 413)
=================================  ===========================================

edgelite's own variables: ``EDGELITE_SERVE_TOKEN`` / ``EDGELITE_SERVE_TOKEN_FILE``
(bearer token of the gallery-changing routes; unset = those routes are off),
``EDGELITE_SERVE_TASK`` (what ``/invocations`` does), ``EDGELITE_MODEL_DIR``.
"""
from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path

from ..errors import InputError

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_PAYLOAD_MB = 6.0
SAGEMAKER_MODEL_DIR = "/opt/ml/model"


class Task(str, enum.Enum):
    """What ``POST /invocations`` does."""

    MODEL = "model"        # any edgelite model: npy / JSON arrays in, npy / JSON out
    DETECT = "detect"      # faces: boxes, landmarks, scores
    EMBED = "embed"        # faces + 128-D embeddings
    IDENTIFY = "identify"  # faces + names from the gallery
    VERIFY = "verify"      # one face vs a claimed name, or two images


FACE_TASKS = (Task.DETECT, Task.EMBED, Task.IDENTIFY, Task.VERIFY)


def _env_number(name: str, kind, default):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InputError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None


@dataclasses.dataclass(frozen=True)
class BatchPolicy:
    """Micro-batching inside one worker.

    The worker takes the first waiting request, then keeps collecting until it has
    ``max_batch_size`` requests or ``max_batch_delay_ms`` have passed since the first
    one arrived, and runs them together (one embedder call for every face of every
    request, one matrix product against the gallery, one model run for stacked
    ``model`` inputs). ``max_batch_size=1`` turns it off: no request ever waits for
    company. Waiting only pays where the model runs a batch faster per item than
    one at a time; see ``docs/serving.md`` for the measurement behind the defaults.
    """

    max_batch_size: int = 1
    max_batch_delay_ms: float = 0.0

    def __post_init__(self):
        if not isinstance(self.max_batch_size, int) or isinstance(self.max_batch_size, bool) \
                or not 1 <= self.max_batch_size <= 256:
            raise InputError(f"max_batch_size must be an int in [1, 256], got {self.max_batch_size!r}")
        if not isinstance(self.max_batch_delay_ms, (int, float)) or not 0 <= self.max_batch_delay_ms <= 1000:
            raise InputError(f"max_batch_delay_ms must be in [0, 1000], got {self.max_batch_delay_ms!r}")

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """Everything the server needs; build it with :meth:`from_env`.

    Attributes:
        task: what ``/invocations`` does (the native ``/v1/...`` routes are always on).
        model_dir: directory with the models (see ``docs/serving.md`` for the
            layout); ``None`` = the zoo cache (built if missing).
        host, port: where to listen. The default host is loopback: exposing a
            server is a decision, not an accident (the container entry point
            binds 0.0.0.0 because that is its job).
        workers: inference processes, each with its own interpreters.
        threads_per_worker: interpreter threads per worker (``None``: cores / workers,
            at least 1; more threads than cores only adds contention).
        precision: ``int8`` or ``float32`` zoo face models.
        batch: micro-batching policy.
        max_queue: requests accepted but not yet answered, over all workers; one
            more gets 503 with ``Retry-After`` (backpressure instead of collapse).
        timeout_s: per-request deadline; past it the client gets 504.
        max_payload_bytes: larger bodies get 413 without being read.
        token: bearer token of the gallery-changing routes (``None``: they are off).
        gallery: path of the SQLite gallery (default ``<model_dir>/gallery.db``).
        graceful_shutdown_s: on SIGTERM, how long in-flight requests may take to finish.
        access_log: log one line per request (route template, status, latency; never
            bodies, names or query strings).
    """

    task: Task = Task.EMBED
    model_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    threads_per_worker: int | None = None
    precision: str = "int8"
    batch: BatchPolicy = BatchPolicy()
    max_queue: int = 64
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_payload_bytes: int = int(DEFAULT_MAX_PAYLOAD_MB * 1024 * 1024)
    token: str | None = dataclasses.field(default=None, repr=False)
    gallery: Path | None = None
    graceful_shutdown_s: float = 20.0
    access_log: bool = True

    def __post_init__(self):
        try:
            object.__setattr__(self, "task", Task(self.task))
        except ValueError:
            raise InputError(f"task must be one of {[t.value for t in Task]}, got {self.task!r}") from None
        if self.precision not in ("int8", "float32"):
            raise InputError(f"precision must be 'int8' or 'float32', got {self.precision!r}")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InputError(f"port must be in [0, 65535], got {self.port!r}")
        if not isinstance(self.workers, int) or not 1 <= self.workers <= 256:
            raise InputError(f"workers must be an int in [1, 256], got {self.workers!r}")
        if self.threads_per_worker is not None and (not isinstance(self.threads_per_worker, int)
                                                    or self.threads_per_worker < 1):
            raise InputError(f"threads_per_worker must be a positive int or None, got {self.threads_per_worker!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            raise InputError(f"max_queue must be a positive int, got {self.max_queue!r}")
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise InputError(f"timeout must be > 0 seconds, got {self.timeout_s!r}")
        if not (isinstance(self.max_payload_bytes, int) and self.max_payload_bytes > 0):
            raise InputError(f"max payload must be > 0 bytes, got {self.max_payload_bytes!r}")
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) < 16):
            raise InputError("the gallery token must be a string of at least 16 characters "
                             "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.gallery is not None:
            object.__setattr__(self, "gallery", Path(self.gallery))

    @property
    def interpreter_threads(self) -> int:
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        return max(1, (os.cpu_count() or 1) // self.workers)

    @classmethod
    def from_env(cls, **overrides) -> "ServeConfig":
        """Defaults < environment (SageMaker's and edgelite's) < ``overrides`` (flags).

        ``None`` values in ``overrides`` mean "not given" and fall through.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        env: dict = {}
        port = _env_number("SAGEMAKER_BIND_TO_PORT", int, None)
        if port is not None:
            env["port"] = port
        workers = _env_number("SAGEMAKER_MODEL_SERVER_WORKERS", int, None)
        env["workers"] = workers if workers is not None else max(1, os.cpu_count() or 1)
        env["timeout_s"] = _env_number("SAGEMAKER_MODEL_SERVER_TIMEOUT", float, DEFAULT_TIMEOUT_S)
        mb = _env_number("SAGEMAKER_MAX_PAYLOAD_IN_MB", float, DEFAULT_MAX_PAYLOAD_MB)
        if mb <= 0:
            raise InputError(f"SAGEMAKER_MAX_PAYLOAD_IN_MB must be > 0, got {mb!r}")
        env["max_payload_bytes"] = int(mb * 1024 * 1024)
        if os.environ.get("EDGELITE_SERVE_TASK"):
            env["task"] = os.environ["EDGELITE_SERVE_TASK"]
        if os.environ.get("EDGELITE_MODEL_DIR"):
            env["model_dir"] = os.environ["EDGELITE_MODEL_DIR"]
        token = read_token(given.pop("token_file", None))
        if token is not None:
            env["token"] = token
        return cls(**{**env, **given})


def read_token(token_file: str | os.PathLike | None = None) -> str | None:
    """The gallery token: ``token_file`` > ``EDGELITE_SERVE_TOKEN_FILE`` > ``EDGELITE_SERVE_TOKEN``.

    A file is preferred over the variable because environment variables leak into
    ``/proc/<pid>/environ``, crash reports and ``docker inspect``.
    """
    path = token_file or os.environ.get("EDGELITE_SERVE_TOKEN_FILE")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise InputError(f"cannot read the token file {str(path)!r}: {e.strerror or e}") from None
        if not text:
            raise InputError(f"the token file {str(path)!r} is empty")
        return text
    tok = os.environ.get("EDGELITE_SERVE_TOKEN")
    return tok.strip() if tok and tok.strip() else None
