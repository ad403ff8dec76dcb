"""Keras LSTM/GRU convert to full int8: unrolled automatically when the sequence length is static
(issue 12, item 5); a dynamic length is refused with a message that says so (not the raw MLIR error)."""
from __future__ import annotations

import numpy as np
import pytest

from edgelite.errors import ConversionError


def _model(kind: str, steps):
    import keras

    keras.utils.set_random_seed(1)
    x = keras.Input((steps, 8), batch_size=1)
    layer = {"LSTM": keras.layers.LSTM(16), "GRU": keras.layers.GRU(16),
             "BiLSTM": keras.layers.Bidirectional(keras.layers.LSTM(8))}[kind]
    return keras.Model(x, keras.layers.Dense(4)(layer(x)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "BiLSTM"])
def test_static_length_recurrent_layer_is_unrolled_and_fully_int8(kind):
    from edgelite_convert import ConvertOptions, convert

    rng = np.random.default_rng(0)
    calib = [rng.normal(0, 1, (1, 12, 8)).astype(np.float32) for _ in range(40)]
    res = convert(_model(kind, 12), calibration=calib, progress=False, options=ConvertOptions(holdout=10))
    assert res.report["fully_integer"] is True
    assert any("unrolled over its 12 static time steps" in r for r in res.report["rewrites"])
    assert "WHILE" not in res.report["op_histogram"]
    assert res.report["validation"]["cosine_min_over_outputs"] >= 0.98


@pytest.mark.slow
def test_dynamic_length_is_refused_with_the_reason():
    from edgelite_convert import convert

    calib = [np.random.default_rng(i).normal(0, 1, (1, 12, 8)).astype(np.float32) for i in range(12)]
    with pytest.raises(ConversionError) as e:
        convert(_model("LSTM", None), calibration=calib, progress=False)
    msg = str(e.value)
    assert "dynamic sequence length" in msg and "keras.Input((T, features))" in msg
    assert "SELECT_TF_OPS fallback is not offered" in msg and "TensorListReserve" not in msg
