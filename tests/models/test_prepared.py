"""The single step's cache of arrays derived from the weights (``models._common.prepared``)."""

import gc

import numpy as np
import pytest

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


def test_step_layouts_are_the_weights_laid_out_in_out_within_their_budget(monkeypatch):
    """NumPy weights named by the suffixes get their (in, out) layout, the same values, while
    they total at most ``_TRANSPOSED_BYTES``; elsewhere none."""
    xp = get_namespace("numpy")
    rng = np.random.default_rng(0)
    params = {
        "l.a.weight": xp.asarray(rng.standard_normal((3, 5))),
        "l.b.weight": xp.asarray(rng.standard_normal((2, 3))),
        "l.norm": xp.asarray(rng.standard_normal(3)),
    }
    layouts = _common.step_layouts((".a.weight", ".b.weight"), None, params)
    assert sorted(layouts) == ["l.a.weight", "l.b.weight"]
    for k, v in layouts.items():
        assert v.flags.f_contiguous and not np.shares_memory(v, params[k])
        np.testing.assert_array_equal(v, params[k])
    laid = xp.asarray(np.asfortranarray(rng.standard_normal((3, 4))))  # laid out (in, out)
    assert _common.step_layouts((".d.weight",), None, {"l.d.weight": laid}) == {}
    monkeypatch.setattr(_common, "_TRANSPOSED_BYTES", (15 + 6) * 8 - 1)  # one byte short
    assert _common.step_layouts((".a.weight", ".b.weight"), None, params) == {}
    assert sorted(_common.step_layouts((".a.weight",), None, params)) == ["l.a.weight"]
    assert _common.step_layouts((".c.weight",), None, params) == {}
    strict = get_namespace("array_api_strict")
    assert (
        _common.step_layouts(
            (".a.weight",), None, {"a.weight": strict.asarray(params["l.a.weight"])}
        )
        == {}
    )


@pytest.mark.parametrize("arch_name", ["mamba", "mamba2", "rwkv4", "rwkv6", "transformer"])
@pytest.mark.parametrize("budget", [64 << 20, 0])
def test_steps_read_their_projections_laid_out_in_out(arch_name, budget, monkeypatch):
    """A step reads the projections laid out (in, out) within the budget (copies, or weights
    laid out so already), and the weights themselves beyond it: the same result either way,
    equal to the forward of one step."""
    from kizzasi_lite.backends.random import Generator
    from kizzasi_lite.models import architecture
    from kizzasi_lite.nn import linear
    from tests.conftest import assert_close, rand

    monkeypatch.setattr(_common, "_TRANSPOSED_BYTES", budget)
    xp = get_namespace("numpy")
    arch = architecture(arch_name)
    cfg = _SMALL[arch_name](arch)
    params = arch.init_params(cfg, Generator(0, xp), "float64")
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or cfg.d_model
    x = rand(xp, (6, hidden), seed=4, dtype="float64")
    s0 = arch.init_state(cfg, 6, xp=xp, dtype=xp.float64)
    y_ref = arch.forward(cfg, params, x[:, None, :], s0)[0][:, 0, :]
    reads = []  # per weight a step reads through linear: (a copy, laid out (in, out))
    monkeypatch.setattr(
        arch,
        "linear",
        lambda v, w, b=None: (
            reads.append(
                (not any(np.shares_memory(w, p) for p in params.values()), w.mT.flags.c_contiguous)
            )
            or linear(v, w, b)
        ),
    )
    for bsz in (1, 6):  # either side of Mamba2's _FEW_STREAMS
        s = {k: v[:bsz] for k, v in s0.items()}
        assert_close(arch.step(cfg, params, x[:bsz], s)[0], y_ref[:bsz], xp=xp)
    copied = [copy for copy, _ in reads]
    if budget:  # each read is a copy, or a weight laid out so already (nothing to copy)
        assert any(copied) and all(laid for _, laid in reads)
    else:
        assert reads and not any(copied)


@pytest.mark.parametrize("arch_name", ["mamba", "mamba2", "rwkv4", "rwkv6", "s4d", "transformer"])
def test_step_caches_hold_no_view_of_the_weights(arch_name):
    """What a step prepares (its layouts included, also of weights laid out so already or of
    shape (n, 1)) keeps no weight alive: freed weights take their entries with them."""
    from kizzasi_lite.backends.random import Generator
    from kizzasi_lite.models import architecture

    xp = get_namespace("numpy")
    arch = architecture(arch_name)
    cfg = _SMALL[arch_name](arch)
    params = arch.init_params(cfg, Generator(0, xp), "float64")
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or cfg.d_model
    x = xp.asarray(np.ones((1, hidden)))
    arch.step(cfg, params, x, arch.init_state(cfg, 1, xp=xp, dtype=xp.float64))
    ids = {id(v) for v in params.values()}
    assert any(ids & set(key[3]) for key in _common._PREPARED)
    del params
    gc.collect()
    assert not any(ids & set(key[3]) for key in _common._PREPARED)


_SMALL = {
    "mamba": lambda m: m.Config(hidden_size=8, state_size=4, num_hidden_layers=2),
    "mamba2": lambda m: m.Config(
        hidden_size=8, state_size=4, num_heads=4, head_dim=4, n_groups=2, num_hidden_layers=2,
        chunk_size=4,
    ),
    "rwkv4": lambda m: m.Config(hidden_size=8, num_hidden_layers=2),
    "rwkv6": lambda m: m.Config(n_embd=8, head_size=4, n_layer=2),
    "s4d": lambda m: m.Config(d_model=8, d_state=4, n_layer=2),
    "transformer": lambda m: m.Config(
        hidden_size=8, intermediate_size=16, num_attention_heads=2, num_key_value_heads=1,
        num_hidden_layers=2, context_window=8,
    ),
}  # fmt: skip
