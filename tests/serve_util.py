"""Helpers to run a real `edgelite serve` process on a loopback ephemeral port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m edgelite.serve serve ...` (the container entry point) or `edgelite serve ...`."""

    def __init__(self, args: list[str], env: dict | None = None, *, container: bool = False, log: Path | None = None):
        self.port = free_port()
        e = dict(os.environ)
        e.update(env or {})
        e.setdefault("EDGELITE_SERVE_HOST", "127.0.0.1")
        if container:
            e["SAGEMAKER_BIND_TO_PORT"] = str(self.port)
            cmd = [sys.executable, "-m", "edgelite.serve", "serve", *args]
        else:
            cmd = [sys.executable, "-m", "edgelite.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   *args]
        self.log_path = log
        self._log = open(log, "wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=e, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=60.0)

    def wait_ready(self, timeout: float = 120.0) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                if self.client.get("/ping").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout} s: {self.log()}")

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def worker_pids(self) -> list[int]:
        """Child processes of the server (the spawn workers; not the resource tracker)."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                cmdline = (d / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"spawn_main" in cmdline:
                out.append(int(d.name))
        return sorted(out)

    def metric(self, name: str, labels: str = "") -> float:
        text = self.client.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + ("{" if labels or "{" in line[len(name):len(name) + 1] else " ")):
                if labels and labels not in line:
                    continue
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.client.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode
