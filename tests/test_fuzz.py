"""Crash fuzz: corrupt models must be refused with a typed error, never kill the host.

Three sets of variants of the real fixture models in ``tests/data``:

* ``random``: seeded mutations (truncations, byte flips, uint32 overwrites at
  offset-looking positions, zero runs, splices). They are biased towards the
  flatbuffer structure (everything that is not weight bytes), because flipping
  a weight byte only changes numbers;
* ``opswap``: every operator code replaced by every builtin op. This is how a
  one-byte flip in the opcode table looks, and it finds the kernels that trust
  their operand count or types (SPLIT, SLICE, STRIDED_SLICE, BATCH_MATMUL...);
* ``typeswap``: every stored tensor type replaced by every type.

Each set is loaded variant after variant in a *worker subprocess* the way an
application would: ``edgelite._tflite.parse_model``, then, when it passes, the
SDK's ``edgelite.model.Model`` (with XNNPACK and with the builtin kernels) and
one run on zeros; without the SDK's Model, the bare LiteRT interpreter. If a
variant kills the worker with a signal (or hangs), the parent records which
variant did it and restarts the worker from the next one; the test then fails
naming every killer variant.

By hand::

    .venv/bin/python tests/test_fuzz.py --set opswap               # summary as JSON
    .venv/bin/python tests/test_fuzz.py --set random --raw         # no verifier
    .venv/bin/python tests/test_fuzz.py --set random --start 12 --stop 13
    EDGELITE_FUZZ_SEED=7 EDGELITE_FUZZ_PER_FIXTURE=2000 .venv/bin/python tests/test_fuzz.py
"""
from __future__ import annotations

import json
import os
import random
import selectors
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = (
    "conv_float.tflite",
    "conv_int8.tflite",
    "conv_uint8io.tflite",
    "conv_int8_floatio.tflite",
    "multi_signature.tflite",
    "prelu_int8.tflite",
)
# Overridable to fuzz longer by hand; the test uses the defaults.
SEED = int(os.environ.get("EDGELITE_FUZZ_SEED", "20240611"))
PER_FIXTURE = int(os.environ.get("EDGELITE_FUZZ_PER_FIXTURE", "200"))  # x6 = 1200
VARIANT_TIMEOUT_S = 30.0

