"""RWKV-4: step == forward on every backend, carried state, and transformers' ``RwkvModel``."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import get_namespace, namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models import rwkv4
from tests.conftest import assert_close, rand
from tests.models import common
from tests.models.common import assert_state_numel, assert_states_close

# attention_hidden_size != hidden_size on purpose (transformers cannot run that: see below)
SMALL = rwkv4.Config(
    hidden_size=16,
    num_hidden_layers=2,
    attention_hidden_size=12,
    intermediate_size=24,
    chunk_size=4,
)


def perturbed_params(cfg, xp, dtype="float32", seed=0):
    """Reference init plus noise on every tensor, so no zero or one can hide a mistake."""
    return common.perturbed_params(rwkv4, cfg, xp, dtype, seed)


def step_loop(cfg, params, x, state):
    """``step`` over every time step of ``x`` (B, T, C) -> (B, T, C), final state."""
    return common.step_loop(rwkv4, cfg, params, x, state)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_loop_matches_forward(xp, dtype):
    params = perturbed_params(SMALL, xp, dtype)
    x = rand(xp, (2, 11, SMALL.hidden_size), seed=1, dtype=dtype)
    y, state = rwkv4.forward(SMALL, params, x)
    assert y.shape == (2, 11, SMALL.hidden_size)
    ys, states = step_loop(SMALL, params, x, rwkv4.init_state(SMALL, 2, xp=xp, dtype=x.dtype))
    assert_close(ys, y, xp=xp)
    assert_states_close(states, state, xp=xp)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_forward_carries_state(xp, dtype):
    params = perturbed_params(SMALL, xp, dtype, seed=2)
    x = rand(xp, (2, 13, SMALL.hidden_size), seed=3, dtype=dtype)  # 13 = 3 chunks of 4 + 1
    y, state = rwkv4.forward(SMALL, params, x)
    y1, s1 = rwkv4.forward(SMALL, params, x[:, :6, :])  # splits inside a chunk
    y2, s2 = rwkv4.forward(SMALL, params, x[:, 6:, :], s1)
    assert_close(xp.concat([y1, y2], axis=1), y, xp=xp)
    assert_states_close(s2, state, xp=xp)
    y_one, s_one = rwkv4.forward(SMALL, params, x[:, :1, :])
    zero = rwkv4.init_state(SMALL, 2, xp=xp, dtype=x.dtype)
    y_step, s_step = rwkv4.step(SMALL, params, x[:, 0, :], zero)
    assert_close(y_one[:, 0, :], y_step, xp=xp)
    assert_states_close(s_one, s_step, xp=xp)


def test_large_keys_and_decays_stay_finite(np_xp):
    """Keys of +-60 and decays from 1e-3 to 400 per step overflow a naive exp; not this form."""
    params = perturbed_params(SMALL, np_xp, "float32", seed=4)
    A = SMALL.attention_hidden_size
    for i in range(SMALL.num_hidden_layers):
        a = f"blocks.{i}.attention."
        params[f"{a}time_decay"] = np.linspace(-7.0, 6.0, A, dtype=np.float32)
        params[f"{a}key.weight"] = params[f"{a}key.weight"] * np.float32(60.0)
    x = rand(np_xp, (1, 23, SMALL.hidden_size), seed=5)
    y, state = rwkv4.forward(SMALL, params, x)
    ys, states = step_loop(SMALL, params, x, rwkv4.init_state(SMALL, 1, xp=np_xp))
    assert np.all(np.isfinite(y))
    assert_close(ys, y, rtol=1e-4, atol=1e-4)
    for key in state:  # the running max is O(60): compare it relatively
        assert_close(states[key], state[key], rtol=1e-4, atol=1e-4)


@settings(max_examples=8, deadline=None)
@given(t=st.integers(1, 12), split=st.integers(0, 12), chunk=st.integers(1, 5))
def test_split_property(t, split, chunk):
    xp = get_namespace("numpy")
    cfg = rwkv4.Config.from_dict({**SMALL.to_dict(), "chunk_size": chunk})
    params = perturbed_params(cfg, xp, "float64", seed=6)
    x = rand(xp, (1, t, cfg.hidden_size), seed=t, dtype="float64")
    split = min(split, t)
    y, state = rwkv4.forward(cfg, params, x)
    y1, s1 = rwkv4.forward(cfg, params, x[:, :split])
    y2, s2 = rwkv4.forward(cfg, params, x[:, split:], s1)
    assert_close(np.concatenate([y1, y2], axis=1), y)
    assert_states_close(s2, state)


def _wkv_inputs(xp, b, t, a, seed, key_scale=3.0):
    """WKV inputs: decays, bonus, keys, values and a carried state, one stream empty."""
    rng = np.random.default_rng(seed)
    inputs = {
        "w": np.exp(rng.normal(size=a)),
        "u": rng.normal(size=a),
        "k": key_scale * rng.normal(size=(b, t, a)),
        "v": rng.normal(size=(b, t, a)),
        "num": rng.normal(size=(b, a)),
        "den": rng.uniform(0.5, 2.0, size=(b, a)),
        "max": rng.normal(size=(b, a)),
    }
    inputs["num"][0], inputs["den"][0], inputs["max"][0] = 0.0, 0.0, rwkv4._EMPTY_MAX
    return {k: xp.asarray(v) for k, v in inputs.items()}


def _wkv_chunked(w, u, k, v, num, den, mx, chunk):
    return rwkv4.wkv_sequence(w, u, k, v, (num, den, mx), chunk)


@pytest.mark.parametrize("t,chunk,key_scale", [(1, 4, 3.0), (9, 4, 3.0), (12, 5, 40.0)])
def test_wkv_recurrent_equals_chunked(xp, t, chunk, key_scale):
    """The NumPy path of ``forward`` (the recurrence, step by step) equals the chunked WKV, also
    with keys large enough that unscaled sums would overflow."""
    inputs = _wkv_inputs(xp, 2, t, 5, seed=t, key_scale=key_scale)
    y_ref, s_ref = _wkv_chunked(*inputs.values(), chunk)
    y, s = rwkv4.wkv_recurrent(*inputs.values())
    assert_close(y, y_ref, xp=xp)
    for got, ref in zip(s, s_ref, strict=True):
        assert_close(got, ref, xp=xp)


@pytest.mark.parametrize("t", [1, 7])
def test_wkv_recurrent_gradients_equal_the_tape(xp, t):
    """Training's WKV operation: the gradients of all seven inputs, from ``y`` and from every
    part of the last state, equal the chunked WKV's tape gradients."""
    inputs = _wkv_inputs(xp, 2, t, 5, seed=10 + t)
    common.assert_recomputed_scan_is_chunked(
        rwkv4.wkv_recurrent, _wkv_chunked, inputs, (2, t, 5), xp, seed=t
    )


