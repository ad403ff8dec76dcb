"""Shared helpers of the device benchmark scripts (not a test module, not public API).

Everything here uses only the standard library, numpy and edgelite's public API,
so the scripts run on a Raspberry Pi with nothing but the runtime installed.
matplotlib is optional: without it the plots are skipped with a note, the JSON,
Markdown and CSV reports are still written.

Result files share one layout (``SCHEMA``):

* ``system``: what ran (board, CPU, governor, Python, backend, versions, models
  and their SHA-256, device id, timestamp) -- see :func:`system_record`;
* ``config``: the command-line settings;
* script-specific sections (``results``, ``stages``, ``sustained`` ...);
* ``metrics``: a flat ``{key: {"value", "unit", "better"}}`` table that
  ``compare.py`` diffs between two runs (``better`` is ``"lower"`` for latencies
  and memory, ``"higher"`` for speed-up ratios).
"""
from __future__ import annotations

import csv
import datetime as _dt
import glob
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SCHEMA = "edgelite-device-bench/1"
HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results"


# -- device identity --------------------------------------------------------------
def sanitize(text: str, max_len: int = 48) -> str:
    """Lower-case ``[a-z0-9-]`` slug (safe as a directory name on any filesystem)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (s[:max_len].rstrip("-")) or "unknown"


def device_id() -> str:
    """Hostname + machine, sanitised, e.g. ``raspberrypi-aarch64``.

    The hostname tells devices of a fleet apart; the machine suffix keeps an
    x86 workstation and an arm64 board with the same default hostname apart.
    Override with ``--device-id`` when several boards share a hostname.
    """
    return sanitize(f"{socket.gethostname()}-{platform.machine()}")


def results_dir(base: str | os.PathLike | None, dev_id: str | None) -> Path:
    """``<base>/<device-id>/`` (created)."""
    d = Path(base) if base else DEFAULT_RESULTS
    d = d / (dev_id or device_id())
    d.mkdir(parents=True, exist_ok=True)
    return d


# -- memory ------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak RSS of this process in MiB, from ``VmHWM`` when Linux exposes it.

    Why not only ``edgelite.bench.peak_rss_mb`` (``getrusage`` ``ru_maxrss``): on
    Linux ``ru_maxrss`` survives ``fork``/``execve`` -- a worker started by a
    parent holding 70 MiB reports at least 70 MiB before it has loaded anything.
    ``VmHWM`` belongs to the address space created by ``execve``, so a fresh
    worker process starts from its own footprint. Elsewhere (macOS) fall back
    to ``ru_maxrss``.
    """
    text = _read("/proc/self/status") or ""
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    from edgelite.bench import peak_rss_mb as ru_peak

    return ru_peak()


# -- thermal / clock state ----------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def thermal_state() -> dict:
    """CPU temperature(s), clock and throttling flags, whatever this device exposes.

    * ``temps_c``: every ``/sys/class/thermal/thermal_zone*/temp`` (milli-degrees C)
      by zone type (``cpu-thermal`` on a Pi);
    * ``freq_mhz``: ``cpu0`` ``scaling_cur_freq`` -- a Pi drops from 2400/1800 MHz to
      1500/1000 MHz or lower when hot or under-powered, which is why the sustained
      mode logs it next to the latency;
    * ``throttled``: ``vcgencmd get_throttled`` (Raspberry Pi firmware) as an int
      and decoded flags (bit 0 under-voltage now, 1 frequency capped now, 2
      throttled now, 3 soft temperature limit now; bits 16-19 the same "since boot").

    Missing sources are simply absent (a VM has no thermal zones).
    """
    out: dict = {}
    temps = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        raw = _read(f"{zone}/temp")
        if raw is None:
            continue
        try:
            value = int(raw) / 1000.0
        except ValueError:
            continue
        kind = _read(f"{zone}/type") or os.path.basename(zone)
        temps[f"{kind}:{os.path.basename(zone)}"] = value
    if temps:
        out["temps_c"] = temps
        out["max_temp_c"] = max(temps.values())
    f = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if f and f.isdigit():
        out["freq_mhz"] = int(f) / 1000.0
    vc = shutil.which("vcgencmd")
    if vc:
        try:
            r = subprocess.run([vc, "get_throttled"], capture_output=True, text=True, timeout=2)
            m = re.search(r"0x[0-9a-fA-F]+", r.stdout)
            if m:
                v = int(m.group(0), 16)
                names = {0: "under_voltage", 1: "freq_capped", 2: "throttled", 3: "soft_temp_limit"}
                out["throttled"] = v
                out["throttled_now"] = [n for b, n in names.items() if v >> b & 1]
                out["throttled_since_boot"] = [n for b, n in names.items() if v >> (b + 16) & 1]
        except (OSError, subprocess.SubprocessError):
            pass
    return out


