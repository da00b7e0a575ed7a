"""Transformer (Llama): step loop == forward with a sliding KV window; transformers' LlamaModel."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import get_namespace, namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models import transformer as tr
from tests.conftest import assert_close, rand
from tests.models import common
from tests.models.common import assert_states_close as _assert_states_close

# GQA (4 query heads on 2 kv heads), head_dim != hidden/heads, biases on, window 5, chunks of 3
SMALL = tr.Config(
    hidden_size=8,
    intermediate_size=12,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=6,
    rope_theta=50.0,
    attention_bias=True,
    mlp_bias=True,
    context_window=5,
    chunk_size=3,
)


def _params(cfg, xp, dtype, seed=0):
    """Random weights of order one (the default N(0, 0.02) would make attention nearly uniform)."""
    return common.perturbed_params(tr, cfg, xp, dtype, seed, std=0.4, noise_seed=seed + 100)


def _step_loop(cfg, params, x, state):
    return common.step_loop(tr, cfg, params, x, state)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_loop_equals_forward_beyond_the_window(xp, dtype):
    cfg, B, T = SMALL, 2, 13  # T > context_window: the window slides
    params = _params(cfg, xp, dtype)
    x = rand(xp, (B, T, cfg.hidden_size), seed=1, dtype=dtype)
    y, state = tr.forward(cfg, params, x)
    assert y.shape == (B, T, cfg.hidden_size)
    y_loop, state_loop = _step_loop(cfg, params, x, tr.init_state(cfg, B, xp=xp, dtype=x.dtype))
    assert_close(y, y_loop, xp=xp)
    _assert_states_close(state, state_loop)
    # and continuing from that state
    x2 = rand(xp, (B, 4, cfg.hidden_size), seed=2, dtype=dtype)
    y2, s2 = tr.forward(cfg, params, x2, state)
    y2_loop, s2_loop = _step_loop(cfg, params, x2, state)
    assert_close(y2, y2_loop, xp=xp)
    _assert_states_close(s2, s2_loop)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("split", [1, 3, 4, 7])
def test_split_forward_equals_one_call(xp, dtype, split):
    cfg = SMALL
    params = _params(cfg, xp, dtype, seed=3)
    x = rand(xp, (2, 11, cfg.hidden_size), seed=4, dtype=dtype)
    y, state = tr.forward(cfg, params, x)
    y1, s1 = tr.forward(cfg, params, x[:, :split, :])
    y2, s2 = tr.forward(cfg, params, x[:, split:, :], s1)
    assert_close(xp.concat([y1, y2], axis=1), y, xp=xp)
    _assert_states_close(s2, state)


def test_single_token_and_empty_sequence(xp):
    cfg = SMALL
    params = _params(cfg, xp, "float32", seed=5)
    x = rand(xp, (3, 1, cfg.hidden_size), seed=6)
    y, state = tr.forward(cfg, params, x)
    y_step, state_step = tr.step(cfg, params, x[:, 0, :], tr.init_state(cfg, 3, xp=xp))
    assert_close(y[:, 0, :], y_step, xp=xp)
    _assert_states_close(state, state_step)
    y0, s0 = tr.forward(cfg, params, x[:, :0, :], state)
    assert y0.shape == (3, 0, cfg.hidden_size)
    _assert_states_close(s0, state)


def test_streams_at_different_positions_share_a_batch(xp):
    """Rows of one batch may have seen different numbers of tokens (dynamic batching)."""
    cfg = SMALL
    params = _params(cfg, xp, "float64", seed=7)
    xa = rand(xp, (1, 2, cfg.hidden_size), seed=8, dtype="float64")
    xb = rand(xp, (1, 7, cfg.hidden_size), seed=9, dtype="float64")
    _, sa = tr.forward(cfg, params, xa)
    _, sb = tr.forward(cfg, params, xb)
    both = {k: xp.concat([sa[k], sb[k]], axis=0) for k in sa}
    x = rand(xp, (2, 6, cfg.hidden_size), seed=10, dtype="float64")
    y, s = tr.forward(cfg, params, x, both)
    ya, sa2 = tr.forward(cfg, params, x[0:1, ...], sa)
    yb, sb2 = _step_loop(cfg, params, x[1:2, ...], sb)
    assert_close(y, xp.concat([ya, yb], axis=0), xp=xp)
    _assert_states_close(s, {k: xp.concat([sa2[k], sb2[k]], axis=0) for k in s})
    assert [int(v) for v in to_numpy(s["pos"])] == [8, 13]


@settings(max_examples=12, deadline=None)
@given(
    T=st.integers(1, 17),
    split=st.integers(0, 17),
    chunk=st.integers(1, 8),
    window=st.integers(1, 9),
)
def test_any_window_chunk_and_split(T, split, chunk, window):
    xp = get_namespace("numpy")
    cfg = tr.Config(**{**SMALL.to_dict(), "context_window": window, "chunk_size": chunk})
    params = _params(cfg, xp, "float64", seed=11)
    x = rand(xp, (2, T, cfg.hidden_size), seed=12, dtype="float64")
    y_loop, s_loop = _step_loop(cfg, params, x, tr.init_state(cfg, 2, xp=xp, dtype=x.dtype))
    k = min(split, T)
    y1, s1 = tr.forward(cfg, params, x[:, :k, :])
    y2, s2 = tr.forward(cfg, params, x[:, k:, :], s1)
    assert_close(np.concatenate([y1, y2], axis=1), y_loop)
    _assert_states_close(s2, s_loop)


def test_state_numel_matches_init_state(xp):
    cfg = SMALL
    state = common.assert_state_numel(tr, cfg, xp, 1)
    assert tr.state_numel(cfg) == 2 * 2 * 2 * 5 * 6 + 1
    assert state["layers.0.k"].shape == (1, 2, 5, 6) and state["pos"].shape == (1,)


def test_float_position_counter_still_works(np_xp):
    """A state whose counter was cast to the model dtype (e.g. restored from a file) still works."""
    cfg = SMALL
    params = _params(cfg, np_xp, "float64", seed=13)
    x = rand(np_xp, (2, 9, cfg.hidden_size), seed=14, dtype="float64")
    _, state = tr.forward(cfg, params, x[:, :6, :])
    as_float = {**state, "pos": np_xp.astype(state["pos"], np_xp.float64)}
    assert_close(
        tr.forward(cfg, params, x[:, 6:, :], as_float)[0],
        tr.forward(cfg, params, x[:, 6:, :], state)[0],
    )


# ---------------------------------------------------------------------------------------------
# brute-force sliding-window attention in plain numpy


def _numpy_sliding_window(cfg, params, x):
    """Llama with each token attending to the last ``context_window`` tokens, query by query."""
    p = {k: np.asarray(v) for k, v in params.items()}
    B, T, _ = x.shape
    H, KV, hd, W = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
        cfg.context_window,
    )
    inv_freq = 1.0 / cfg.rope_theta ** (np.arange(0, hd, 2) / hd)

    def rms(v, w):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + cfg.rms_norm_eps) * w

    def lin(v, name):
        return v @ p[name + ".weight"].T + p.get(name + ".bias", 0.0)

    def rope(v, t):  # v (..., hd) at absolute position t
        ang = t * inv_freq
        c, s = np.cos(np.concatenate([ang, ang])), np.sin(np.concatenate([ang, ang]))
        return v * c + np.concatenate([-v[..., hd // 2 :], v[..., : hd // 2]], -1) * s

    h = x.copy()
    for i in range(cfg.num_hidden_layers):
        pre = f"layers.{i}."
        n = rms(h, p[pre + "input_layernorm.weight"])
        q = lin(n, pre + "self_attn.q_proj").reshape(B, T, H, hd)
        k = lin(n, pre + "self_attn.k_proj").reshape(B, T, KV, hd)
        v = lin(n, pre + "self_attn.v_proj").reshape(B, T, KV, hd)
        q = np.stack([rope(q[:, t], t) for t in range(T)], 1)
        k = np.stack([rope(k[:, t], t) for t in range(T)], 1)
        out = np.zeros((B, T, H, hd))
        for b in range(B):
            for t in range(T):
                lo = max(0, t - W + 1)
                for j in range(H):
                    kk, vv = k[b, lo : t + 1, j // (H // KV)], v[b, lo : t + 1, j // (H // KV)]
                    s = kk @ q[b, t, j] / math.sqrt(hd)
                    w = np.exp(s - s.max())
                    out[b, t, j] = (w / w.sum()) @ vv
        h = h + lin(out.reshape(B, T, H * hd), pre + "self_attn.o_proj")
        n = rms(h, p[pre + "post_attention_layernorm.weight"])
        g = lin(n, pre + "mlp.gate_proj")
        h = h + lin(g / (1 + np.exp(-g)) * lin(n, pre + "mlp.up_proj"), pre + "mlp.down_proj")
    return rms(h, p["norm.weight"])


def _assert_equals_brute_force(cfg, np_xp):
    """forward and the step loop over 14 tokens of 2 streams equal brute-force attention;
    returns the weights and the tokens."""
    params = _params(cfg, np_xp, "float64", seed=15)
    x = np.random.default_rng(16).normal(size=(2, 14, cfg.hidden_size))
    want = _numpy_sliding_window(cfg, params, x)
    y, _ = tr.forward(cfg, params, x)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)
    y_loop, _ = _step_loop(cfg, params, x, tr.init_state(cfg, 2, xp=np_xp, dtype=np_xp.float64))
    np.testing.assert_allclose(y_loop, want, rtol=1e-10, atol=1e-10)
    return params, x


def test_sliding_window_equals_brute_force(np_xp):
    _assert_equals_brute_force(SMALL, np_xp)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_attention_in_key_blocks_equals_brute_force(np_xp, monkeypatch, width):
    """NumPy inference attends in cache-sized blocks of keys, combined by their row maxima: with
    blocks of 1-3 keys (rows with no allowed key in a block included) forward and the step loop
    still equal brute-force sliding-window attention, and streams at different positions still
    share a batch."""
    monkeypatch.setattr(tr, "_SCORE_BLOCK_NUMBERS", 1)
    monkeypatch.setattr(tr, "_MIN_KEY_BLOCK", width)
    cfg = tr.Config(**{**SMALL.to_dict(), "context_window": 6, "chunk_size": 4})
    params, x = _assert_equals_brute_force(cfg, np_xp)
    _, sa = tr.forward(cfg, params, x[:1, :2])  # streams 2 and 9 tokens in, then 5 more each
    _, sb = tr.forward(cfg, params, x[1:, :9])
    both = {k: np.concatenate([sa[k], sb[k]], axis=0) for k in sa}
    y, _ = tr.forward(cfg, params, x[:, 9:], both)
    ya, _ = _step_loop(cfg, params, x[:1, 9:], sa)
    yb, _ = _step_loop(cfg, params, x[1:, 9:], sb)
    np.testing.assert_allclose(y, np.concatenate([ya, yb], axis=0), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# config and checkpoints


def test_config_defaults_validation_and_hf_names():
    cfg = tr.Config(hidden_size=32, num_attention_heads=4)
    assert (cfg.num_key_value_heads, cfg.head_dim, cfg.context_window) == (4, 8, 2048)
    assert tr.Config.from_dict({**SMALL.to_dict(), "vocab_size": 9}) == SMALL
    hf = {**SMALL.to_dict(), "rope_parameters": {"rope_type": "default", "rope_theta": 77.0}}
    del hf["rope_theta"]
    assert tr.Config.from_dict(hf).rope_theta == 77.0
    with pytest.raises(ConfigError, match="rope"):
        tr.Config.from_dict({**hf, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5.0}})
    for bad in (
        {"num_key_value_heads": 3},
        {"head_dim": 5},
        {"context_window": 0},
        {"hidden_act": "gelu"},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            tr.Config(**{**SMALL.to_dict(), **bad})


def test_checkpoint_keys_prefix_and_errors(np_xp):
    params = tr.init_params(SMALL, Generator(0, np_xp), "float64")
    tensors = {"model." + k: np.asarray(v) for k, v in params.items()}
    tensors["model.embed_tokens.weight"] = np.zeros((3, SMALL.hidden_size))
    tensors["lm_head.weight"] = np.zeros((3, SMALL.hidden_size))
    cfg = tr.config_from_checkpoint(tensors, json.loads(json.dumps(SMALL.to_dict())))
    assert cfg == SMALL
    got = tr.params_from_checkpoint(tensors, cfg)
    assert got.keys() == params.keys()
    with pytest.raises(ConfigError, match="num_attention_heads"):
        tr.config_from_checkpoint(tensors, None)
    with pytest.raises(WeightsError, match="hidden_size"):
        tr.config_from_checkpoint(tensors, {**SMALL.to_dict(), "hidden_size": 16})
    missing = {k: v for k, v in tensors.items() if not k.endswith("layers.1.mlp.up_proj.bias")}
    with pytest.raises(WeightsError, match=r"model.layers.1.mlp.up_proj.bias.*\(12,\)"):
        tr.params_from_checkpoint(missing, cfg)
    wrong = {**tensors, "model.layers.0.self_attn.k_proj.weight": np.zeros((6, 8))}
    with pytest.raises(WeightsError, match="k_proj"):
        tr.params_from_checkpoint(wrong, cfg)


# ---------------------------------------------------------------------------------------------
# transformers' LlamaModel


def _float64_llama(monkeypatch, modeling):
    """Make LlamaModel exact in float64: its RMSNorm and rotary embedding compute in float32
    whatever the model dtype (right for bf16 training, a 1e-7 floor for this comparison)."""
    torch = pytest.importorskip("torch")

    def rms_forward(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    def rope_forward(self, x, position_ids):
        cfg = self.config
        dim = cfg.head_dim
        base = cfg.rope_parameters["rope_theta"]
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    monkeypatch.setattr(modeling.LlamaRMSNorm, "forward", rms_forward)
    monkeypatch.setattr(modeling.LlamaRotaryEmbedding, "forward", rope_forward)


def _llama_reference(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors.numpy")
    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(
        vocab_size=11,
        hidden_size=8,
        intermediate_size=12,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=6,
        rope_theta=50.0,
        rms_norm_eps=1e-5,
        attention_bias=True,
        mlp_bias=True,
        max_position_embeddings=16,
    )
    model = common.perturb_torch(torch, transformers.LlamaModel(hf_cfg), scale=0.4)
    tensors, config_json = common.saved_pretrained(model, tmp_path)
    return torch, model, tensors, config_json


def _compare_with_llama(np_xp, torch, model, tensors, config_json, rtol, atol):
    cfg = tr.config_from_checkpoint(tensors, {**config_json, "context_window": 12, "chunk_size": 5})
    assert (cfg.rope_theta, cfg.rms_norm_eps, cfg.head_dim, cfg.num_key_value_heads) == (
        50.0,
        1e-5,
        6,
        2,
    )
    params = tr.params_from_checkpoint(tensors, cfg)
    assert set(params) == {k for k in tensors if k != "embed_tokens.weight"}
    x = np.random.default_rng(1).normal(size=(3, 12, 8))  # T = W
    with torch.no_grad():
        want = model(inputs_embeds=torch.from_numpy(x)).last_hidden_state.numpy()
    y, _ = tr.forward(cfg, params, x)
    np.testing.assert_allclose(y, want, rtol=rtol, atol=atol)
    y_loop, _ = _step_loop(cfg, params, x, tr.init_state(cfg, 3, xp=np_xp, dtype=np_xp.float64))
    np.testing.assert_allclose(y_loop, want, rtol=rtol, atol=atol)
    y1, s1 = tr.forward(cfg, params, x[:, :5, :])
    y2, _ = tr.forward(cfg, params, x[:, 5:, :], s1)
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=1), want, rtol=rtol, atol=atol)


def test_matches_llama_model_in_float64(np_xp, tmp_path, monkeypatch):
    torch, model, tensors, config_json = _llama_reference(tmp_path)
    from transformers.models.llama import modeling_llama

    _float64_llama(monkeypatch, modeling_llama)
    _compare_with_llama(np_xp, torch, model, tensors, config_json, rtol=1e-8, atol=1e-8)


def test_matches_unpatched_llama_model_to_float32_precision(np_xp, tmp_path):
    torch, model, tensors, config_json = _llama_reference(tmp_path)
    _compare_with_llama(np_xp, torch, model, tensors, config_json, rtol=1e-5, atol=1e-5)


def test_gradients_match_finite_differences(np_xp):
    """The forward pass runs through the autodiff namespace, window and cache included."""
    from kizzasi_lite.autodiff import value_and_grad

    cfg = tr.Config(**{**SMALL.to_dict(), "context_window": 3, "chunk_size": 2})
    params = _params(cfg, np_xp, "float64", seed=17)
    x = np.random.default_rng(18).normal(size=(2, 7, cfg.hidden_size))

    def loss(p):
        y, _ = tr.forward(cfg, p, x)
        return namespace(y).mean(y * y)

    _, grads = value_and_grad(loss, params)
    rng = np.random.default_rng(19)
    d = {k: rng.normal(size=v.shape) for k, v in params.items()}
    h = 1e-5
    f_plus = float(loss({k: v + h * d[k] for k, v in params.items()}))
    f_minus = float(loss({k: v - h * d[k] for k, v in params.items()}))
    analytic = sum(float(np.sum(grads[k] * d[k])) for k in params)
    np.testing.assert_allclose(analytic, (f_plus - f_minus) / (2 * h), rtol=1e-6)
