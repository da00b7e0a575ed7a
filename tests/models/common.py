"""Helpers shared by the architecture tests: ``arch`` is a module of ``kizzasi_lite.models``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kizzasi_lite.backends import loops_are_cheap, namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import InputError
from tests.conftest import assert_close, rand


def perturbed_params(arch, cfg, xp, dtype, seed=0, *, std=0.1, noise_seed=None):
    """``arch.init_params`` plus N(0, std) noise, so that no 0/1 of the default init hides a
    mistake. The noise comes from the init's generator, or from ``Generator(noise_seed)``."""
    rng = Generator(seed, xp)
    params = arch.init_params(cfg, rng, dtype)
    noise = rng if noise_seed is None else Generator(noise_seed, xp)
    return {k: v + noise.normal(tuple(v.shape), std=std, dtype=v.dtype) for k, v in params.items()}


def random_state(arch, xp, cfg, batch, dtype, seed=5):
    """A state of ``arch.init_state``'s keys and shapes, filled with uniform random numbers."""
    zeros = arch.init_state(cfg, batch, xp=xp, dtype=getattr(xp, dtype))
    return {
        k: rand(xp, tuple(v.shape), seed=seed + j, dtype=dtype)
        for j, (k, v) in enumerate(zeros.items())
    }


def step_loop(arch, cfg, params, x, state):
    """``arch.step`` over every time step of ``x`` (B, T, D) -> (B, T, D), final state."""
    ys = []
    for t in range(x.shape[1]):
        y, state = arch.step(cfg, params, x[:, t, :], state)
        ys.append(y)
    return namespace(*ys).stack(ys, axis=1), state


def assert_states_close(a, b, **kw):
    """Same keys, and every array close (``assert_close``'s keywords)."""
    assert sorted(a) == sorted(b)
    for key in a:
        assert_close(a[key], b[key], **kw)


def assert_prepared_step_is_plain(arch, cfg, xp, params, dtype, changed_key, delta):
    """The inference step (on arrays prepared once from the weights) equals ``_step_plain``, at
    1, 3 and 6 streams (either side of Mamba2's ``_FEW_STREAMS``), also after ``changed_key``
    moves by ``delta`` (new weights: a new cache entry)."""
    for bsz in (1, 3, 6):
        s0 = random_state(arch, xp, cfg, bsz, dtype)
        x = rand(xp, (bsz, cfg.hidden_size), seed=4, dtype=dtype)
        y, s = arch.step(cfg, params, x, s0)
        y_ref, s_ref = arch._step_plain(cfg, params, x, s0)
        assert_close(y, y_ref, xp=xp)
        assert_states_close(s, s_ref, xp=xp)
    new = {**params, changed_key: params[changed_key] + delta}
    assert_close(arch.step(cfg, new, x, s0)[0], arch._step_plain(cfg, new, x, s0)[0], xp=xp)


def assert_stream_blocks_are_plain(arch, cfg, xp, params, per_stream, monkeypatch):
    """Many streams on NumPy-backed arrays: the step's state update runs in blocks of streams
    written in place (here blocks of 2, 2 and 1 of 5 streams, ``per_stream`` numbers of state
    each) into arrays reused once no state holds them; it equals the plain step, and steps
    from a state leave it (and the states before it) as they were."""
    from kizzasi_lite import backends
    from kizzasi_lite.models import _common

    monkeypatch.setattr(_common, "_STATE_BLOCK_NUMBERS", 2 * per_stream)
    monkeypatch.setattr(backends, "_SPARE_MIN_BYTES", 1)  # every new state from the spares
    monkeypatch.setattr(backends, "_spares", {})
    s0 = random_state(arch, xp, cfg, 5, "float64")
    x = rand(xp, (5, cfg.hidden_size), seed=4, dtype="float64")
    calls, update = [], arch._state_update
    monkeypatch.setattr(arch, "_state_update", lambda *a, **kw: calls.append(1) or update(*a, **kw))
    y, s = arch.step(cfg, params, x, s0)
    y_ref, s_ref = arch._step_plain(cfg, params, x, s0)
    assert len(calls) == cfg.num_hidden_layers * (3 if loops_are_cheap(x) else 1)
    assert_close(y, y_ref, xp=xp, rtol=1e-12, atol=1e-12)
    for key in s:
        assert_close(s[key], s_ref[key], xp=xp, rtol=1e-12, atol=1e-12)

    kept = {k: to_numpy(v).copy() for k, v in s.items()}
    later = s
    for _ in range(4):  # the states in between are dropped: their arrays are given again
        _, later = arch.step(cfg, params, x, later)
    for key in s:
        np.testing.assert_array_equal(to_numpy(s[key]), kept[key])
    y_again, s_again = arch.step(cfg, params, x, s0)
    np.testing.assert_array_equal(to_numpy(y_again), to_numpy(y))
    for key in s:
        np.testing.assert_array_equal(to_numpy(s_again[key]), kept[key])


