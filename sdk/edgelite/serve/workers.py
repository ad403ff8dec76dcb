"""Worker processes: one interpreter set each, micro-batching, supervision.

Shape of the plumbing::

    HTTP (asyncio, one process)          worker i (its own process, its own interpreters)
    ─────────────────────────            ────────────────────────────────────────────────
    WorkerPool.submit ──Queue[i]──────▶  take 1 request, wait ≤ max_batch_delay_ms for up
                                          to max_batch_size, send "taken" ids, run the batch
    results thread   ◀──Pipe[i]────────  (id, Response) per request; "ready" once loaded

* Workers are started with the ``spawn`` method: the interpreters are created
  inside the child after it started, never inherited through ``fork`` (TFLite
  interpreters and XNNPACK thread pools are not fork-safe).
* Dispatch is join-the-shortest-queue over ready workers.
* Each worker tells the parent which requests it has *taken* before running them.
  If a worker dies (a crash, an OOM kill, ``kill -9``), the requests it had taken
  are answered 500 at once — never left hanging — and the ones still waiting in
  its queue are handed to the other workers. The worker is restarted, with a
  back-off if it keeps dying at start-up (e.g. a corrupt model).
* Backpressure is one number: requests accepted and not yet answered, over all
  workers. At ``max_queue`` the next request is refused (503 + ``Retry-After``)
  before it costs anything, so overload degrades into fast refusals instead of a
  queue whose latency grows without bound.
* Queues and pipes are per worker, so a worker killed in the middle of a write
  can only break its own channel, which is replaced with the worker.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from multiprocessing.connection import wait as mp_wait

from .config import BatchPolicy
from .engine import Engine, ModelFiles, Request, Response, error_response

log = logging.getLogger("edgelite.serve")

_STOP = None  # sentinel on a request queue


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to start (picklable)."""

    files: ModelFiles
    num_threads: int
    batch: BatchPolicy
    eager: tuple
    writable_gallery: bool
    nice: int = 5


def worker_main(index: int, spec: WorkerSpec, requests: "mp.Queue", results, parent_pid: int) -> None:
    """Entry point of a worker process."""
    # SIGTERM/SIGINT go to the parent, which drains and then stops us with a sentinel:
    # a worker that died on the signal would drop requests the parent is still answering.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Workers yield the CPU to the HTTP process: when they saturate every core, the
    # front must still answer /ping, /metrics and the 503s of backpressure at once
    # (a starved front turns fast refusals into timeouts).
    if spec.nice:
        try:
            os.nice(spec.nice)
        except OSError:
            pass
    try:
        engine = Engine(spec.files, num_threads=spec.num_threads, eager=spec.eager,
                        writable_gallery=spec.writable_gallery)
    except BaseException as e:  # noqa: BLE001 - report why, then exit non-zero
        try:
            results.send(("failed", index, f"{type(e).__name__}: {e}"))
        finally:
            os._exit(3)
    results.send(("ready", index, os.getpid()))
    max_bs = spec.batch.max_batch_size
    delay = spec.batch.max_batch_delay_ms / 1e3
    while True:
        try:
            first = requests.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:  # orphaned: the server is gone
                break
            continue
        if first is _STOP:
            break
        batch = [first]
        stop = False
        t_end = time.monotonic() + delay
        while len(batch) < max_bs:
            try:  # whatever is already waiting joins at once; then wait at most until t_end
                item = requests.get_nowait()
            except queue.Empty:
                left = t_end - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = requests.get(timeout=left)
                except queue.Empty:
                    break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        now = time.time()
        live = [r for r in batch if r.deadline > now]
        for r in batch:
            if r.deadline <= now:  # nobody is waiting any more: do not spend CPU on it
                results.send(("done", r.id, error_response(504, "timeout", "request expired in the queue"), 0))
        if live:
            results.send(("taken", [r.id for r in live]))
            answers = engine.run_batch(live)
            for r, a in zip(live, answers):
                results.send(("done", r.id, a, len(live)))
        if stop:
            break
    engine.close()


class Overloaded(Exception):
    """The queue is full: answer 503 with Retry-After."""


class _Worker:
    def __init__(self, index: int):
        self.index = index
        self.proc = None
        self.requests = None
        self.results = None
        self.ready = False
        self.queued: dict[int, Request] = {}   # sent, not yet taken
        self.taken: set[int] = set()           # taken, not yet answered
        self.failures = 0
        self.restart_at = 0.0
        self.last_error: str | None = None

    @property
    def load(self) -> int:
        return len(self.queued) + len(self.taken)


