"""Issue 11: untrusted converter inputs give typed errors before any TensorFlow work.

Each ONNX case runs ``edgelite_convert.convert`` in a fresh interpreter and checks
that TensorFlow was never imported (and the peak RSS stayed small for the sparse
external-data file).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgelite.errors import CalibrationDataError, ConversionError, InvalidSourceError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys
out = {}
try:
    from edgelite_convert.convert import convert
    convert(sys.argv[1], calibration=None, progress=False)
    out["error"] = None
except BaseException as e:
    from edgelite.errors import InvalidSourceError
    out["error"] = type(e).__name__
    out["typed"] = isinstance(e, InvalidSourceError) and isinstance(e, ValueError)
    out["message"] = str(e)[:500]
out["tensorflow_imported"] = "tensorflow" in sys.modules
# VmHWM: this process's own peak. ru_maxrss is no good here: exec() folds the forking
# parent's high-water mark (a pytest process with TensorFlow loaded) into it.
try:
    out["peak_mb"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
except (OSError, StopIteration):
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _convert_in_child(path: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _tiny_model(weight: np.ndarray | None = None) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones(4, np.float32) if weight is None else weight, "w")
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_random_bytes_onnx_is_a_typed_error_before_tensorflow(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out = _convert_in_child(p)
    assert out["error"] == "InvalidSourceError" and out["typed"], out
    assert "not an ONNX model" in out["message"]
    assert not out["tensorflow_imported"], out


@pytest.mark.parametrize("seed", range(8))
def test_garbage_never_escapes_untyped(tmp_path, seed):
    from edgelite_convert.onnx_check import check_onnx_file

    p = tmp_path / "m.onnx"
    p.write_bytes(np.random.default_rng(seed).integers(0, 256, 64 + 97 * seed, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidSourceError):
        check_onnx_file(p)


def test_ir_version_999_is_a_typed_error_before_tensorflow(tmp_path):
    m = _tiny_model()
    m.ir_version = 999
    p = tmp_path / "future.onnx"
    p.write_bytes(m.SerializeToString())
    out = _convert_in_child(p)
    assert out["error"] == "InvalidSourceError" and out["typed"], out
    assert "ir_version 999" in out["message"]
    assert not out["tensorflow_imported"], out


def test_sparse_2gib_external_weight_is_refused_before_reading(tmp_path):
    m = _tiny_model()
    init = m.graph.initializer[0]
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value="weights.bin")
    (tmp_path / "weights.bin").open("wb").truncate(2 * 1024**3)  # sparse: costs no disk
    p = tmp_path / "sparse.onnx"
    p.write_bytes(m.SerializeToString())
    out = _convert_in_child(p)
    assert out["error"] == "InvalidSourceError" and out["typed"], out
    assert "needs 16 bytes" in out["message"], out
    assert not out["tensorflow_imported"]
    assert out["peak_mb"] < 300, out


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    from edgelite_convert.onnx_check import check_onnx_file

    m = _tiny_model()
    init = m.graph.initializer[0]
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value="../outside.bin")
    (tmp_path / "outside.bin").write_bytes(bytes(16))
    d = tmp_path / "model"
    d.mkdir()
    (d / "m.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(InvalidSourceError, match="outside the model's folder"):
        check_onnx_file(d / "m.onnx")


def test_a_good_model_passes_the_check(tmp_path):
    from edgelite_convert.onnx_check import check_onnx_file

    p = tmp_path / "ok.onnx"
    onnx.save_model(_tiny_model(), str(p), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ok.bin", size_threshold=0)
    assert check_onnx_file(p).graph.node[0].op_type == "Add"


class _Evil:
    """Unpickling this would create a file: proof that nothing was unpickled."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_pickled_calibration_file_is_refused_and_never_unpickled(tmp_path, suffix):
    from edgelite_convert.calibration import build_calibration_set

    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    arr = np.array([evil, evil], dtype=object)
    p = tmp_path / f"calib{suffix}"
    if suffix == ".npy":
        np.save(p, arr, allow_pickle=True)
    else:
        np.savez(p, x=arr)
    with pytest.raises(CalibrationDataError, match="pickle"):
        build_calibration_set(str(p), [("x", [1, 4], "float32")], min_samples=1, min_recommended=1, progress=False)
    assert not marker.exists()
    assert issubclass(CalibrationDataError, ValueError) and not issubclass(InvalidSourceError, CalibrationDataError)
    assert issubclass(InvalidSourceError, ConversionError)