def assert_blocked_scan_is_chunked(blocked, chunked, args, block, dtype, xp):
    """``blocked(*args, block)`` (the in-place inference scan) equals ``chunked(*args, block)``
    and leaves the state passed in (the last argument) untouched; off NumPy it refuses with
    InputError (it writes its states into views of its own buffers)."""
    y_ref, h_ref = chunked(*args, block)
    if not loops_are_cheap(*args):
        with pytest.raises(InputError, match="NumPy views in place"):
            blocked(*args, block)
        return
    h0 = to_numpy(args[-1]).copy()
    y, h = blocked(*args, block)
    np.testing.assert_array_equal(to_numpy(args[-1]), h0)
    t32 = {"rtol": 1e-6, "atol": 1e-6} if dtype == "float32" else {}
    assert_close(y, y_ref, xp=xp, **t32)
    assert_close(h, h_ref, xp=xp, **t32)


def assert_recomputed_scan_is_chunked(recomputed, chunked, inputs, y_shape, xp, seed):
    """``recomputed(*inputs.values())`` (training's one-operation scan) gives the value and the
    gradients of every input that ``chunked(*inputs.values(), 4)`` gives through the tape, for
    a loss weighting both ``y`` (``y_shape``) and the last state. Both return ``(y, state)``;
    the state is one array or a tuple of arrays, shaped as the last inputs."""
    from kizzasi_lite.autodiff import value_and_grad

    rng = np.random.default_rng(seed)
    wy = xp.asarray(rng.normal(size=y_shape))
    ws = [xp.asarray(rng.normal(size=tuple(u.shape))) for u in inputs.values()]

    def loss(scan):
        def f(q):
            y, h = scan(*q.values())
            h = h if isinstance(h, tuple) else (h,)
            ns = namespace(y, *h)
            return ns.sum(y * wy) + sum(
                ns.sum(a * w) for a, w in zip(h, ws[-len(h) :], strict=True)
            )

        return f

    v_ref, g_ref = value_and_grad(loss(lambda *a: chunked(*a, 4)), inputs)
    v, g = value_and_grad(loss(recomputed), inputs)
    assert float(v) == pytest.approx(float(v_ref), rel=1e-10, abs=1e-10)
    for k in inputs:
        assert_close(g[k], g_ref[k], xp=xp, rtol=1e-9, atol=1e-10)


def assert_state_numel(arch, cfg, xp, batch):
    """``arch.state_numel(cfg)`` counts the numbers of one stream of ``init_state``."""
    state = arch.init_state(cfg, batch, xp=xp, dtype=xp.float32)
    assert all(v.shape[0] == batch for v in state.values())
    assert sum(math.prod(v.shape[1:]) for v in state.values()) == arch.state_numel(cfg)
    return state


def perturb_torch(torch, module, scale=0.1):
    """A torch reference ``module`` with N(0, scale) added to every parameter, in float64."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module.double().eval()


def saved_pretrained(model, folder):
    """``model.save_pretrained(folder)`` read back: (NumPy tensors, config.json as a dict)."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model.save_pretrained(str(folder))
    tensors = safetensors_numpy.load_file(str(folder / "model.safetensors"))
    return tensors, json.loads((folder / "config.json").read_text())
