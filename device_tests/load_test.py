#!/usr/bin/env python3
"""Load test of `edgelite serve` on loopback: throughput, latency, overload, worker kill.

Everything runs on this machine: the server is a real `edgelite serve` process on
127.0.0.1 and an ephemeral port, the load is a real HTTP client (aiohttp, asyncio),
every run is bounded in time and request count, and it stops by itself.

What it measures (one run, so the ratios are comparable):

1. **In-process baseline**: ``FaceRecognizer`` (decode → detect → align → embed →
   match) on the same encoded images in one process, 1 and N interpreter threads.
2. **Saturation**: for ``embed`` and ``identify``, workers 1 and 2, batching off
   and on: closed-loop clients (``4 × workers`` in flight), throughput and p50/p99.
   The HTTP cost is ``1 − server / in-process``, both using every core (the
   in-process baseline with as many interpreter threads as cores).
3. **Overload** at ≥ 3× the measured capacity, open loop: every accepted request
   must be answered correctly, the rest refused with 503 quickly, no other
   error, the p99 of accepted requests bounded, memory flat.
4. **kill -9 of one worker** under saturation: failed requests, time until
   ``/ping`` is 200 again and until throughput is back to 90 % of before.

Note: on a 2-core machine the load generator shares the cores with the server, so
the HTTP cost it reports is an upper bound; its own CPU time is reported too.

Usage::

    python device_tests/load_test.py                  # ~4 minutes
    python device_tests/load_test.py --quick          # ~1 minute, shorter windows
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _common  # noqa: E402

DEMO = ROOT / "data" / "faces" / "demo"


# ---------------------------------------------------------------------------- inputs
def make_frames() -> list[bytes]:
    """Real face photos as a camera would send them: 640-px-wide JPEG frames (q90),
    from the NASA portraits and crops of the ISS photo around each astronaut."""
    import cv2

    from edgelite.image import load_image

    frames = []

    def enc(img):
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        frames.append(buf.tobytes())

    for name in ("Nick_Hague.jpg", "Andrew_Morgan.jpg", "Eileen_Collins.png"):
        img = load_image(DEMO / name)
        h, w = img.shape[:2]
        s = 640 / max(h, w)
        enc(cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
    iss = load_image(DEMO / "Morgan_and_Hague_ISS.jpg")
    small = cv2.resize(iss, (1856, 1237), interpolation=cv2.INTER_AREA)  # 1/3
    for x0 in (300, 900):  # a 640x480 window around each astronaut
        enc(np.ascontiguousarray(small[250:730, x0:x0 + 640]))
    return frames


def prepare_model_dir(tmp: Path) -> Path:
    from edgelite import zoo
    from edgelite.face import FaceDetector, FaceEmbedder, FaceGallery
    from edgelite.image import load_image

    d = tmp / "model"
    d.mkdir()
    for n in ("yunet_320", "yunet_640", "sface"):
        shutil.copy(zoo.require_model(n, "int8"), d / f"{n}-int8.tflite")
    det = FaceDetector.from_model(d / "yunet_320-int8.tflite")
    emb = FaceEmbedder.from_model(d / "sface-int8.tflite")
    with FaceGallery(d / "gallery.db") as g:
        for name, f in (("Nick Hague", "Nick_Hague.jpg"), ("Andrew Morgan", "Andrew_Morgan.jpg"),
                        ("Eileen Collins", "Eileen_Collins.png")):
            img = load_image(DEMO / f)
            g.enroll(name, emb.embed_faces(img, det.detect(img).faces[:1]), model_id=emb.model_id)
    return d


# ---------------------------------------------------------------------------- in-process
def in_process(model_dir: Path, frames: list[bytes], threads: int, seconds: float, identify: bool) -> dict:
    """Images/s of FaceRecognizer on encoded frames (decode included), one process."""
    from edgelite.face import FaceDetector, FaceEmbedder, FaceGallery, FaceRecognizer
    from edgelite.image import load_image

    det = FaceDetector.from_model(model_dir / "yunet_320-int8.tflite", num_threads=threads)
    emb = FaceEmbedder.from_model(model_dir / "sface-int8.tflite", num_threads=threads)
    gal = FaceGallery(model_dir / "gallery.db") if identify else None
    rec = FaceRecognizer(gal, detector=det, embedder=emb)
    for f in frames:
        rec.recognize(load_image(f))
    n, lat = 0, []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        rec.recognize(load_image(frames[n % len(frames)]))
        lat.append(time.perf_counter() - t)
        n += 1
    dt = time.perf_counter() - t0
    rec.close()
    return {"threads": threads, "images_per_s": n / dt, "p50_ms": 1e3 * float(np.median(lat)), "n": n}


# ---------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir: Path, workers: int, task: str, batch: tuple[int, float] | None,
                 max_queue: int | None = None, log: Path | None = None):
        self.port = free_port()
        cmd = [sys.executable, "-m", "edgelite.cli", "serve", "--model-dir", str(model_dir), "--task", task,
               "--workers", str(workers), "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
               "--log-level", "warning"]
        if batch is not None:
            cmd += ["--max-batch-size", str(batch[0]), "--max-batch-delay-ms", str(batch[1])]
        if max_queue is not None:
            cmd += ["--max-queue", str(max_queue)]
        self.log = open(log, "wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout=120):
        import httpx

        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                if httpx.get(self.url + "/ping", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server not ready")

    def pids(self) -> list[int]:
        kids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                    cmd = (d / "cmdline").read_bytes()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid and b"spawn_main" in cmd:
                    kids.append(int(d.name))
        return sorted(kids)

    def rss_mb(self) -> float:
        total = 0
        for pid in [self.proc.pid, *self.pids()]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


# ---------------------------------------------------------------------------- load
async def closed_loop(url: str, frames: list[bytes], concurrency: int, seconds: float, *,
                      on_tick=None, max_requests: int = 200_000) -> dict:
    """``concurrency`` clients, each sending the next request when the last returns."""
    import aiohttp

    lat, codes, done_t = [], {}, []
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    count = 0

    async def client(k: int, session):
        nonlocal count
        i = k
        while time.perf_counter() < stop_at and count < max_requests:
            count += 1
            t = time.perf_counter()
            try:
                async with session.post(url, data=frames[i % len(frames)],
                                        headers={"Content-Type": "image/jpeg"}) as r:
                    await r.read()
                    code = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                code = type(e).__name__
            now = time.perf_counter()
            codes[code] = codes.get(code, 0) + 1
            if code == 200:
                lat.append(now - t)
                done_t.append(now - t0)
            i += concurrency

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as session:
        tasks = [asyncio.create_task(client(k, session)) for k in range(concurrency)]
        if on_tick is not None:
            tasks.append(asyncio.create_task(on_tick(t0, stop_at)))
        await asyncio.gather(*tasks)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "ok": len(lat), "codes": {str(k): v for k, v in codes.items()},
            "images_per_s": len(lat) / dt, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "done_t": done_t}


async def open_loop(url: str, frames: list[bytes], rate: float, seconds: float, *, max_outstanding: int = 400):
    """Open loop: one request every 1/rate s, whatever the answers do.

    aiohttp here rather than httpx: at several hundred requests a second the client
    shares the two cores with the server, and aiohttp's client costs about a third
    of the CPU per request, so the offered rate is what was asked for.
    """
    import aiohttp

    res = []  # (status, latency, answer ok, retry-after)
    sem = asyncio.Semaphore(max_outstanding)

    async def one(session, i):
        async with sem:
            t = time.perf_counter()
            try:
                async with session.post(url, data=frames[i % len(frames)],
                                        headers={"Content-Type": "image/jpeg"}) as r:
                    body = await r.read()
                    ok = r.status != 200 or len(json.loads(body)["faces"]) >= 1
                    res.append((r.status, time.perf_counter() - t, ok, r.headers.get("Retry-After")))
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                res.append((type(e).__name__, time.perf_counter() - t, False, None))

    conn = aiohttp.TCPConnector(limit=max_outstanding)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as session:
        tasks = []
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            tasks.append(asyncio.create_task(one(session, i)))
            i += 1
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    return res


def _pct(v, q):
    return float(np.percentile(np.asarray(v) * 1e3, q)) if v else float("nan")


# ---------------------------------------------------------------------------- phases
def saturation(model_dir, frames, tmp, seconds, configs, rounds, base_threads):
    """Every server configuration up at once, measured in interleaved rounds together
    with the in-process baseline: a change in background load hits every configuration
    of a round alike, and the ratios are taken within a round (then the median)."""
    servers = {}
    try:
        for task in ("embed", "identify"):
            for workers, batch in configs:
                label = (task, workers, "off" if batch is None or batch[0] == 1 else f"{batch[0]}/{batch[1]:g}ms")
                servers[label] = Server(model_dir, workers, task, batch,
                                        log=tmp / f"sat-{task}-{workers}-{label[2].replace('/', '_')}.log")
        for s in servers.values():
            s.wait_ready()
        for label, s in servers.items():  # warm-up: page faults, XNNPACK packing, connections
            asyncio.run(closed_loop(s.url + "/invocations", frames, 2 * label[1], 1.5))
        runs = {label: [] for label in servers}
        base = {(t, n): [] for t in ("embed", "identify") for n in base_threads}
        ratios = {label: [] for label in servers}
        for r in range(rounds):
            this = {}
            for (t, n) in base:
                this[(t, n)] = in_process(model_dir, frames, n, seconds / 2, t == "identify")["images_per_s"]
                base[(t, n)].append(this[(t, n)])
            for label, s in servers.items():
                res = asyncio.run(closed_loop(s.url + "/invocations", frames, 4 * label[1], seconds))
                res.pop("done_t")
                runs[label].append(res)
                ref = this[(label[0], max(base_threads))]  # both use the whole machine
                ratios[label].append(res["images_per_s"] / ref)
            print(f"  round {r + 1}/{rounds} done", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    rows = []
    for label, rs in runs.items():
        task, workers, batching = label
        codes: dict = {}
        for x in rs:
            for k, v in x["codes"].items():
                codes[k] = codes.get(k, 0) + v
        rows.append({"task": task, "workers": workers, "batching": batching, "rounds": len(rs),
                     "images_per_s": float(np.median([x["images_per_s"] for x in rs])),
                     "p50_ms": float(np.median([x["p50_ms"] for x in rs])),
                     "p99_ms": float(np.median([x["p99_ms"] for x in rs])),
                     "ratio_vs_in_process_all_cores": float(np.median(ratios[label])), "codes": codes})
        print(f"  {task:8s} workers={workers} batching={batching:9s} {rows[-1]['images_per_s']:6.1f} img/s "
              f"p50 {rows[-1]['p50_ms']:6.1f} ms p99 {rows[-1]['p99_ms']:6.1f} ms "
              f"x{rows[-1]['ratio_vs_in_process_all_cores']:.2f} of in-process  codes {codes}", flush=True)
    base_rows = {f"{t}-{n}": {"threads": n, "images_per_s": float(np.median(v)), "p50_ms": float("nan")}
                 for (t, n), v in base.items()}
    return rows, base_rows


def overload(model_dir, frames, tmp, capacity, seconds):
    s = Server(model_dir, 2, "embed", None, log=tmp / "overload.log")
    try:
        s.wait_ready()
        asyncio.run(closed_loop(s.url + "/invocations", frames, 4, 2.0))
        rss = []
        rate = 3.0 * capacity

        async def run():
            async def sample():
                while not done:
                    rss.append(s.rss_mb())
                    await asyncio.sleep(0.5)
            nonlocal done
            samp = asyncio.create_task(sample())
            r = await open_loop(s.url + "/invocations", frames, rate, seconds)
            done = True
            await samp
            return r

        done = False
        res = asyncio.run(run())
    finally:
        s.stop()
    ok = [r for r in res if r[0] == 200]
    rej = [r for r in res if r[0] == 503]
    other = [r for r in res if r[0] not in (200, 503)]
    out = {"rate_per_s": rate, "achieved_rate_per_s": len(res) / seconds, "capacity_per_s": capacity,
           "sent": len(res), "accepted": len(ok), "accepted_per_s": len(ok) / seconds,
           "accepted_correct": sum(r[2] for r in ok), "rejected_503": len(rej),
           "rejected_with_retry_after": sum(r[3] == "1" for r in rej), "other_errors": len(other),
           "other_codes": sorted({str(r[0]) for r in other}),
           "accepted_p50_ms": _pct([r[1] for r in ok], 50), "accepted_p99_ms": _pct([r[1] for r in ok], 99),
           "rejected_p50_ms": _pct([r[1] for r in rej], 50), "rejected_p99_ms": _pct([r[1] for r in rej], 99),
           "rss_mb_first": rss[0] if rss else None, "rss_mb_last": rss[-1] if rss else None,
           "rss_mb_max": max(rss) if rss else None,
           "rss_mb_series_0_5s": [round(v, 1) for v in rss]}
    print(f"  overload at {rate:.0f}/s (3x {capacity:.1f}/s): {json.dumps(out)}", flush=True)
    return out


def kill_worker(model_dir, frames, tmp, seconds):
    import httpx

    s = Server(model_dir, 2, "embed", None, log=tmp / "kill.log")
    events = {}
    try:
        s.wait_ready()
        url = s.url + "/invocations"
        asyncio.run(closed_loop(url, frames, 4, 2.0))
        kill_at = seconds / 3

        async def tick(t0, stop_at):
            await asyncio.sleep(kill_at)
            victim = s.pids()[0]
            os.kill(victim, signal.SIGKILL)
            events["killed_at"] = time.perf_counter() - t0
            async with httpx.AsyncClient(timeout=5) as c:
                down = False  # first see /ping notice the death (503), then come back (200)
                while time.perf_counter() < stop_at:
                    try:
                        code = (await c.get(s.url + "/ping")).status_code
                    except httpx.HTTPError:
                        code = None
                    now = time.perf_counter() - t0
                    if not down and code == 503:
                        down = True
                        events["ping_down_at"] = now
                    elif down and code == 200:
                        events["ping_back_at"] = now
                        break
                    await asyncio.sleep(0.01)

        r = asyncio.run(closed_loop(url, frames, 8, seconds, on_tick=tick))
    finally:
        s.stop()
    done = np.asarray(r["done_t"])
    before = np.histogram(done[done < events["killed_at"]], bins=np.arange(0, events["killed_at"] + 1e-9, 0.5))[0]
    base = float(np.median(before[1:])) if len(before) > 1 else float("nan")
    back = None
    t = events["killed_at"]
    while t + 1.0 <= seconds:
        if np.sum((done >= t) & (done < t + 1.0)) >= 0.9 * 2 * base:
            back = t + 1.0
            break
        t += 0.25
    failed = sum(v for k, v in r["codes"].items() if k != "200")
    out = {"requests": sum(r["codes"].values()), "codes": r["codes"], "failed": failed,
           "killed_at_s": events["killed_at"],
           "ping_503_after_s": events.get("ping_down_at", float("nan")) - events["killed_at"],
           "ping_back_after_s": (events.get("ping_back_at", float("nan")) - events["killed_at"]),
           "throughput_back_after_s": None if back is None else back - events["killed_at"],
           "throughput_before_per_s": 2 * base}
    print(f"  kill -9: {json.dumps(out)}", flush=True)
    return out


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short windows (about a minute in all)")
    p.add_argument("--seconds", type=float, default=None, help="length of each saturation window")
    p.add_argument("--batch", default="8,5", help="batching-on setting: max_batch_size,max_batch_delay_ms")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--device-id", default=None)
    p.add_argument("--skip", default="", help="comma list of phases to skip: saturation,overload,kill")
    p.add_argument("--rounds", type=int, default=None, help="interleaved saturation rounds (default 3, quick 1)")
    a = p.parse_args(argv)
    seconds = a.seconds or (4.0 if a.quick else 6.0)
    a.rounds = a.rounds or (1 if a.quick else 3)
    bs, delay = a.batch.split(",")
    batch_on = (int(bs), float(delay))
    ncpu = os.cpu_count() or 1
    frames = make_frames()
    out: dict = {"system": _common.system_record(), "config": {**vars(a), "seconds": seconds,
                                                               "frames": [len(f) for f in frames]}}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        model_dir = prepare_model_dir(tmp)
        skip = set(filter(None, a.skip.split(",")))
        base_threads = sorted({1, min(ncpu, 4)})
        if "saturation" not in skip:
            print(f"saturation: in-process FaceRecognizer vs the server (closed loop, 4 clients per worker), "
                  f"{a.rounds} interleaved rounds:", flush=True)
            configs = [(1, None), (1, batch_on), (2, None), (2, batch_on)]
            rows, base = saturation(model_dir, frames, tmp, seconds, configs, a.rounds, base_threads)
            out["saturation"], out["in_process"] = rows, base
        else:
            out["in_process"] = {f"{t}-{n}": in_process(model_dir, frames, n, seconds, t == "identify")
                                 for t in ("embed", "identify") for n in base_threads}
        cap = max((r["images_per_s"] for r in out.get("saturation", []) if r["task"] == "embed"
                   and r["workers"] == 2 and r["batching"] == "off"), default=None)
        if cap is None:
            cap = out["in_process"][f"embed-{min(ncpu, 4)}"]["images_per_s"]
        if "overload" not in skip:
            print("overload (open loop at 3x capacity, 2 workers):", flush=True)
            out["overload"] = overload(model_dir, frames, tmp, cap, max(6.0, seconds))
        if "kill" not in skip:
            print("kill -9 of one worker under load (2 workers):", flush=True)
            out["kill"] = kill_worker(model_dir, frames, tmp, max(9.0, 1.5 * seconds))
    d = _common.results_dir(a.results_dir, a.device_id)
    _common.write_json(d / "serving.json", out)
    (d / "serving.md").write_text(to_markdown(out))
    print(f"wrote {d / 'serving.json'} and {d / 'serving.md'}")
    return 0


def to_markdown(out: dict) -> str:
    lines = ["# edgelite serve — load test", "", _common.system_markdown(out["system"]), "",
             "## In-process baseline (FaceRecognizer on the same JPEG frames, decode included)", ""]
    lines.append(_common.md_table(["task", "threads", "images/s (median of rounds)"],
                                  [[k.split("-")[0], v["threads"], f"{v['images_per_s']:.1f}"]
                                   for k, v in out["in_process"].items()]))
    if "saturation" in out:
        lines += ["", f"## Server at saturation (closed loop, 4 clients per worker, loopback; "
                  f"{out['config']['rounds']} interleaved rounds, medians)", ""]
        lines.append(_common.md_table(
            ["task", "workers", "batching", "images/s", "p50 ms", "p99 ms", "vs in-process (all cores)", "codes"],
            [[r["task"], r["workers"], r["batching"], f"{r['images_per_s']:.1f}", f"{r['p50_ms']:.1f}",
              f"{r['p99_ms']:.1f}", f"{r['ratio_vs_in_process_all_cores']:.2f}", r["codes"]]
             for r in out["saturation"]]))
        lines.append("\nThe load generator (Python, aiohttp) runs on the same 2 cores as the server, so the "
                     "ratio to in-process is a lower bound of what the HTTP layer allows.")
    if "overload" in out:
        lines += ["", "## Overload (open loop at 3x capacity)", "", "```", json.dumps(out["overload"], indent=1), "```"]
    if "kill" in out:
        lines += ["", "## kill -9 of one worker under load", "", "```", json.dumps(out["kill"], indent=1), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
