"""The ``local`` engine: worker processes on this machine.

* Workers are started with ``spawn`` (or ``forkserver``), never ``fork``: each
  builds its own interpreters after it starts, and nothing native (XNNPACK thread
  pools, open interpreters, SQLite handles) is inherited from the parent.
* The parent hands out shards (``shard_size`` consecutive inputs of the sorted
  list), at most two per worker ahead, and is the only writer of the manifest.
* A worker decodes in a reader thread while its interpreter runs (see
  :func:`~edgelite.batch.runner.prefetch`), writes the shard's errors then its
  rows atomically, and reports back.
* Ctrl-C: workers ignore SIGINT; the parent stops them, keeps the manifest of
  completed shards and re-raises ``KeyboardInterrupt``. Work in progress exists
  only as temporary files, removed at the next start.
"""
from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from pathlib import Path

from .options import BatchError, BatchOptions, Task
from .output import (
    ERRORS_DIR, MANIFEST, gather_errors, remove_temps, shard_name, write_json, write_shard,
)

_PROGRESS_EVERY = 8  # inputs between progress messages from a worker
#: Pool restarts after a worker process died (OOM killer, a native crash in a decoder)
#: before the run gives up; a shard that killed a worker twice stops the run at once.
MAX_RESTARTS = 3
_log = logging.getLogger("edgelite.batch")


class _WorkerDied(Exception):
    def __init__(self, pid: int, exitcode: int | None, shard: int | None):
        super().__init__(pid, exitcode, shard)
        self.pid, self.exitcode, self.shard = pid, exitcode, shard