def test_state_numel_matches_init_state(xp):
    for cfg in (SMALL, rwkv4.Config(hidden_size=8, num_hidden_layers=3)):
        assert_state_numel(rwkv4, cfg, xp, 3)


def test_init_params_layout(xp):
    params = rwkv4.init_params(SMALL, Generator(0, xp), xp.float32)
    assert {k: tuple(v.shape) for k, v in params.items()} == rwkv4.param_shapes(SMALL)
    assert all(v.dtype == xp.float32 for v in params.values())
    w = to_numpy(params["blocks.0.feed_forward.key.weight"])  # (24, 16): orthonormal columns
    np.testing.assert_allclose(w.T @ w, 1.5 * np.eye(16), atol=1e-5)  # gain sqrt(24 / 16)


def test_config_round_trip_and_validation():
    cfg = rwkv4.Config(hidden_size=32, num_hidden_layers=2)
    assert cfg.attention_hidden_size == 32 and cfg.intermediate_size == 128
    hf = {"model_type": "rwkv", "vocab_size": 50277, "rescale_every": 6, **cfg.to_dict()}
    assert rwkv4.Config.from_dict(hf) == cfg
    with pytest.raises(ConfigError, match="hidden_size"):
        rwkv4.Config(hidden_size=-1)
    with pytest.raises(ConfigError, match="layer_norm_epsilon"):
        rwkv4.Config(layer_norm_epsilon=0.0)


