"""The live PyTorch path: a torch.nn.Module (Python API) and a .pt2 ExportedProgram (CLI) convert to
full int8 through torch.onnx.export and the ONNX importer. Runs where torch is installed
(``make test-torch``); skipped otherwise (torch is kept out of ``make test``)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "torch"))
import make_torch_fixtures as fx  # noqa: E402

import edgelite  # noqa: E402


def _calib(size: int, n: int = 60) -> list[np.ndarray]:
    x = fx.synthetic_images(n, size, 3)  # NCHW
    return [a.transpose(1, 2, 0)[None] for a in x]  # the converted model takes NHWC


@pytest.mark.parametrize("name", ["face_embedder_prelu", "mobilenet_v3_small"])
def test_torch_module_converts_fully_int8_and_matches_torch(name):
    from edgelite_convert import ConvertOptions, convert

    m, size = fx.build(name)
    res = convert(m, calibration=_calib(size), example_inputs=(torch.zeros(1, 3, size, size),), progress=False,
                  options=ConvertOptions(holdout=12))
    assert res.report["source"]["kind"].startswith("torch")
    assert res.report["fully_integer"] is True
    x = fx.synthetic_images(2, size, 9)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    got = edgelite.Model(res.float_model).run(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(next(iter(got.values())), ref, atol=1e-4 * max(1, np.abs(ref).max()))
    q = next(iter(edgelite.Model(res.model).run(x.transpose(0, 2, 3, 1)).values()))
    cos = float((q * ref).sum() / (np.linalg.norm(q) * np.linalg.norm(ref)))
    assert cos >= 0.95


def test_module_without_example_inputs_is_refused():
    from edgelite.errors import ConversionError
    from edgelite_convert import convert

    m, size = fx.build("face_embedder_prelu")
    with pytest.raises(ConversionError, match="example_inputs"):
        convert(m, calibration=_calib(size, 12), progress=False)


def test_cli_converts_a_pt2_exported_program(tmp_path, capsys):
    from edgelite.cli import main

    m, size = fx.build("resnet18")
    ep = torch.export.export(m, (torch.zeros(1, 3, size, size),))
    pt2 = tmp_path / "resnet.pt2"
    torch.export.save(ep, str(pt2))
    np.save(tmp_path / "calib.npy", np.concatenate(_calib(size, 40)))
    out = tmp_path / "resnet_int8.tflite"
    rc = main(["convert", str(pt2), "--calibration", str(tmp_path / "calib.npy"), "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "fully integer: True" in capsys.readouterr().out
    assert edgelite.Model(out).inputs[0].shape == (1, size, size, 3)