def _worker_main(task: str, options: BatchOptions, threads: int, out: str, task_q, result_q) -> None:
    """Entry point of one worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C does
    pid = os.getpid()
    try:
        from .runner import TaskRunner, prefetch

        runner = TaskRunner(task, options, threads)
        runner.schema  # noqa: B018 - loads the models now: a bad model fails the run at once
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
        result_q.put(("fatal", pid, None, f"{type(e).__name__}: {e}"))
        return
    result_q.put(("ready", pid))
    parent = mp.parent_process()

    def orphaned() -> bool:
        # A parent killed with SIGKILL cannot stop its workers: they notice and exit on
        # their own, leaving only temporary files (removed by the next run).
        return parent is not None and not parent.is_alive()

    while True:
        try:
            job = task_q.get(timeout=1.0)
        except queue.Empty:
            if orphaned():
                os._exit(3)
            continue
        if job is None:
            break
        index, paths = job
        result_q.put(("start", pid, index))
        ticks = 0

        def tick():
            nonlocal ticks
            ticks += 1
            if ticks % _PROGRESS_EVERY == 0 and orphaned():
                os._exit(3)
            if ticks >= _PROGRESS_EVERY:
                result_q.put(("progress", pid, ticks))
                ticks = 0

        try:
            table, errors = runner.process(prefetch(paths, runner.decode_path, options.prefetch), on_input=tick)
            write_shard(Path(out), index, table, errors, options.format)
        except BaseException as e:  # noqa: BLE001
            result_q.put(("fatal", pid, index, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"))
            return
        result_q.put(("done", pid, index, table.num_rows, len(errors), ticks))
    runner.close()


def run_local(task: Task, paths: list[str], out: Path, options: BatchOptions, manifest: dict) -> dict:
    """Process the shards of ``paths`` not yet in ``manifest['completed']``.

    Returns the updated manifest. Raises ``KeyboardInterrupt`` after a clean stop,
    :class:`BatchError` when a worker fails or dies.
    """
    from .progress import progress_bar

    k = options.shard_size
    n_shards = math.ceil(len(paths) / k)
    done = {int(s.split("-")[1]) for s in manifest["completed"]}
    ext = "." + options.format.value
    done = {i for i in done if (out / (shard_name(i) + ext)).is_file()}
    manifest["completed"] = [shard_name(i) for i in sorted(done)]
    todo = [i for i in range(n_shards) if i not in done]
    remove_temps(out)
    t0 = time.perf_counter()
    if todo:
        done_inputs = sum(min(k, len(paths) - i * k) for i in done)
        bar = progress_bar(len(paths), done_inputs, options.progress, desc=f"{task.value}")
        crashes: dict[int | None, int] = {}
        try:
            while todo:
                try:
                    _run_pool(task, paths, out, options, manifest, todo, done, bar)
                    break
                except _WorkerDied as e:
                    # A dead worker may have taken a shard off the queue without a word: restart
                    # the pool on every shard not done (atomic shards make redoing one harmless).
                    crashes[e.shard] = crashes.get(e.shard, 0) + 1
                    manifest["worker_restarts"] = manifest.get("worker_restarts", 0) + 1
                    where = shard_name(e.shard) if e.shard is not None else "its first shard"
                    if manifest["worker_restarts"] > MAX_RESTARTS or (e.shard is not None and crashes[e.shard] > 1):
                        raise BatchError(
                            f"worker process {e.pid} died (exit code {e.exitcode}) while processing {where}"
                            f"{' for the second time' if e.shard is not None and crashes[e.shard] > 1 else ''}; "
                            f"the {len(done)} completed shard(s) are kept: rerun the same command to resume "
                            f"(shard {where} holds inputs {where.split('-')[-1]} x shard_size onwards of the "
                            "sorted list)") from None
                    _log.warning("worker process %s died (exit code %s) while processing %s; restarting the "
                                 "workers on the %d shard(s) not done", e.pid, e.exitcode, where,
                                 n_shards - len(done))
                    todo = [i for i in range(n_shards) if i not in done]
                    bar.n = sum(min(k, len(paths) - i * k) for i in done)  # in-progress work is redone
                    if hasattr(bar, "refresh"):
                        bar.refresh()
        finally:
            bar.close()
    manifest["errors_total"] = gather_errors(out, sorted(done), options.format)
    manifest["rows_total"] = sum(manifest["rows"].values())
    manifest["finished"] = True
    manifest["seconds_last_run"] = round(time.perf_counter() - t0, 3)
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(out / MANIFEST, manifest)
    return manifest


def _run_pool(task, paths, out, options, manifest, todo, done, bar) -> None:
    k = options.shard_size
    workers = min(options.resolved_workers(), len(todo))
    threads = options.resolved_threads()
    ctx = mp.get_context(options.start_method)
    task_q, result_q = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker_main, name=f"edgelite-batch-{i}",
                         args=(task.value, options, threads, str(out), task_q, result_q), daemon=True)
             for i in range(workers)]
    pending = list(todo)
    in_flight: dict[int, int] = {}  # pid -> shard index being processed
    outstanding = 0
    t_start, ready = time.perf_counter(), 0

    def record(msg) -> None:
        _, pid, index, rows, errs, ticks = msg
        bar.update(ticks)
        in_flight.pop(pid, None)
        done.add(index)
        manifest["completed"] = [shard_name(i) for i in sorted(done)]
        manifest["rows"][shard_name(index)] = rows
        manifest["errors"][shard_name(index)] = errs
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(out / MANIFEST, manifest)

    def feed(n: int) -> None:
        nonlocal outstanding
        for _ in range(n):
            if not pending:
                return
            i = pending.pop(0)
            task_q.put((i, paths[i * k:(i + 1) * k]))
            outstanding += 1

    try:
        for p in procs:
            p.start()
        feed(2 * workers)
        while outstanding:
            try:
                msg = result_q.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                if dead:
                    p = dead[0]
                    raise _WorkerDied(p.pid, p.exitcode, in_flight.get(p.pid))
                continue
            kind = msg[0]
            if kind == "ready":
                ready += 1
                if ready == workers:  # spawn + imports + model loading, what a run pays before its first image
                    manifest["seconds_startup_last_run"] = round(time.perf_counter() - t_start, 3)
            elif kind == "progress":
                bar.update(msg[2])
            elif kind == "start":
                in_flight[msg[1]] = msg[2]
            elif kind == "done":
                record(msg)
                outstanding -= 1
                feed(1)
            elif kind == "fatal":
                _, pid, index, text = msg
                where = f" on {shard_name(index)}" if index is not None else " while loading its models"
                raise BatchError(f"a worker failed{where}: {text.strip()}")
        for _ in procs:
            task_q.put(None)
        for p in procs:
            p.join(timeout=30)
    finally:
        with _sigint_deferred():
            _stop_and_reconcile(procs, task_q, result_q, record, out, options, manifest)


def _stop_and_reconcile(procs, task_q, result_q, record, out, options, manifest) -> None:
    """Stop the workers, record what they finished, make the files equal the manifest."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
    # Stopped early (Ctrl-C, a failure): shards whose "done" was already sent are
    # recorded; a shard file whose worker was stopped before it reported is removed
    # (it is redone on resume). Either way the files on disk are exactly the
    # manifest's completed shards.
    try:
        while True:
            msg = result_q.get(timeout=0.2)
            if msg[0] == "done":
                record(msg)
    except Exception:  # noqa: BLE001 - empty, or a message cut short by a killed worker: stop draining
        pass
    ext = "." + options.format.value
    for p in out.glob("part-*" + ext):
        if p.name[: -len(ext)] not in manifest["completed"]:
            p.unlink(missing_ok=True)
            (out / ERRORS_DIR / p.name).unlink(missing_ok=True)
    # record() may have been cut short by Ctrl-C between the in-memory update and
    # the manifest's rename: write it again so the disk holds what memory holds.
    write_json(out / MANIFEST, manifest)
    for q in (task_q, result_q):
        q.cancel_join_thread()
        q.close()
    remove_temps(out)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C that arrives during cleanup until the cleanup is over, then act on it.

    The cleanup is bounded (joins with timeouts). Blocking the signal with
    ``pthread_sigmask`` would not do: the queues' feeder threads would take it and
    Python would still raise in the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers run in the main thread only: nothing to defer here
        return
    hits: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if hits and callable(previous):
        previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