def test_checkpoint_prefix_and_errors(np_xp):
    params = {k: to_numpy(v) for k, v in perturbed_params(SMALL, np_xp).items()}
    tensors = {f"rwkv.{k}": v for k, v in params.items()}  # RwkvForCausalLM's layout
    tensors["head.weight"] = np.zeros((5, 16), np.float32)
    cfg = rwkv4.config_from_checkpoint(tensors, None)
    assert cfg == rwkv4.Config.from_dict({**SMALL.to_dict(), "chunk_size": cfg.chunk_size})
    assert sorted(rwkv4.params_from_checkpoint(tensors, cfg)) == sorted(params)
    missing = {k: v for k, v in tensors.items() if k != "rwkv.blocks.1.attention.time_first"}
    with pytest.raises(WeightsError, match=r"blocks\.1\.attention\.time_first.*\(12,\)"):
        rwkv4.params_from_checkpoint(missing, cfg)
    wrong = {**tensors, "rwkv.ln_out.bias": np.zeros((17,), np.float32)}
    with pytest.raises(WeightsError, match=r"ln_out\.bias"):
        rwkv4.params_from_checkpoint(wrong, cfg)


# ------------------------------------------------------------------------- transformers RwkvModel
@pytest.fixture(scope="module")
def hf_rwkv(tmp_path_factory):
    """(RwkvModel in float64 with perturbed weights, our cfg, our params), via safetensors.

    transformers' state has shape (B, hidden_size, L) for every part, so it only runs with
    ``attention_hidden_size == hidden_size``; ``rescale_every=0`` keeps its weights unscaled.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors.numpy")
    torch.manual_seed(0)
    hc = transformers.RwkvConfig(
        vocab_size=11,
        hidden_size=32,
        num_hidden_layers=3,
        intermediate_size=48,
        rescale_every=0,
        context_length=64,
    )
    model = common.perturb_torch(torch, transformers.RwkvModel(hc))
    tensors, config_json = common.saved_pretrained(model, tmp_path_factory.mktemp("rwkv4"))
    cfg = rwkv4.config_from_checkpoint(tensors, config_json)
    cfg = rwkv4.Config.from_dict({**cfg.to_dict(), "chunk_size": 4})
    return torch, model, cfg, rwkv4.params_from_checkpoint(tensors, cfg)


@pytest.fixture
def float64_wkv(monkeypatch):
    """transformers' CPU WKV with its two float32 casts removed, so float64 stays float64.

    ``rwkv_linear_attention_cpu`` rounds every key to float32 (``key.float()``) and starts its
    state in float32; that caps agreement at ~1e-7. The patched copy is its own source with just
    those two casts dropped.
    """
    modeling = pytest.importorskip("transformers.models.rwkv.modeling_rwkv")
    src = inspect.getsource(modeling.rwkv_linear_attention_cpu)
    patched = src.replace("key[:, current_index].float()", "key[:, current_index]")
    patched = patched.replace("dtype=torch.float32", "dtype=key.dtype")
    assert patched.count("key.dtype") == 3 and ".float()" not in patched
    scope = dict(vars(modeling))
    exec(patched, scope)
    monkeypatch.setattr(modeling, "rwkv_linear_attention_cpu", scope["rwkv_linear_attention_cpu"])


def test_reference_forward_unpatched(hf_rwkv):
    """As shipped (keys rounded to float32 inside transformers): agreement to ~1e-7."""
    torch, model, cfg, params = hf_rwkv
    x = torch.randn(
        2, 9, cfg.hidden_size, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        ref = model(inputs_embeds=x, use_cache=False).last_hidden_state.numpy()
    y, _ = rwkv4.forward(cfg, params, x.numpy())
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


def test_reference_forward_float64(hf_rwkv, float64_wkv):
    torch, model, cfg, params = hf_rwkv
    x = torch.randn(
        3, 14, cfg.hidden_size, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        ref = model(inputs_embeds=x, use_cache=False).last_hidden_state.numpy()
    y, _ = rwkv4.forward(cfg, params, x.numpy())  # batch 3, T 14 = 3 chunks of 4 + 2
    np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9)
    ys, _ = step_loop(
        cfg, params, x.numpy(), rwkv4.init_state(cfg, 3, xp=get_namespace(), dtype=np.float64)
    )
    np.testing.assert_allclose(ys, ref, rtol=1e-9, atol=1e-9)


def test_reference_step_mode_batch_1(hf_rwkv, float64_wkv):
    """transformers' cached single-token path, batch 1 only, with a float64 state passed in."""
    torch, model, cfg, params = hf_rwkv
    C, L = cfg.hidden_size, cfg.num_hidden_layers
    x = torch.randn(1, 8, C, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref_state = [torch.zeros(1, C, L, dtype=torch.float64) for _ in range(5)]
    ref_state[4] -= 1e30
    state = rwkv4.init_state(cfg, 1, xp=get_namespace(), dtype=np.float64)
    with torch.no_grad():
        for t in range(x.shape[1]):
            out = model(inputs_embeds=x[:, t : t + 1], state=ref_state, use_cache=True)
            ref_state = out.state
            y, state = rwkv4.step(cfg, params, x[:, t].numpy(), state)
            np.testing.assert_allclose(y, out.last_hidden_state[:, 0].numpy(), rtol=1e-9, atol=1e-9)
    names = (
        "feed_forward.shift",
        "attention.shift",
        "attention.num",
        "attention.den",
        "attention.max",
    )
    for i in range(L):
        for part, name in enumerate(names):
            ours = state[f"blocks.{i}.{name}"]
            np.testing.assert_allclose(ours, ref_state[part][:, :, i].numpy(), rtol=1e-9, atol=1e-9)
    # and the sequence path ends in the same state
    _, seq_state = rwkv4.forward(cfg, params, x.numpy())
    for key in state:
        np.testing.assert_allclose(seq_state[key], state[key], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path", ["forward", "step"])
def test_gradients_match_finite_differences(np_xp, path):
    """The model trains through the autodiff namespace (chunked WKV and recurrent step)."""
    autodiff = pytest.importorskip("kizzasi_lite.autodiff")
    cfg = rwkv4.Config.from_dict({**SMALL.to_dict(), "num_hidden_layers": 1, "chunk_size": 3})
    params = perturbed_params(cfg, np_xp, "float64", seed=9)
    x = to_numpy(rand(np_xp, (2, 5, cfg.hidden_size), seed=10, dtype="float64"))
    weights = np.random.default_rng(11).normal(size=x.shape)

    def loss(p):
        if path == "forward":
            y, _ = rwkv4.forward(cfg, p, x)
        else:
            y, _ = step_loop(cfg, p, x, rwkv4.init_state(cfg, 2, xp=np_xp, dtype=np.float64))
        return namespace(y).sum(y * weights)

    _, grads = autodiff.value_and_grad(loss, params)
    for key in ("blocks.0.attention.time_decay", "blocks.0.attention.time_first"):
        flat = params[key].reshape(-1)
        for idx in (0, flat.size - 1):
            bump = np.zeros_like(flat)
            bump[idx] = 1e-6
            up = float(loss({**params, key: (flat + bump).reshape(params[key].shape)}))
            down = float(loss({**params, key: (flat - bump).reshape(params[key].shape)}))
            np.testing.assert_allclose(
                to_numpy(grads[key]).reshape(-1)[idx], (up - down) / 2e-6, rtol=1e-5, atol=1e-7
            )
