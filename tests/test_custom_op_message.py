"""The custom-op error says what fixes it: upgrading ai-edge-litert cannot help a MediaPipe op."""
from __future__ import annotations

from pathlib import Path

import flatbuffers
import pytest

import edgelite
from edgelite.errors import UnsupportedModelError

DATA = Path(__file__).resolve().parent / "data"


def _with_custom_op(name: str) -> bytes:
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(bytearray((DATA / "conv_float.tflite").read_bytes()), 0)
    oc = m.operatorCodes[0]  # CONV_2D in this fixture
    oc.builtinCode = oc.deprecatedBuiltinCode = 32  # CUSTOM
    oc.customCode = name
    for op in m.subgraphs[0].operators:
        if op.opcodeIndex == 0:
            op.builtinOptionsType, op.builtinOptions = 0, None
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_mediapipe_custom_op_does_not_suggest_upgrading():
    with pytest.raises(UnsupportedModelError) as e:
        edgelite.Model(_with_custom_op("Convolution2DTransposeBias"))
    msg = str(e.value)
    assert "MediaPipe custom op" in msg and "upgrading does not help" in msg
    assert "Fix: upgrade" not in msg


@pytest.mark.parametrize("name,expect", [("FlexErf", "Select TF ops"), ("MyOwnOp", "custom op this runtime")])
def test_other_custom_ops(name, expect):
    with pytest.raises(UnsupportedModelError, match=expect):
        edgelite.Model(_with_custom_op(name))
