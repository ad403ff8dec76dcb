"""The timing core shared by ``edgelite bench`` and ``device_tests/``.

Modelled on TFLite's ``benchmark_model``: time the init (parse + interpreter +
delegate), the first inference (XNNPACK packs weights lazily, so it is slow),
some warm-up runs, then timed runs until both a run count and a minimum duration
are met. Report mean/std/min/max and p50/p90/p99, and peak RSS.

Quote medians: on shared or thermally throttled machines the mean is pulled by
outliers. Compare two configurations as a ratio measured *in the same run*.
"""
from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time
from typing import Callable

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB.

    On Linux from ``VmHWM`` in ``/proc/self/status``: ``ru_maxrss`` survives
    ``exec`` and can report the parent's peak (a Python launcher that imported
    TensorFlow, say) instead of ours.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


@dataclasses.dataclass(frozen=True)
class TimingStats:
    """Latency statistics in milliseconds."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float

    @classmethod
    def from_samples(cls, samples_ms) -> "TimingStats":
        a = np.asarray(samples_ms, np.float64)
        if a.size == 0:
            raise ValueError("no timing samples")
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(int(a.size), float(a.mean()), float(a.std()), float(a.min()), float(a.max()),
                   float(p50), float(p90), float(p99))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def time_callable(fn: Callable[[], object], *, runs: int = 50, min_seconds: float = 0.0,
                  warmup: int = 5, max_seconds: float | None = None) -> TimingStats:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``runs`` calls and at
    least ``min_seconds`` of timed calls (whichever is longer), stopping at ``max_seconds``."""
    for _ in range(max(0, warmup)):
        fn()
    samples = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if len(samples) >= runs and elapsed >= min_seconds:
            break
        if max_seconds is not None and elapsed >= max_seconds and samples:
            break
    return TimingStats.from_samples(samples)


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """Everything ``edgelite bench`` reports."""

    model: str
    size_bytes: int
    backend: str
    backend_version: str | None
    delegates: tuple[str, ...]
    num_threads: int
    init_ms: float
    first_inference_ms: float
    warmup_runs: int
    latency: TimingStats
    peak_rss_mb: float
    inputs: tuple[dict, ...]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["latency"] = self.latency.to_dict()
        d["delegates"] = list(self.delegates)
        d["inputs"] = list(self.inputs)
        return d

    def to_text(self) -> str:
        L = self.latency
        return "\n".join([
            f"model            {self.model} ({self.size_bytes / 1024:.1f} KiB)",
            f"backend          {self.backend} {self.backend_version or ''}".rstrip(),
            f"delegates        {', '.join(self.delegates) or 'none (builtin kernels)'}",
            f"threads          {self.num_threads}",
            f"init             {self.init_ms:.2f} ms",
            f"first inference  {self.first_inference_ms:.2f} ms",
            f"warm-up runs     {self.warmup_runs}",
            f"runs             {L.count}",
            f"latency ms       mean {L.mean:.3f}  std {L.std:.3f}  p50 {L.p50:.3f}  p90 {L.p90:.3f}  "
            f"p99 {L.p99:.3f}  min {L.min:.3f}  max {L.max:.3f}",
            f"peak RSS         {self.peak_rss_mb:.1f} MiB",
        ])


def random_inputs(model, seed: int = 0) -> list[np.ndarray]:
    """Random inputs matching each input's shape and dtype (full integer range for ints)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in model.inputs:
        dt = np.dtype(s.dtype)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, info.max, size=s.shape, endpoint=True).astype(dt))
        elif dt.kind == "b":
            out.append(rng.integers(0, 2, size=s.shape).astype(bool))
        else:
            out.append(rng.standard_normal(s.shape).astype(dt))
    return out


def benchmark(model_path: str | os.PathLike | bytes, *, num_threads: int | None = None,
              runs: int = 50, min_seconds: float = 1.0, warmup: int = 5, delegates=("xnnpack",),
              backend: str | None = None, inputs=None) -> BenchmarkResult:
    """Benchmark one model file: init, first inference, warm-up, timed runs (raw I/O, no
    (de)quantization, so the number is the interpreter's)."""
    from .model import Model

    size = len(model_path) if isinstance(model_path, (bytes, bytearray)) else os.path.getsize(model_path)
    t0 = time.perf_counter()
    m = Model(model_path, num_threads=num_threads, delegates=delegates, backend=backend)
    init_ms = (time.perf_counter() - t0) * 1e3
    feed = inputs if inputs is not None else random_inputs(m)

    def once():
        m.run(feed, quantize=False, dequantize=False)

    t0 = time.perf_counter()
    once()
    first_ms = (time.perf_counter() - t0) * 1e3
    stats = time_callable(once, runs=runs, min_seconds=min_seconds, warmup=warmup)
    return BenchmarkResult(
        model=str(model_path) if not isinstance(model_path, (bytes, bytearray)) else "<bytes>",
        size_bytes=size, backend=m.backend, backend_version=m.backend_status.version,
        delegates=m.delegates, num_threads=m.num_threads, init_ms=init_ms, first_inference_ms=first_ms,
        warmup_runs=warmup, latency=stats, peak_rss_mb=peak_rss_mb(),
        inputs=tuple(s.to_dict() for s in m.inputs),
    )
