"""A collapsed int8 model must not pass silently (issue 12, item 6).

The tiny detector-like model below is calibrated on inputs for which its first
ReLU never fires (as a detector calibrated on images without the objects it
detects): the int8 range of that activation is then ~0 and, on real inputs, the
int8 output is one constant value. The conversion refuses it, saying the
calibration data probably does not look like real inputs, unless explicitly allowed.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgelite.errors import ConversionError
from edgelite_convert import ConvertOptions, convert
from edgelite_convert.validate import collapsed_outputs, compare_outputs

RNG = np.random.default_rng(11)


def _model(path):
    w1 = np.abs(RNG.normal(0, 0.5, (6, 3, 3, 3))).astype(np.float32)  # positive: fires on positive inputs only
    w2 = RNG.normal(0, 0.5, (2, 6, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["score"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 2, 8, 8])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _data(lo, hi, n):
    return [RNG.uniform(lo, hi, (1, 8, 8, 3)).astype(np.float32) for _ in range(n)]


def test_collapsed_outputs_rules():
    ref = RNG.normal(0, 1, (4, 10))
    ok = compare_outputs(ref, ref + RNG.normal(0, 0.01, ref.shape))
    assert collapsed_outputs({"outputs": {"y": ok}}, 0.8, 5.0) == {}
    flat = compare_outputs(ref, np.zeros_like(ref))
    assert flat["constant"] and not flat["ref_constant"]
    assert "constant output" in collapsed_outputs({"outputs": {"y": flat}}, 0.8, 5.0)["y"]
    noisy = compare_outputs(ref, ref + RNG.normal(0, 2, ref.shape))
    assert "SNR" in collapsed_outputs({"outputs": {"y": noisy}}, 0.8, 5.0)["y"]
    # an output whose float reference is itself constant is not judged
    const_ref = compare_outputs(np.ones((4, 3)), np.ones((4, 3)))
    assert collapsed_outputs({"outputs": {"y": const_ref}}, 0.8, 5.0) == {}


@pytest.mark.slow
def test_collapsed_calibration_is_refused_unless_allowed(tmp_path):
    src = _model(tmp_path / "det.onnx")
    calib = _data(-1.0, -0.2, 24)          # the ReLU never fires: "no objects in the calibration images"
    real = _data(0.2, 1.0, 8)              # what the model sees in use
    with pytest.raises(ConversionError) as e:
        convert(src, calibration=calib, validation=real, progress=False)
    msg = str(e.value)
    assert "collapsed" in msg and "'score'" in msg
    assert "calibration data probably does not look like real inputs" in msg
    assert "--allow-collapsed" in msg and "range of ~0" in msg
    res = convert(src, calibration=calib, validation=real, progress=False,
                  options=ConvertOptions(allow_collapsed=True))
    assert "score" in res.report["validation"]["collapsed_outputs"]
    # calibrated on real-looking inputs, the same model passes
    good = convert(src, calibration=_data(0.0, 1.0, 24), validation=real, progress=False)
    assert good.report["validation"]["collapsed_outputs"] == {}
    assert good.report["validation"]["outputs"]["score"]["cosine_global"] > 0.99
    assert res.report["degenerate_activation_ranges"]
    assert good.report["degenerate_activation_ranges"] == []


def _worker_children() -> list[int]:
    """Live child processes of this test process running the converter's worker."""
    import os

    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"edgelite_convert._worker" in cmd and stat[0] != "Z":
            out.append(int(pid))
    return out


def test_a_phase_over_its_timeout_is_a_conversion_error_and_leaves_no_worker(tmp_path):
    """One worker process serves both phases of a conversion; a phase that overruns its
    timeout is killed with the process and reported, and nothing is left running."""
    src = _model(tmp_path / "det.onnx")
    with pytest.raises(ConversionError, match="timed out after"):
        convert(src, calibration=_data(0.0, 1.0, 24), progress=False, options=ConvertOptions(timeout_s=0.5))
    assert _worker_children() == []
    # the same conversion with room to run: both phases through one worker, which exits after
    res = convert(src, calibration=_data(0.0, 1.0, 24), progress=False)
    assert res.fully_integer and _worker_children() == []


def test_a_worker_killed_mid_phase_is_a_conversion_error_with_its_exit(tmp_path):
    """The converter's worker dying (OOM killer, a native abort) fails the conversion
    with "crashed (exit -9)", not a hang; the caller survives."""
    import os
    import signal
    import threading
    import time

    src = _model(tmp_path / "det.onnx")
    result: list = []
    t = threading.Thread(target=lambda: result.append(_try_convert(src)))
    t.start()
    t0 = time.monotonic()
    while not _worker_children() and time.monotonic() - t0 < 60:
        time.sleep(0.01)
    (pid,) = _worker_children()
    os.kill(pid, signal.SIGKILL)
    t.join(timeout=120)
    assert not t.is_alive()
    (err,) = result
    assert isinstance(err, ConversionError) and "crashed (exit -9)" in str(err), err
    assert _worker_children() == []


def _try_convert(src):
    try:
        convert(src, calibration=_data(0.0, 1.0, 24), progress=False)
    except ConversionError as e:
        return e
    return None
