"""RWKV-6 (Finch): step == forward on every backend, carried state, and BlinkDL's ``rwkv`` package."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import get_namespace, namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models import rwkv6
from tests.conftest import assert_close, rand, tol
from tests.models import common
from tests.models.common import assert_state_numel, assert_states_close

SMALL = rwkv6.Config(
    n_embd=16,
    n_layer=2,
    head_size=8,
    dim_ffn=24,
    time_mix_extra_dim=4,
    time_decay_extra_dim=6,
    chunk_size=4,
)


def perturbed_params(cfg, xp, dtype="float32", seed=0):
    """Reference init plus noise on every tensor, so no zero or one can hide a mistake."""
    return common.perturbed_params(rwkv6, cfg, xp, dtype, seed)


def step_loop(cfg, params, x, state):
    """``step`` over every time step of ``x`` (B, T, C) -> (B, T, C), final state."""
    return common.step_loop(rwkv6, cfg, params, x, state)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_loop_matches_forward(xp, dtype):
    params = perturbed_params(SMALL, xp, dtype)
    x = rand(xp, (2, 11, SMALL.n_embd), seed=1, dtype=dtype)
    y, state = rwkv6.forward(SMALL, params, x)
    assert y.shape == (2, 11, SMALL.n_embd)
    ys, states = step_loop(SMALL, params, x, rwkv6.init_state(SMALL, 2, xp=xp, dtype=x.dtype))
    assert_close(ys, y, xp=xp)
    assert_states_close(states, state, xp=xp)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_forward_carries_state(xp, dtype):
    params = perturbed_params(SMALL, xp, dtype, seed=2)
    x = rand(xp, (2, 13, SMALL.n_embd), seed=3, dtype=dtype)  # 13 = 3 chunks of 4 + 1
    y, state = rwkv6.forward(SMALL, params, x)
    y1, s1 = rwkv6.forward(SMALL, params, x[:, :6, :])  # splits inside a chunk
    y2, s2 = rwkv6.forward(SMALL, params, x[:, 6:, :], s1)
    assert_close(xp.concat([y1, y2], axis=1), y, xp=xp)
    assert_states_close(s2, state, xp=xp)
    # T = 1 through forward equals one step
    y_one, s_one = rwkv6.forward(SMALL, params, x[:, :1, :])
    zero = rwkv6.init_state(SMALL, 2, xp=xp, dtype=x.dtype)
    y_step, s_step = rwkv6.step(SMALL, params, x[:, 0, :], zero)
    assert_close(y_one[:, 0, :], y_step, xp=xp)
    assert_states_close(s_one, s_step, xp=xp)


def _wkv_inputs(xp, b, t, seed, strong=False, h=2, n=4):
    """WKV inputs (``r, k, v, logw`` (B, T, H, N), ``u``, ``s``); ``strong``: decays from
    w -> 0 (``exp(d)`` = e^6) to w -> 1 (e^-12) across the channels."""
    rng = np.random.default_rng(seed)
    d = (
        np.linspace(-12.0, 6.0, n) * np.ones((b, t, h, 1))
        if strong
        else rng.normal(size=(b, t, h, n))
    )
    inputs = {
        "r": rng.normal(size=(b, t, h, n)),
        "k": rng.normal(size=(b, t, h, n)),
        "v": rng.normal(size=(b, t, h, n)),
        "logw": -np.exp(d),
        "u": rng.normal(size=(h, n)),
        "s": rng.normal(size=(b, h, n, n)),
    }
    return {key: xp.asarray(a) for key, a in inputs.items()}


@pytest.mark.parametrize("strong", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 10, 64])
def test_wkv_recurrent_equals_chunked(xp, chunk, strong):
    """The NumPy path of ``forward`` (the recurrence, step by step) equals the chunked WKV of
    the device backends, for any chunk and for decays from w -> 0 to w -> 1."""
    inputs = _wkv_inputs(xp, 2, 10, seed=chunk, strong=strong)
    y_ref, s_ref = rwkv6.wkv_sequence(*inputs.values(), chunk)
    y, s = rwkv6.wkv_recurrent(*inputs.values())
    assert_close(y, y_ref, xp=xp)
    assert_close(s, s_ref, xp=xp)


@pytest.mark.parametrize("t,block_numbers", [(1, 1 << 22), (7, 1), (7, 2 * 2 * 4 * 4 * 3)])
def test_wkv_recurrent_gradients_equal_the_tape(xp, monkeypatch, t, block_numbers):
    """Training's WKV operation: the gradients of all six inputs, from the outputs and from the
    last state, equal the chunked WKV's tape gradients, with the backward's recomputed blocks
    of 1, 3 or all steps."""
    monkeypatch.setattr(rwkv6, "_GRAD_BLOCK_NUMBERS", block_numbers)
    inputs = _wkv_inputs(xp, 2, t, seed=20 + t)
    common.assert_recomputed_scan_is_chunked(
        rwkv6.wkv_recurrent, rwkv6.wkv_sequence, inputs, (2, t, 2, 4), xp, seed=t
    )


def test_strong_decay_stays_finite(np_xp):
    """w -> 0 (exp(d) huge) and w -> 1: forward must not overflow or lose precision."""
    params = perturbed_params(SMALL, np_xp, "float32", seed=6)
    for i in range(SMALL.n_layer):
        d = params[f"blocks.{i}.att.time_decay"]
        ramp = np.linspace(-12.0, 6.0, d.shape[-1], dtype=np.float32).reshape(d.shape)
        params[f"blocks.{i}.att.time_decay"] = ramp
    x = rand(np_xp, (1, 21, SMALL.n_embd), seed=7)
    y, _ = rwkv6.forward(SMALL, params, x)
    ys, _ = step_loop(SMALL, params, x, rwkv6.init_state(SMALL, 1, xp=np_xp))
    assert np.all(np.isfinite(y))
    assert_close(ys, y)


@settings(max_examples=8, deadline=None)
@given(t=st.integers(1, 12), split=st.integers(0, 12), chunk=st.integers(1, 5))
def test_split_property(t, split, chunk):
    xp = get_namespace("numpy")
    cfg = rwkv6.Config.from_dict({**SMALL.to_dict(), "chunk_size": chunk})
    params = perturbed_params(cfg, xp, "float64", seed=8)
    x = rand(xp, (1, t, cfg.n_embd), seed=t, dtype="float64")
    split = min(split, t)
    y, state = rwkv6.forward(cfg, params, x)
    y1, s1 = rwkv6.forward(cfg, params, x[:, :split])
    y2, s2 = rwkv6.forward(cfg, params, x[:, split:], s1)
    assert_close(np.concatenate([y1, y2], axis=1), y)
    assert_states_close(s2, state)


def test_state_numel_matches_init_state(xp):
    for cfg in (SMALL, rwkv6.Config(n_embd=64, n_layer=3, head_size=16, dim_att=32)):
        assert_state_numel(rwkv6, cfg, xp, 3)


def test_init_params_layout(xp):
    params = rwkv6.init_params(SMALL, Generator(0, xp), xp.float32)
    shapes = rwkv6.param_shapes(SMALL)
    assert {k: tuple(v.shape) for k, v in params.items()} == shapes
    assert all(v.dtype == xp.float32 for v in params.values())
    w = to_numpy(params["blocks.0.att.receptance.weight"])  # orthogonal rows (A == C)
    np.testing.assert_allclose(w @ w.T, np.eye(w.shape[0]), atol=1e-5)
    np.testing.assert_allclose(to_numpy(params["blocks.1.att.ln_x.weight"]), 1.0)
    np.testing.assert_allclose(to_numpy(params["blocks.0.att.output.weight"]), 0.0)


def test_config_round_trip_and_validation():
    cfg = rwkv6.Config(n_embd=64, n_layer=2)
    assert cfg.dim_att == 64 and cfg.dim_ffn == 224 and cfg.num_heads == 1
    assert rwkv6.Config.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    hf = {"hidden_size": 64, "num_hidden_layers": 2, "attention_hidden_size": 64, "vocab_size": 9}
    assert rwkv6.Config.from_dict(hf) == cfg
    with pytest.raises(ConfigError, match="head_size"):
        rwkv6.Config(n_embd=64, dim_att=48, head_size=64)
    with pytest.raises(ConfigError, match="n_layer"):
        rwkv6.Config(n_layer=0)


def test_checkpoint_round_trip_and_errors(np_xp):
    params = {k: to_numpy(v) for k, v in perturbed_params(SMALL, np_xp).items()}
    tensors = {"emb.weight": np.zeros((5, 16), np.float32), **params}
    cfg = rwkv6.config_from_checkpoint(tensors, None)
    assert cfg.to_dict() == {**SMALL.to_dict(), "chunk_size": cfg.chunk_size}
    loaded = rwkv6.params_from_checkpoint(tensors, cfg)
    assert sorted(loaded) == sorted(params)
    squeezed = {**tensors, "blocks.1.att.time_maa_x": params["blocks.1.att.time_maa_x"][0, 0]}
    assert rwkv6.params_from_checkpoint(squeezed, cfg)["blocks.1.att.time_maa_x"].shape == (
        1,
        1,
        16,
    )
    missing = {k: v for k, v in tensors.items() if k != "blocks.1.ffn.key.weight"}
    with pytest.raises(WeightsError, match=r"blocks\.1\.ffn\.key\.weight.*\(24, 16\)"):
        rwkv6.params_from_checkpoint(missing, cfg)
    wrong = {**tensors, "blocks.0.att.gate.weight": np.zeros((16, 15), np.float32)}
    with pytest.raises(WeightsError, match=r"blocks\.0\.att\.gate\.weight"):
        rwkv6.params_from_checkpoint(wrong, cfg)


# ------------------------------------------------------------------------- BlinkDL's rwkv package
def _x060_state_dict(torch, C=128, L=2, N=64, V=11, Dm=32, Dd=64, F=448):
    """A random x060 checkpoint with realistic, perturbed values (every tensor non-trivial)."""
    H = C // N
    torch.manual_seed(0)

    def noise(*shape, scale=0.1):
        return scale * torch.randn(*shape)

    sd = {"emb.weight": torch.randn(V, C), "head.weight": torch.randn(V, C) / C**0.5}
    sd["blocks.0.ln0.weight"], sd["blocks.0.ln0.bias"] = 1 + noise(C), noise(C)
    for i in range(L):
        b = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            sd[f"{b}{ln}.weight"], sd[f"{b}{ln}.bias"] = 1 + noise(C), noise(C)
        for m in "xwkvrg":
            sd[f"{b}att.time_maa_{m}"] = torch.rand(1, 1, C)
        sd[f"{b}att.time_maa_w1"], sd[f"{b}att.time_maa_w2"] = noise(C, 5 * Dm), noise(5, Dm, C)
        sd[f"{b}att.time_decay"] = torch.linspace(-6, 0, C).reshape(1, 1, C) + noise(1, 1, C)
        sd[f"{b}att.time_decay_w1"], sd[f"{b}att.time_decay_w2"] = noise(C, Dd), noise(Dd, C)
        sd[f"{b}att.time_faaaa"] = noise(H, N, scale=0.5)
        for name in ("receptance", "key", "value", "gate", "output"):
            sd[f"{b}att.{name}.weight"] = torch.randn(C, C) / C**0.5
        sd[f"{b}att.ln_x.weight"], sd[f"{b}att.ln_x.bias"] = 1 + noise(C), noise(C)
        sd[f"{b}ffn.time_maa_k"], sd[f"{b}ffn.time_maa_r"] = (
            torch.rand(1, 1, C),
            torch.rand(1, 1, C),
        )
        sd[f"{b}ffn.key.weight"] = torch.randn(F, C) / C**0.5
        sd[f"{b}ffn.receptance.weight"] = torch.randn(C, C) / C**0.5
        sd[f"{b}ffn.value.weight"] = torch.randn(C, F) / F**0.5
    sd["ln_out.weight"], sd["ln_out.bias"] = 1 + noise(C), noise(C)
    return sd


@pytest.fixture(scope="module")
def blinkdl(tmp_path_factory):
    """(package model, our cfg, our float64 params, emb, head) for one random x060 checkpoint."""
    os.environ["RWKV_JIT_ON"] = "0"  # read by rwkv.model at import
    os.environ["RWKV_CUDA_ON"] = "0"
    torch = pytest.importorskip("torch")
    rwkv_model = pytest.importorskip("rwkv.model")
    sd = _x060_state_dict(torch)
    path = tmp_path_factory.mktemp("x060") / "rwkv6-test.pth"
    torch.save(sd, str(path))
    model = rwkv_model.RWKV(model=str(path), strategy="cpu fp32", verbose=False)
    tensors = {k: v.double().numpy() for k, v in sd.items()}
    cfg = rwkv6.config_from_checkpoint(tensors, None)
    params = rwkv6.params_from_checkpoint(tensors, cfg)
    return model, cfg, params, tensors["emb.weight"], tensors["head.weight"]


# the package runs in float32; we run the same weights in float64
FP32 = {"rtol": 1e-4, "atol": 1e-4}


def test_reference_config_inferred(blinkdl):
    _, cfg, _, _, _ = blinkdl
    assert (cfg.n_embd, cfg.n_layer, cfg.head_size, cfg.num_heads) == (128, 2, 64, 2)
    assert (cfg.dim_ffn, cfg.time_mix_extra_dim, cfg.time_decay_extra_dim) == (448, 32, 64)


def test_reference_sequence_mode(blinkdl):
    model, cfg, params, emb, head = blinkdl
    ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7]
    logits, ref_state = model.forward(ids, None, full_output=True)
    y, state = rwkv6.forward(cfg, params, emb[ids][None])  # 30 steps: chunks of 32 and of 4
    np.testing.assert_allclose(y[0] @ head.T, logits.numpy(), **FP32)
    cfg4 = rwkv6.Config.from_dict({**cfg.to_dict(), "chunk_size": 4})
    y4, _ = rwkv6.forward(cfg4, params, emb[ids][None])
    np.testing.assert_allclose(y4, y, **tol(y.dtype))
    for i in range(cfg.n_layer):
        np.testing.assert_allclose(
            state[f"blocks.{i}.att.shift"][0], ref_state[3 * i].numpy(), **FP32
        )
        np.testing.assert_allclose(
            state[f"blocks.{i}.att.wkv"][0], ref_state[3 * i + 1].numpy(), **FP32
        )
        np.testing.assert_allclose(
            state[f"blocks.{i}.ffn.shift"][0], ref_state[3 * i + 2].numpy(), **FP32
        )


def test_reference_one_token_at_a_time(blinkdl):
    model, cfg, params, emb, head = blinkdl
    ids = [7, 0, 2, 2, 9, 1]
    ref_state = None
    state = rwkv6.init_state(cfg, 1, xp=get_namespace("numpy"), dtype=np.float64)
    for tok in ids:
        logits, ref_state = model.forward([tok], ref_state)
        y, state = rwkv6.step(cfg, params, emb[[tok]], state)
        np.testing.assert_allclose(y[0] @ head.T, logits.numpy(), **FP32)
    for i in range(cfg.n_layer):
        np.testing.assert_allclose(
            state[f"blocks.{i}.att.wkv"][0], ref_state[3 * i + 1].numpy(), **FP32
        )


def test_reference_batch(blinkdl):
    model, cfg, params, emb, head = blinkdl
    batch = [[1, 2, 3, 4, 5, 6, 7], [10, 9, 8, 7, 6, 5, 4], [0, 0, 1, 1, 0, 0, 1]]
    y, _ = rwkv6.forward(cfg, params, emb[np.asarray(batch)])  # (3, 7, C)
    for b, ids in enumerate(batch):
        logits, _ = model.forward(ids, None, full_output=True)
        np.testing.assert_allclose(y[b] @ head.T, logits.numpy(), **FP32)


@pytest.mark.parametrize("path", ["forward", "step"])
def test_gradients_match_finite_differences(np_xp, path):
    """The model trains through the autodiff namespace (the WKV as one operation, and the
    recurrent step)."""
    autodiff = pytest.importorskip("kizzasi_lite.autodiff")
    cfg = rwkv6.Config.from_dict({**SMALL.to_dict(), "n_layer": 1, "chunk_size": 3})
    params = perturbed_params(cfg, np_xp, "float64", seed=9)
    x = to_numpy(rand(np_xp, (2, 5, cfg.n_embd), seed=10, dtype="float64"))
    weights = np.random.default_rng(11).normal(size=x.shape)

    def loss(p):
        if path == "forward":
            y, _ = rwkv6.forward(cfg, p, x)
        else:
            y, _ = step_loop(cfg, p, x, rwkv6.init_state(cfg, 2, xp=np_xp, dtype=np.float64))
        return namespace(y).sum(y * weights)

    _, grads = autodiff.value_and_grad(loss, params)
    for key in ("blocks.0.att.time_decay", "blocks.0.att.time_faaaa", "blocks.0.att.time_maa_w1"):
        flat = params[key].reshape(-1)
        for idx in (0, flat.size - 1):
            bump = np.zeros_like(flat)
            bump[idx] = 1e-6
            up = float(loss({**params, key: (flat + bump).reshape(params[key].shape)}))
            down = float(loss({**params, key: (flat - bump).reshape(params[key].shape)}))
            np.testing.assert_allclose(
                to_numpy(grads[key]).reshape(-1)[idx], (up - down) / 2e-6, rtol=1e-5, atol=1e-7
            )
