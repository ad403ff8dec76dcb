"""A progress bar on stderr: images done, images/s and ETA (tqdm when installed)."""
from __future__ import annotations

import sys
import time


class _Plain:
    """Fallback without tqdm: one line every few seconds with the same figures."""

    def __init__(self, total: int, initial: int, disable: bool, every_s: float = 5.0):
        self.total, self.n, self.disable, self.every_s = total, initial, disable, every_s
        self._t0, self._n0, self._last = time.monotonic(), initial, 0.0

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if self.disable or (now - self._last < self.every_s and self.n < self.total):
            return
        self._last = now
        rate = (self.n - self._n0) / max(now - self._t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        sys.stderr.write(f"batch: {self.n}/{self.total} images, {rate:.1f} img/s, ETA {eta:.0f} s\n")
        sys.stderr.flush()

    def close(self) -> None:
        pass


def progress_bar(total: int, initial: int = 0, enabled: bool = True, desc: str = "batch"):
    """``update(k)`` / ``close()``; nothing is drawn when ``enabled`` is False."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total, initial, not enabled)
    return tqdm(total=total, initial=initial, unit="img", desc=desc, file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)
