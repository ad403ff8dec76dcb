"""edgelite.fileio.load_npy_bytes: the one .npy parser for untrusted bytes (server bodies, batch inputs)."""
from __future__ import annotations

import io

import numpy as np
import pytest

from edgelite.errors import InputError
from edgelite.fileio import load_npy_bytes


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("a", [np.arange(24, dtype=np.int8).reshape(2, 3, 4), np.asfortranarray(np.ones((3, 5))),
                               np.float32(7.0), np.zeros((0, 3), np.uint8)])
def test_round_trip(a):
    np.testing.assert_array_equal(load_npy_bytes(_npy(a)), a)


def test_header_declaring_more_than_sent_is_refused_before_allocating():
    bomb = _npy(np.zeros((2, 2), np.float64)).replace(b"(2, 2)", b"(100000, 100000)")
    with pytest.raises(InputError, match="header declares"):
        load_npy_bytes(bomb)


@pytest.mark.parametrize("body", [_npy(np.array([{"a": 1}], dtype=object)), b"\x93NUMPY garbage", b"", b"not npy"])
def test_pickles_and_garbage_are_typed_errors(body):
    with pytest.raises(InputError):
        load_npy_bytes(body)