# -- system record ------------------------------------------------------------------
def system_record(models: list[dict] | None = None, *, probe_model: str | None = None,
                  num_threads: int | None = None) -> dict:
    """What ran where, for every result file.

    Args:
        models: ``[{"name", "precision", "path"}]``; their size and SHA-256 are added.
        probe_model: a ``.tflite`` to load once to record which backend and
            delegate edgelite picks here (``edgelite.Model.backend``/``delegates``).
        num_threads: the thread count to record with the probe.
    """
    import edgelite
    from edgelite import doctor, zoo

    rep = doctor.report()
    cpu = doctor.cpu_info()
    backend = next((b for b in rep["backends"] if b["ok"]), None)
    rec = {
        "device_id": None,  # filled by the caller (it may be overridden on the command line)
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "board": doctor.board_model(),
        "platform": rep["platform"],
        "machine": platform.machine(),
        "cpu_model": cpu.get("model"),
        "cpu_features": cpu.get("features", []),
        "cores": cpu.get("cores"),
        "governor": cpu.get("governor"),
        "python": rep["python"],
        "numpy": rep["numpy"],
        "edgelite": edgelite.__version__,
        "backend": backend["name"] if backend else None,
        "backend_version": backend["version"] if backend else None,
        "backends": rep["backends"],
        "optional": rep["optional"],
        "thermal_at_start": thermal_state(),
        "models": [],
    }
    if probe_model:
        try:
            m = edgelite.Model(probe_model, num_threads=num_threads or 1)
            rec["backend"], rec["backend_version"] = m.backend, m.backend_status.version
            rec["delegates"] = list(m.delegates)
        except Exception as e:  # noqa: BLE001 - a record must not kill the run
            rec["delegates_error"] = str(e)
    for m in models or []:
        p = Path(m["path"])
        entry = dict(m)
        if p.is_file():
            entry["size_bytes"] = p.stat().st_size
            entry["sha256"] = zoo.sha256_file(p)
        rec["models"].append(entry)
    return rec


def zoo_entries(names=None, precisions=None) -> list[dict]:
    """The zoo models present here as ``{"name", "precision", "path", "sha256", "size_bytes"}``."""
    from edgelite import zoo

    out = []
    for e in zoo.list_models():
        if names and e.name not in names:
            continue
        if precisions and e.precision not in precisions:
            continue
        out.append({"name": e.name, "precision": e.precision, "path": e.path, "sha256": e.sha256,
                    "size_bytes": e.size})
    return out


def default_threads() -> list[int]:
    """1 .. min(cores, 4): past 4 threads small models get slower from synchronisation."""
    return list(range(1, min(os.cpu_count() or 1, 4) + 1))


def parse_threads(text: str | None) -> list[int]:
    """``"1,2,4"`` or ``"1-4"`` -> sorted unique ints; ``None`` -> :func:`default_threads`."""
    if not text:
        return default_threads()
    vals: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            vals.update(range(int(a), int(b) + 1))
        elif part:
            vals.add(int(part))
    if not vals or min(vals) < 1:
        raise SystemExit(f"--threads must list positive ints, got {text!r}")
    return sorted(vals)


# -- writing reports ------------------------------------------------------------------
def metric(value: float, unit: str = "ms", better: str = "lower") -> dict:
    return {"value": float(value), "unit": unit, "better": better}


def write_json(path: str | os.PathLike, data: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, p)
    return p


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_metrics_csv(path: str | os.PathLike, metrics: dict) -> Path:
    """The ``metrics`` table as CSV (``metric,value,unit,better``): a per-board
    reference file that ``compare.py`` accepts like a JSON result."""
    p = Path(path)
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "value", "unit", "better"])
        for k, m in metrics.items():
            w.writerow([k, f"{m['value']:.6g}", m.get("unit", ""), m.get("better", "lower")])
    return p


def md_table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table; floats printed with 2 decimals (3 under 1)."""
    def fmt(v):
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def system_markdown(sysrec: dict) -> str:
    th = sysrec.get("thermal_at_start") or {}
    models = "; ".join(f"{m['name']}-{m.get('precision', '')} `{(m.get('sha256') or '')[:12]}`"
                       for m in sysrec.get("models", []))
    rows = [
        ["device id", sysrec.get("device_id")],
        ["timestamp (UTC)", sysrec.get("timestamp")],
        ["board", sysrec.get("board") or "- (no /proc/device-tree/model)"],
        ["CPU", f"{sysrec.get('cpu_model')} x{sysrec.get('cores')} ({sysrec.get('machine')})"],
        ["CPU features", " ".join(sysrec.get("cpu_features") or []) or "-"],
        ["governor", sysrec.get("governor") or "-"],
        ["Python / numpy", f"{sysrec.get('python')} / {sysrec.get('numpy')}"],
        ["backend", f"{sysrec.get('backend')} {sysrec.get('backend_version') or ''}".strip()],
        ["delegates", ", ".join(sysrec.get("delegates") or []) or "-"],
        ["edgelite", sysrec.get("edgelite")],
        ["OpenCV", (sysrec.get("optional") or {}).get("cv2", "-")],
        ["temperature at start", f"{th['max_temp_c']:.1f} C" if "max_temp_c" in th else "- (no thermal zone)"],
        ["throttled at start", ", ".join(th.get("throttled_now", [])) or ("no" if "throttled" in th else "-")],
        ["models", models or "-"],
    ]
    return md_table(["", ""], rows)


def matplotlib_or_none():
    """``matplotlib.pyplot`` with the non-interactive Agg backend, or ``None`` if absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless Pi / SSH: never try to open a window
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