_INTERESTING_U32 = (0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000,
                    0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def _structure_positions(data: bytes) -> list[int]:
    """Byte positions that are flatbuffer structure rather than weight bytes."""
    from edgelite._tflite import parse_model

    info = parse_model(data)
    weight = bytearray(len(data))
    for start, length in info._buffer_spans:
        weight[start:start + length] = b"\x01" * length
    return [i for i in range(len(data)) if not weight[i]]


def _opcode_sites(data: bytes) -> list[tuple[int, int]]:
    """``(deprecated_builtin_code position, builtin_code position)`` per opcode.

    Positions are -1 when the field is absent from the file.
    """
    from edgelite._tflite import _Reader, _Table

    r = _Reader(data, len(data))
    model = _Table(r, int.from_bytes(data[:4], "little"), "model")
    return [(t._field(0, 1) or -1, t._field(3, 4) or -1)
            for t in model.tables(1, "operator_codes")]


def _swap_opcode(data: bytes, site: tuple[int, int], code: int) -> bytes | None:
    """Rewrite one operator code in place (None when the file has no room)."""
    dep, full = site
    buf = bytearray(data)
    if full < 0 and code >= 127:
        return None
    if dep >= 0:
        buf[dep] = min(code, 127)
    elif code != 0 and full < 0:
        return None
    if full >= 0:
        buf[full:full + 4] = code.to_bytes(4, "little")
    return bytes(buf)


def _opswap_sweep() -> list[tuple[str, bytes]]:
    """Every fixture with every operator code replaced by every builtin op."""
    from edgelite._tflite import BUILTIN_OP_NAMES

    out = []
    for name in FIXTURES:
        data = (DATA / name).read_bytes()
        for k, site in enumerate(_opcode_sites(data)):
            for code in BUILTIN_OP_NAMES:
                v = _swap_opcode(data, site, code)
                if v is not None:
                    out.append((f"{name}:opcode{k}={BUILTIN_OP_NAMES[code]}", v))
    return out


def _tensor_type_sites(data: bytes) -> list[int]:
    """Positions of every stored ``Tensor.type`` byte (absent = float32 default)."""
    from edgelite._tflite import _Reader, _Table

    r = _Reader(data, len(data))
    model = _Table(r, int.from_bytes(data[:4], "little"), "model")
    return [t._field(1, 1) for sg in model.tables(2, "subgraphs")
            for t in sg.tables(0, "tensors") if t._field(1, 1)]


def _typeswap_sweep() -> list[tuple[str, bytes]]:
    """Every fixture with every stored tensor type replaced by every type."""
    out = []
    for name in FIXTURES:
        data = (DATA / name).read_bytes()
        for pos in _tensor_type_sites(data):
            for code in range(23):
                if code != data[pos]:
                    buf = bytearray(data)
                    buf[pos] = code
                    out.append((f"{name}:type@{pos}={code}", bytes(buf)))
    return out


def _mutations(name: str, data: bytes, rng: random.Random, count: int):
    """Yield ``(label, bytes)`` variants of one model."""
    n = len(data)
    struct_pos = _structure_positions(data)
    aligned = [p for p in struct_pos if p % 4 == 0 and p + 4 <= n]
    kinds = (["trunc"] * 20 + ["flip"] * 40 + ["u32"] * 35 + ["zero"] * 15
             + ["weights"] * 5 + ["splice"] * 5)
    for k in range(count):
        kind = kinds[k % len(kinds)]
        buf = bytearray(data)
        if kind == "trunc":
            # Short prefixes are interesting (header), so are cuts near the end.
            choice = rng.random()
            if choice < 0.3:
                cut = rng.randrange(0, min(64, n))
            elif choice < 0.6:
                cut = n - rng.randrange(1, min(256, n))
            else:
                cut = rng.randrange(0, n)
            label = f"{name}:trunc@{cut}"
            yield label, bytes(buf[:cut])
            continue
        if kind == "flip":
            edits = []
            for _ in range(rng.choice((1, 1, 2, 3))):
                p = rng.choice(struct_pos)
                if rng.random() < 0.5:
                    buf[p] ^= 1 << rng.randrange(8)
                else:
                    buf[p] = rng.randrange(256)
                edits.append(p)
            label = f"{name}:flip@{','.join(map(str, edits))}"
        elif kind == "u32":
            p = rng.choice(aligned)
            old = int.from_bytes(buf[p:p + 4], "little")
            r = rng.random()
            if r < 0.4:
                v = rng.choice(_INTERESTING_U32)
            elif r < 0.7:
                v = (old + rng.choice((-8, -4, -2, -1, 1, 2, 4, 8, 16, 64))) & 0xFFFFFFFF
            elif r < 0.85:
                v = rng.randrange(0, n + 64)
            else:
                v = rng.getrandbits(32)
            buf[p:p + 4] = v.to_bytes(4, "little")
            label = f"{name}:u32@{p}={v:#x}"
        elif kind == "zero":
            p = rng.choice(struct_pos)
            ln = rng.choice((1, 2, 4, 8, 16, 64))
            buf[p:p + ln] = bytes(len(buf[p:p + ln]))
            label = f"{name}:zero@{p}+{ln}"
        elif kind == "weights":
            p = rng.randrange(n)
            buf[p:p + 16] = bytes(rng.randrange(256) for _ in range(len(buf[p:p + 16])))
            label = f"{name}:rand16@{p}"
        else:  # splice: copy one structural window over another
            a, b = rng.choice(struct_pos), rng.choice(struct_pos)
            ln = rng.choice((4, 8, 12, 16, 32))
            chunk = bytes(buf[a:a + ln])
            buf[b:b + len(chunk)] = chunk
            buf = buf[:n]
            label = f"{name}:splice@{a}->{b}+{ln}"
        yield label, bytes(buf)


def variants(kind: str = "random") -> list[tuple[str, bytes]]:
    """The fuzz variants of one kind, deterministic for a given SEED.

    Args:
        kind: ``"random"`` (seeded mutations), ``"opswap"`` (every operator code
            of every fixture replaced by every builtin op: finds kernels that
            trust their operand count or types) or ``"typeswap"`` (every stored
            tensor type replaced by every type).
    """
    if kind == "opswap":
        return _opswap_sweep()
    if kind == "typeswap":
        return _typeswap_sweep()
    rng = random.Random(SEED)
    out = []
    for name in FIXTURES:
        data = (DATA / name).read_bytes()
        out.extend(_mutations(name, data, rng, PER_FIXTURE))
    return out


# --------------------------------------------------------------------------
# Worker (runs in the subprocess)
# --------------------------------------------------------------------------


def _load_and_run(data: bytes, verify: bool) -> str:
    """Load one variant the way an application would; return the outcome.

    Outcomes: ``rejected`` (the verifier refused it), ``ok``, ``sdk_error``
    (the SDK refused it with a typed error), ``untyped_<stage>:<error>`` for an
    exception that is not an ``EdgeliteError`` (stage ``parse``, ``load`` or
    ``run``), ``interp_error:<type>`` on the bare-interpreter path.
    """
    import numpy as np

    import edgelite
    from edgelite._tflite import parse_model

    if verify:
        try:
            parse_model(data)
        except edgelite.EdgeliteError:
            return "rejected"
        except Exception as exc:  # noqa: BLE001 - the verifier must never do this
            return f"untyped_parse:{type(exc).__name__}:{exc}"[:300]
    try:
        from edgelite.model import Model  # the SDK's own loader, once it exists
    except ImportError:
        Model = None
    if Model is not None and verify:
        # Both the XNNPACK path (the default) and the builtin kernels: a model
        # that only crashes one of them is still a crash.
        outcome = []
        for delegates in (("xnnpack",), ()):
            stage = "load"
            try:
                model = Model(data, delegates=delegates, num_threads=1)
                stage = "run"
                model.run([np.zeros(s.shape, s.dtype) for s in model.inputs])
            except edgelite.EdgeliteError:
                outcome.append("sdk_error")
            except Exception as exc:  # noqa: BLE001 - recorded, see the tests
                return f"untyped_{stage}:{type(exc).__name__}:{exc}"[:300]
            else:
                outcome.append("ok")
        return outcome[0] if outcome[0] == outcome[1] else "/".join(outcome)
    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_content=data)
        it.allocate_tensors()
        for d in it.get_input_details():
            if d["dtype"] in (np.bytes_, np.object_, np.str_):
                continue
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
    except Exception as exc:  # noqa: BLE001 - recorded: the SDK maps these
        return f"interp_error:{type(exc).__name__}"
    return "ok"


