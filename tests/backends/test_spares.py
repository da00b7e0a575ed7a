"""spare_empty: large outputs of a step given again once nothing refers to them."""

from __future__ import annotations

import numpy as np
import pytest

from kizzasi_lite import backends
from kizzasi_lite.backends import get_namespace, spare_empty

SHAPE = (64, 32)


@pytest.fixture
def spares(monkeypatch):
    """A fresh pool in which every array of 1 byte or more is kept spare."""
    pool: dict = {}
    monkeypatch.setattr(backends, "_spares", pool)
    monkeypatch.setattr(backends, "_SPARE_MIN_BYTES", 1)
    return pool


def test_an_array_nothing_refers_to_is_given_again(spares):
    xp = get_namespace("numpy")
    a = spare_empty(xp, SHAPE, np.float32)
    assert a.shape == SHAPE and a.dtype == np.float32
    address = a.ctypes.data
    del a
    b = spare_empty(xp, SHAPE, np.float32)
    assert b.ctypes.data == address


def test_an_array_held_or_viewed_is_never_given_again(spares):
    xp = get_namespace("numpy")
    a = spare_empty(xp, SHAPE, np.float32)
    view = a.T[1:]  # a view refers to the array owning the memory
    address = a.ctypes.data
    del a
    b = spare_empty(xp, SHAPE, np.float32)
    c = spare_empty(xp, SHAPE, np.float32)
    assert address not in (b.ctypes.data, c.ctypes.data) and b.ctypes.data != c.ctypes.data
    del view
    assert spare_empty(xp, SHAPE, np.float32).ctypes.data == address


def test_spares_never_outnumber_the_arrays_in_use(spares):
    xp = get_namespace("numpy")
    held = [spare_empty(xp, SHAPE, np.float32) for _ in range(6)]
    assert len(spares[(SHAPE, np.dtype(np.float32))]) == 6
    del held[1:]  # 5 spare, 1 in use
    again = spare_empty(xp, SHAPE, np.float32)  # 2 in use: at most 2 spares kept
    assert len(spares[(SHAPE, np.dtype(np.float32))]) == 4
    del again


def test_a_new_shape_drops_the_spares_of_others_and_keeps_those_in_use(spares):
    xp = get_namespace("numpy")
    kept = spare_empty(xp, SHAPE, np.float32)
    dropped = spare_empty(xp, SHAPE, np.float32)
    del dropped
    other = spare_empty(xp, (8, 8), np.float64)
    pool = spares[(SHAPE, np.dtype(np.float32))]
    assert len(pool) == 1 and pool[0] is kept
    assert other.dtype == np.float64


def test_small_arrays_and_other_backends_are_plain_new_arrays(monkeypatch):
    monkeypatch.setattr(backends, "_spares", {})
    xp = get_namespace("numpy")
    a = spare_empty(xp, (4,), np.float32)  # below _SPARE_MIN_BYTES
    assert a.shape == (4,) and not backends._spares
    strict = get_namespace("array_api_strict")
    b = spare_empty(strict, (4, 4), strict.float64)
    assert b.shape == (4, 4) and b.dtype == strict.float64 and not backends._spares