# -- sustained runs --------------------------------------------------------------------
def run_sustained(step, *, minutes: float, interval_s: float = 10.0, label: str = "",
                  log=print) -> dict:
    """Call ``step()`` back to back for ``minutes``, logging every ``interval_s``.

    ``step`` returns its own latency in ms (so the pipeline can time exactly what it
    means). Each interval records the count, p50/p90/max latency and the thermal
    state at its end. A Pi without a heatsink starts throttling after a few minutes:
    the ratio of the last interval's p50 to the first one's says how much.
    """
    end = time.monotonic() + minutes * 60.0
    intervals = []
    t_start = time.monotonic()
    while time.monotonic() < end:
        t_int = time.monotonic()
        samples = []
        while time.monotonic() - t_int < interval_s and time.monotonic() < end:
            samples.append(float(step()))
        if not samples:
            break
        a = np.asarray(samples)
        rec = {"t_s": round(time.monotonic() - t_start, 2), "count": int(a.size),
               "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
               "max_ms": float(a.max()), **thermal_state()}
        intervals.append(rec)
        th = (f" {rec['max_temp_c']:.1f}C" if "max_temp_c" in rec else "") + \
             (f" {rec['freq_mhz']:.0f}MHz" if "freq_mhz" in rec else "") + \
             (f" throttled={','.join(rec['throttled_now']) or 'no'}" if "throttled" in rec else "")
        log(f"[sustained {label}] t={rec['t_s']:7.1f}s n={rec['count']:4d} p50={rec['p50_ms']:.2f}ms "
            f"p90={rec['p90_ms']:.2f}ms{th}")
    out = {"label": label, "minutes": minutes, "interval_s": interval_s, "intervals": intervals}
    if len(intervals) >= 2:
        out["p50_last_over_first"] = intervals[-1]["p50_ms"] / intervals[0]["p50_ms"]
    return out


def plot_sustained(plt, sustained: dict, path: Path, title: str) -> Path | None:
    iv = sustained.get("intervals") or []
    if plt is None or not iv:
        return None
    t = [r["t_s"] / 60.0 for r in iv]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [r["p50_ms"] for r in iv], "o-", label="p50")
    ax.plot(t, [r["p90_ms"] for r in iv], "s--", label="p90")
    ax.set_xlabel("minutes")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    lines, labels = ax.get_legend_handles_labels()
    if any("max_temp_c" in r for r in iv):
        ax2 = ax.twinx()
        ax2.plot(t, [r.get("max_temp_c", np.nan) for r in iv], "r:", label="CPU temp (C)")
        ax2.set_ylabel("CPU temperature (C)")
        l2, lb2 = ax2.get_legend_handles_labels()
        lines, labels = lines + l2, labels + lb2
    ax.legend(lines, labels, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sustained_markdown(s: dict) -> str:
    iv = s.get("intervals") or []
    if not iv:
        return "_no sustained intervals recorded_"
    rows = [[f"{r['t_s'] / 60:.2f}", r["count"], r["p50_ms"], r["p90_ms"], r["max_ms"],
             f"{r['max_temp_c']:.1f}" if "max_temp_c" in r else "-",
             f"{r['freq_mhz']:.0f}" if "freq_mhz" in r else "-",
             ",".join(r.get("throttled_now", [])) or ("no" if "throttled" in r else "-")] for r in iv]
    text = md_table(["minute", "runs", "p50 ms", "p90 ms", "max ms", "temp C", "MHz", "throttled"], rows)
    if "p50_last_over_first" in s:
        text += f"\n\np50 last interval / first interval: **{s['p50_last_over_first']:.2f}x**"
    return text


def python_cmd() -> list[str]:
    """The interpreter running this script (for the per-configuration subprocesses)."""
    return [sys.executable]


def models_with_feeds(models: dict, threads: int, warmup: int = 3) -> tuple[dict, dict]:
    """``edgelite.Model`` per name (from bytes or a path) and a random raw input for each
    (int8/uint8 in the full range, float normal), warmed up ``warmup`` times."""
    import edgelite

    rng = np.random.default_rng(0)
    ms = {k: edgelite.Model(b, num_threads=threads) for k, b in models.items()}
    feeds = {}
    for k, m in ms.items():
        s = m.inputs[0]
        dt = np.dtype(s.dtype)
        feeds[k] = (rng.integers(-128, 128, s.shape).astype(dt) if dt.kind in "iu"
                    else rng.normal(0, 1, s.shape).astype(dt))
        for _ in range(warmup):
            m.run(feeds[k], quantize=False, dequantize=False)
    return ms, feeds
