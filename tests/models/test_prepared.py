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


def test_step_projections_are_contiguous_transposes_within_their_budget(monkeypatch):
    """NumPy weights get contiguous (in, out) copies while they total at most
    ``_TRANSPOSED_BYTES``; ``project`` through a copy or through the weight is ``linear``."""
    from kizzasi_lite.nn import linear

    xp = get_namespace("numpy")
    rng = np.random.default_rng(0)
    params = {
        "a": xp.asarray(rng.standard_normal((3, 5))),
        "b": xp.asarray(rng.standard_normal((2, 3))),
    }
    copies = _common.step_projections(params, ["a", "b"])
    assert sorted(copies) == ["a", "b"]
    for k, w in params.items():
        assert copies[k].flags.c_contiguous and not np.shares_memory(copies[k], w)
        np.testing.assert_array_equal(copies[k], w.T)
    x, bias = xp.asarray(rng.standard_normal((4, 5))), xp.asarray(rng.standard_normal(3))
    for t in (copies["a"], None):
        np.testing.assert_allclose(
            _common.project(x, params["a"], t, bias), linear(x, params["a"], bias)
        )
    monkeypatch.setattr(_common, "_TRANSPOSED_BYTES", (15 + 6) * 8 - 1)  # one byte short
    assert _common.step_projections(params, ["a", "b"]) == {}
    assert sorted(_common.step_projections(params, ["a"])) == ["a"]
    strict = get_namespace("array_api_strict")
    assert _common.step_projections({"a": strict.asarray(params["a"])}, ["a"]) == {}


def test_steps_without_projection_copies_equal_the_plain_step(monkeypatch):
    """Over the budget, the Mamba steps read the weights themselves, with the same result."""
    from kizzasi_lite.backends.random import Generator
    from kizzasi_lite.models import mamba, mamba2
    from tests.conftest import assert_close, rand

    monkeypatch.setattr(_common, "_TRANSPOSED_BYTES", 0)
    xp = get_namespace("numpy")
    for arch, cfg in (
        (mamba, mamba.Config(hidden_size=8, state_size=4, num_hidden_layers=2)),
        (mamba2, mamba2.Config(hidden_size=8, state_size=4, num_heads=4, head_dim=4, n_groups=2,
                               num_hidden_layers=2, chunk_size=4)),
    ):  # fmt: skip
        params = arch.init_params(cfg, Generator(0, xp), "float64")
        layers, _ = _common.prepared(arch._prepare_step, cfg, params)
        assert all(w["in_proj"] is None and w["out_proj"] is None for w in layers)
        for bsz in (1, 6):
            s0 = arch.init_state(cfg, bsz, xp=xp, dtype=xp.float64)
            x = rand(xp, (bsz, cfg.hidden_size), seed=4, dtype="float64")
            y, _ = arch.step(cfg, params, x, s0)
            assert_close(y, arch._step_plain(cfg, params, x, s0)[0], xp=xp)