def _worker(kind: str, start: int, stop: int, verify: bool) -> None:
    # The protocol goes to a private copy of stdout; native code that writes to
    # fd 1 (logging) must not corrupt it.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    all_variants = variants(kind)
    for i in range(start, min(stop, len(all_variants))):
        label, data = all_variants[i]
        proto.write(json.dumps({"begin": i}) + "\n")
        try:
            outcome = _load_and_run(data, verify)
        except BaseException as exc:  # noqa: BLE001 - an untyped error is a finding
            outcome = f"untyped:{type(exc).__name__}:{exc}"[:300]
        proto.write(json.dumps({"end": i, "outcome": outcome}) + "\n")


# --------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------


def run_fuzz(kind: str = "random", verify: bool = True, start: int = 0,
             stop: int | None = None) -> dict:
    """Run every variant in worker subprocesses; return outcomes and crashes."""
    labels = [label for label, _ in variants(kind)]
    stop = len(labels) if stop is None else stop
    outcomes: dict[int, str] = {}
    crashes: list[tuple[int, str, str]] = []
    pos = start
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    while pos < stop:
        cmd = [sys.executable, __file__, "--worker", "--set", kind, "--start", str(pos),
               "--stop", str(stop)]
        if not verify:
            cmd.append("--raw")
        # stderr goes to a file, not a pipe: native logging could fill an unread
        # pipe and stall the worker, which would look like a hang.
        errlog = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog, env=env,
                                text=True)
        current = None
        last_end = None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + VARIANT_TIMEOUT_S + 30  # + worker start-up
        hung = False
        while True:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                hung = True
                proc.kill()
                break
            line = proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if "begin" in msg:
                current = msg["begin"]
                deadline = time.monotonic() + VARIANT_TIMEOUT_S
            else:
                outcomes[msg["end"]] = msg["outcome"]
                last_end = msg["end"]
                current = None
        sel.close()
        rc = proc.wait()
        proc.stdout.close()
        errlog.seek(0)
        stderr_tail = errlog.read()[-800:]
        errlog.close()
        if current is None:
            if rc == 0:
                break
            if last_end is None:  # died before the first variant: start-up failure
                raise RuntimeError(f"fuzz worker failed (rc={rc}): {stderr_tail}")
            # Died between variants (e.g. while freeing the last interpreter):
            # blame the variant that ran last.
            current = last_end
        why = "hang" if hung else f"rc={rc}"
        crashes.append((current, labels[current], f"{why} {stderr_tail.strip()}"))
        outcomes[current] = "crash"
        pos = current + 1
    return {"outcomes": outcomes, "crashes": crashes, "labels": labels}


