"""``edgelite doctor``: what this device is and what edgelite can use on it."""
from __future__ import annotations

import ctypes.util
import os
import platform
import sys
from pathlib import Path


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def cpu_info() -> dict:
    """CPU model, features and core count, from /proc/cpuinfo where available."""
    info: dict = {"machine": platform.machine(), "cores": os.cpu_count()}
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if ":" not in line:
            continue
        k, v = (x.strip() for x in line.split(":", 1))
        if k in ("model name", "Hardware", "Model") and "model" not in info:
            info["model"] = v
        elif k == "CPU part" and "cpu_part" not in info:
            info["cpu_part"] = v
        elif k in ("flags", "Features") and "features" not in info:
            feats = v.split()
            # the ones that matter for int8 kernels: NEON dot product (asimddp, Pi 5's A76),
            # i8mm; on x86: avx2 / avx512 / vnni
            keep = {"asimd", "asimddp", "i8mm", "fphp", "asimdhp", "sve", "avx", "avx2", "fma", "avx512f",
                    "avx512_vnni", "avx_vnni", "sse4_1", "sse4_2", "f16c", "neon"}
            info["features"] = sorted(f for f in feats if f in keep)
            info["features_count"] = len(feats)
    gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if gov:
        info["governor"] = gov
    return info


def board_model() -> str | None:
    """Raspberry Pi (or other device-tree board) model string, e.g. 'Raspberry Pi 5 Model B Rev 1.0'."""
    return _read("/proc/device-tree/model")


def delegates_found() -> dict:
    """External delegate libraries that can be found on the library path."""
    out = {}
    for name, lib in (("edgetpu", "edgetpu"),):
        out[name] = ctypes.util.find_library(lib)
    return out


def report(include_tensorflow: bool = False) -> dict:
    """Everything ``edgelite doctor`` prints, as a JSON-safe dict."""
    import numpy as np

    from . import __version__
    from .backends import available_backends

    try:
        import sysconfig
        tag = sysconfig.get_platform()
    except Exception:  # noqa: BLE001
        tag = None
    opt = {}
    for mod in ("cv2", "PIL"):
        try:
            m = __import__(mod)
            opt[mod] = getattr(m, "__version__", "?")
        except ImportError as e:
            opt[mod] = f"not installed ({e})"
    return {
        "edgelite": __version__,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "platform_tag": tag,
        "bits": 64 if sys.maxsize > 2**32 else 32,
        "numpy": np.__version__,
        "board": board_model(),
        "cpu": cpu_info(),
        "backends": [s.to_dict() for s in available_backends(include_tensorflow=include_tensorflow or None)],
        "delegates": {"xnnpack": "built into the backend", **delegates_found()},
        "optional": opt,
    }


def to_text(r: dict) -> str:
    lines = [f"edgelite {r['edgelite']}  Python {r['python']} ({r['bits']}-bit)  numpy {r['numpy']}",
             f"platform   {r['platform']} [{r['platform_tag']}]",
             f"board      {r['board'] or '-'}",
             f"cpu        {r['cpu'].get('model', '?')} x{r['cpu'].get('cores')} "
             f"governor={r['cpu'].get('governor', '-')}",
             f"features   {' '.join(r['cpu'].get('features', [])) or '-'}",
             "backends:"]
    for b in r["backends"]:
        lines.append(f"  {'ok ' if b['ok'] else 'no '} {b['name']:15s} {b['version'] or '':10s} {b['reason'] or ''}")
    lines.append("delegates: " + ", ".join(f"{k}={v or 'not found'}" for k, v in r["delegates"].items()))
    lines.append("optional:  " + ", ".join(f"{k}={v}" for k, v in r["optional"].items()))
    if r["bits"] == 32:
        lines.append("WARNING: 32-bit OS: ai-edge-litert has no 32-bit ARM wheels; use a 64-bit OS.")
    return "\n".join(lines)