class WorkerPool:
    """Starts, feeds and supervises the worker processes (lives in the HTTP process).

    Args:
        n: number of worker processes.
        spec: what each worker loads and how it batches.
        max_queue: requests accepted and not yet answered, over all workers.
        metrics: a :class:`~edgelite.serve.metrics.Metrics` (optional).
    """

    def __init__(self, n: int, spec: WorkerSpec, *, max_queue: int, metrics=None):
        self.spec = spec
        self.max_queue = max_queue
        self.metrics = metrics
        self._ctx = mp.get_context("spawn")
        self._workers = [_Worker(i) for i in range(n)]
        self._futures: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future, int]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        for w in self._workers:
            self._spawn(w)
        self._thread = threading.Thread(target=self._results_loop, name="edgelite-results", daemon=True)
        self._thread.start()

    def _spawn(self, w: _Worker) -> None:
        w.requests = self._ctx.Queue()
        r, s = self._ctx.Pipe(duplex=False)
        w.results = r
        w.ready = False
        w.proc = self._ctx.Process(target=worker_main, args=(w.index, self.spec, w.requests, s, os.getpid()),
                                   name=f"edgelite-worker-{w.index}", daemon=True)
        w.proc.start()
        s.close()  # the child holds the write end; EOF on ours means it is gone
        self._poke()

    def _poke(self):
        try:
            self._wake_w.send_bytes(b"x")
        except OSError:
            pass

    @property
    def ready(self) -> bool:
        """True when every worker has its models loaded."""
        return all(w.ready for w in self._workers)

    @property
    def ready_count(self) -> int:
        return sum(w.ready for w in self._workers)

    @property
    def pending(self) -> int:
        return len(self._futures)

    @property
    def queued(self) -> int:
        with self._lock:
            return sum(len(w.queued) for w in self._workers)

    def worker_pids(self) -> list[int | None]:
        return [w.proc.pid if w.proc is not None else None for w in self._workers]

    def last_errors(self) -> list[str | None]:
        return [w.last_error for w in self._workers]

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers after they finished what they have taken."""
        self._closing = True
        for w in self._workers:
            try:
                w.requests.put(_STOP)
            except (OSError, ValueError, AttributeError):
                pass
        deadline = time.monotonic() + timeout
        for w in self._workers:
            if w.proc is not None:
                w.proc.join(max(0.0, deadline - time.monotonic()))
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(2)
        self._poke()
        if self._thread is not None:
            self._thread.join(2)
        with self._lock:
            futs = list(self._futures.items())
            self._futures.clear()
        for _, (loop, fut, _) in futs:
            loop.call_soon_threadsafe(_set, fut, error_response(503, "shutting_down", "the server is shutting down"))

    # -- requests --------------------------------------------------------------------
    async def submit(self, req: Request) -> Response:
        """Queue a request on the least-loaded worker and wait for its answer.

        Raises:
            Overloaded: ``max_queue`` requests are already pending.
        """
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._closing:
                return error_response(503, "shutting_down", "the server is shutting down")
            if len(self._futures) >= self.max_queue:
                raise Overloaded()
            req.id = next(self._ids)
            w = self._pick()
            self._futures[req.id] = (loop, fut, w.index)
            w.queued[req.id] = req
            w.requests.put(req)
        self._gauges()
        try:
            return await fut
        finally:
            with self._lock:
                entry = self._futures.pop(req.id, None)
                if entry is not None:  # timed out / cancelled: forget it, the answer will be dropped
                    wk = self._workers[entry[2]]
                    wk.queued.pop(req.id, None)
            self._gauges()

    def _pick(self) -> _Worker:
        alive = [w for w in self._workers if w.ready] or [w for w in self._workers if w.proc is not None
                                                          and w.proc.is_alive()] or self._workers
        return min(alive, key=lambda w: (w.load, w.index))

    def _gauges(self):
        if self.metrics is not None:
            self.metrics.inflight.set(len(self._futures))
            self.metrics.queue_depth.set(sum(len(w.queued) for w in self._workers))

    # -- results thread -------------------------------------------------------------
    def _results_loop(self) -> None:
        while not (self._closing and all(w.proc is None or not w.proc.is_alive() for w in self._workers)):
            conns = {}
            for w in self._workers:
                if w.results is not None:
                    conns[w.results] = w
                if w.proc is not None:
                    conns[w.proc.sentinel] = w
            conns[self._wake_r] = None
            now = time.monotonic()
            due = [w.restart_at - now for w in self._workers if w.proc is None and not self._closing]
            timeout = max(0.0, min(due)) if due else 1.0
            try:
                ready = mp_wait(list(conns), timeout=min(timeout, 1.0))
            except OSError:
                ready = []
            for c in ready:
                w = conns.get(c)
                if w is None:
                    try:
                        while self._wake_r.poll():
                            self._wake_r.recv_bytes()
                    except (OSError, EOFError):
                        pass
                    continue
                if c is w.results:
                    self._drain(w)
                elif w.proc is not None and c is w.proc.sentinel:
                    self._drain(w)
                    self._on_death(w)
            for w in self._workers:
                if w.proc is None and not self._closing and time.monotonic() >= w.restart_at:
                    self._spawn(w)

    def _drain(self, w: _Worker) -> None:
        conn = w.results
        if conn is None:
            return
        try:
            while conn.poll():
                msg = conn.recv()
                self._handle(w, msg)
        except (EOFError, OSError):
            pass

    def _handle(self, w: _Worker, msg) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready = True
            w.failures = 0
            w.last_error = None
            if self.metrics is not None:
                self.metrics.workers_ready.set(self.ready_count)
            log.info("worker %d ready (pid %d)", w.index, msg[2])
        elif kind == "failed":
            w.last_error = msg[2]
            log.error("worker %d could not load its models: %s", w.index, msg[2])
        elif kind == "taken":
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(msg[1]))
            with self._lock:
                for rid in msg[1]:
                    w.queued.pop(rid, None)
                    w.taken.add(rid)
            self._gauges()
        elif kind == "done":
            _, rid, resp, bs = msg
            with self._lock:
                w.taken.discard(rid)
                w.queued.pop(rid, None)
                entry = self._futures.get(rid)
            if entry is not None:
                loop, fut, _ = entry
                loop.call_soon_threadsafe(_set, fut, resp)

    def _on_death(self, w: _Worker) -> None:
        code = w.proc.exitcode
        was_ready = w.ready
        w.proc.join(0.1)
        w.proc = None
        w.ready = False
        try:
            w.results.close()
        except OSError:
            pass
        w.results = None
        old_q = w.requests
        w.requests = None
        try:
            old_q.cancel_join_thread()
            old_q.close()
        except (OSError, AttributeError, ValueError):
            pass
        if self._closing:
            return
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        log.error("worker %d died (%s); restarting", w.index, how)
        if self.metrics is not None:
            self.metrics.worker_restarts.inc()
            self.metrics.workers_ready.set(self.ready_count)
        with self._lock:
            lost = list(w.taken)
            waiting = list(w.queued.values())
            w.taken.clear()
            w.queued.clear()
            entries = [(rid, self._futures.get(rid)) for rid in lost]
        for rid, entry in entries:  # was running on it: we cannot know how far it got
            if entry is not None:
                loop, fut, _ = entry
                loop.call_soon_threadsafe(_set, fut, error_response(
                    500, "worker_died", f"the worker processing this request died ({how}); it was not completed"))
        # Not started yet: give them to the other workers (or to the restarted one).
        w.failures = 0 if was_ready else w.failures + 1
        w.restart_at = time.monotonic() + (0.0 if was_ready else min(10.0, 0.5 * 2 ** min(w.failures, 5)))
        others = [o for o in self._workers if o is not w and o.proc is not None]
        for req in waiting:
            with self._lock:
                entry = self._futures.get(req.id)
                if entry is None:
                    continue
                target = min(others, key=lambda o: o.load) if others else None
                if target is None:
                    self._futures[req.id] = (entry[0], entry[1], w.index)
                    continue  # re-sent below, once the worker is back
                self._futures[req.id] = (entry[0], entry[1], target.index)
                target.queued[req.id] = req
                target.requests.put(req)
        if not others:
            if w.restart_at <= time.monotonic():
                self._spawn(w)
            if w.proc is not None:
                with self._lock:
                    for req in waiting:
                        if req.id in self._futures:
                            w.queued[req.id] = req
                            w.requests.put(req)
            else:
                for req in waiting:  # cannot restart yet: fail them rather than hold them
                    entry = self._futures.get(req.id)
                    if entry is not None:
                        entry[0].call_soon_threadsafe(_set, entry[1], error_response(
                            503, "no_worker", "no worker is available; retry later"))


def _set(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)