@pytest.fixture(scope="module", params=["random", "opswap", "typeswap"])
def fuzz_result(request) -> dict:
    return run_fuzz(request.param, verify=True)


def test_fuzz_corrupt_models_never_crash_the_host(fuzz_result):
    outcomes = fuzz_result["outcomes"]
    assert len(outcomes) >= 500
    assert len(outcomes) == len(fuzz_result["labels"])
    crashes = fuzz_result["crashes"]
    assert not crashes, "variants crashed the host process:\n" + "\n".join(
        f"  #{i} {label}: {why}" for i, label, why in crashes
    )
    # The fuzz must exercise both paths, or it proves nothing.
    counts: dict[str, int] = {}
    for o in outcomes.values():
        key = o.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    assert counts.get("rejected", 0) > 100, counts
    assert counts.get("ok", 0) + counts.get("sdk_error", 0) > 20, counts


def test_fuzz_errors_are_typed(fuzz_result):
    """The verifier and ``Model()`` fail only with ``edgelite.EdgeliteError``.

    An untyped exception from *running* a model the verifier and the loader
    accepted (a kernel's own check failing at invoke time) is acceptable for
    the host, since it is a Python exception, not a crash; it is reported as a
    warning so the SDK can map it to a typed error.
    """
    labels = fuzz_result["labels"]
    outcomes = fuzz_result["outcomes"]
    bad = {i: o for i, o in outcomes.items()
           if o.startswith(("untyped_parse", "untyped_load", "untyped:"))}
    assert not bad, "variants raised untyped errors:\n" + "\n".join(
        f"  #{i} {labels[i]}: {o}" for i, o in sorted(bad.items())
    )
    at_run = {i: o for i, o in outcomes.items() if o.startswith("untyped_run")}
    if at_run:
        kinds = sorted({o.split(":")[1] + ": " + o.split(":", 2)[2][:90]
                        for o in at_run.values()})
        warnings.warn(
            f"{len(at_run)} variant(s) raised untyped exceptions from Model.run "
            f"(e.g. #{min(at_run)} {labels[min(at_run)]}); kinds: " + " | ".join(kinds[:8]),
            stacklevel=1,
        )


def _main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--set", default="random", choices=("random", "opswap", "typeswap"))
    ap.add_argument("--raw", action="store_true",
                    help="skip edgelite's verifier (measure the bare interpreter)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--stop", type=int, default=10**9)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.set, args.start, args.stop, verify=not args.raw)
        return
    t0 = time.monotonic()
    res = run_fuzz(args.set, verify=not args.raw, start=args.start,
                   stop=None if args.stop == 10**9 else args.stop)
    counts: dict[str, int] = {}
    for o in res["outcomes"].values():
        counts[o] = counts.get(o, 0) + 1
    untyped = [(i, res["labels"][i], o) for i, o in sorted(res["outcomes"].items())
               if o.startswith("untyped")]
    for o in res["outcomes"].values():
        if o.startswith("untyped"):  # one summary line per stage, not per message
            counts.pop(o, None)
            key = o.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
    sys.stdout.write(json.dumps({"counts": counts, "seconds": time.monotonic() - t0,
                                 "crashes": res["crashes"], "untyped": untyped},
                                indent=1) + "\n")


if __name__ == "__main__":
    _main(sys.argv[1:])
