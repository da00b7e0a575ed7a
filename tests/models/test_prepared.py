"""The single step's cache of arrays derived from the weights (``models._common.prepared``)."""

import gc

import numpy as np

from kizzasi_lite.autodiff import value_and_grad
from kizzasi_lite.backends import get_namespace, namespace
from kizzasi_lite.models import _common


def _build(calls):
    def build(cfg, params):
        calls.append(cfg)
        return {"double": params["w"] * cfg}

    return build


def test_computed_once_per_set_of_arrays_and_dropped_with_them():
    xp = get_namespace("numpy")
    calls = []
    build = _build(calls)
    w = xp.asarray(np.arange(3.0))
    first = _common.prepared(build, 2.0, {"w": w})
    assert _common.prepared(build, 2.0, {"w": w}) is first  # a new dict of the same arrays: a hit
    assert len(calls) == 1
    w2 = xp.asarray(np.arange(3.0))  # equal values, but a new array: new weights
    np.testing.assert_array_equal(
        _common.prepared(build, 2.0, {"w": w2})["double"], first["double"]
    )
    assert len(calls) == 2
    third = _common.prepared(build, 3.0, {"w": w})  # another config: another entry
    np.testing.assert_array_equal(third["double"], np.arange(3.0) * 3.0)
    assert calls == [2.0, 2.0, 3.0]
    assert sum(key[0] is build for key in _common._PREPARED) == 3
    del w, w2, first, third
    gc.collect()
    assert not any(key[0] is build for key in _common._PREPARED)  # freed weights: entries gone


def test_not_used_under_autodiff():
    xp = get_namespace("numpy")
    calls = []
    build = _build(calls)
    plain = xp.asarray(np.arange(3.0))
    seen = []

    def loss(p):
        seen.append(_common.prepared(build, 2.0, p))  # traced weights
        seen.append(_common.prepared(build, 2.0, {"w": plain}, p["w"]))  # a traced input
        return namespace(p["w"]).sum(p["w"] * p["w"])

    value_and_grad(loss, {"w": xp.asarray(np.arange(3.0))})
    assert seen == [None, None] and not calls
