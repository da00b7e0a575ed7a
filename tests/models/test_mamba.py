import contextlib
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import get_namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models import Backbone
from kizzasi_lite.models import mamba as arch
from tests.conftest import assert_close, rand
from tests.models.common import (
    assert_blocked_scan_is_chunked,
    assert_prepared_step_is_plain,
    assert_recomputed_scan_is_chunked,
    assert_state_numel,
    assert_stream_blocks_are_plain,
    perturb_torch,
    perturbed_params,
    random_state,
    saved_pretrained,
    step_loop,
)

SMALL = arch.Config(
    hidden_size=8, state_size=4, num_hidden_layers=2, conv_kernel=3, use_bias=True, chunk_size=4
)


def _params(xp, cfg=SMALL, dtype="float64", seed=0):
    """Initialised weights plus noise, so that no 0/1 of the default init hides a mistake."""
    return perturbed_params(arch, cfg, xp, dtype, seed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_loop_matches_forward(xp, dtype):
    params = _params(xp, dtype=dtype)
    x = rand(xp, (2, 11, SMALL.hidden_size), seed=1, dtype=dtype)
    s0 = random_state(arch, xp, SMALL, 2, dtype)
    y, s = arch.forward(SMALL, params, x, s0)
    y_ref, s_ref = step_loop(arch, SMALL, params, x, s0)
    assert y.shape == (2, 11, SMALL.hidden_size)
    assert_close(y, y_ref, xp=xp)
    for k in s_ref:
        assert_close(s[k], s_ref[k], xp=xp)


@pytest.mark.parametrize("split", [1, 4, 7, 10])
def test_forward_split_with_carried_state(xp, split):
    params = _params(xp)
    x = rand(xp, (2, 11, SMALL.hidden_size), seed=2, dtype="float64")
    y, s = arch.forward(SMALL, params, x)
    y1, s1 = arch.forward(SMALL, params, x[:, :split, :])
    y2, s2 = arch.forward(SMALL, params, x[:, split:, :], s1)
    assert_close(xp.concat([y1, y2], axis=1), y, xp=xp)
    for k in s:
        assert_close(s2[k], s[k], xp=xp)


def test_forward_of_one_step_equals_step(xp):
    params = _params(xp, dtype="float32")
    x = rand(xp, (3, 1, SMALL.hidden_size), seed=3)
    s0 = random_state(arch, xp, SMALL, 3, "float32")
    y, s = arch.forward(SMALL, params, x, s0)
    y1, s1 = arch.step(SMALL, params, x[:, 0, :], s0)
    assert_close(y[:, 0, :], y1, xp=xp)
    for k in s:
        assert_close(s[k], s1[k], xp=xp)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_prepared_step_equals_plain_step(xp, dtype):
    params = _params(xp, dtype=dtype)
    assert_prepared_step_is_plain(arch, SMALL, xp, params, dtype, "layers.1.mixer.A_log", -0.5)


@settings(max_examples=15, deadline=None)
@given(t=st.integers(1, 13), split=st.integers(0, 13), chunk=st.integers(1, 6))
def test_any_length_split_and_chunk(t, split, chunk):
    xp = get_namespace("numpy")
    cfg = arch.Config(**{**SMALL.to_dict(), "chunk_size": chunk, "use_bias": False})
    params = _params(xp, cfg)
    x = rand(xp, (1, t, cfg.hidden_size), seed=t, dtype="float64")
    split = min(split, t - 1) if t > 1 else 1
    y, s = arch.forward(cfg, params, x)
    y_ref, s_ref = step_loop(arch, cfg, params, x, arch.init_state(cfg, 1, xp=xp, dtype=xp.float64))
    assert_close(y, y_ref)
    if 0 < split < t:
        y1, s1 = arch.forward(cfg, params, x[:, :split, :])
        y2, _ = arch.forward(cfg, params, x[:, split:, :], s1)
        assert_close(xp.concat([y1, y2], axis=1), y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("t,block", [(1, 4), (7, 1), (9, 4), (12, 4), (5, 8)])
def test_blocked_scan_equals_chunked_scan(xp, dtype, t, block):
    """The inference path of ``forward`` (blocked recurrence) equals the chunked scan."""
    rng = np.random.default_rng(t * 10 + block)
    arrs = {
        "xs": rng.normal(size=(2, t, 6)),
        "dt": rng.uniform(0.01, 2.0, size=(2, t, 6)),
        "a": -rng.uniform(0.1, 3.0, size=(6, 5)),
        "bm": rng.normal(size=(2, t, 5)),
        "cm": rng.normal(size=(2, t, 5)),
        "h0": rng.normal(size=(2, 6, 5)),
    }
    args = [xp.asarray(v.astype(dtype)) for v in arrs.values()]
    assert_blocked_scan_is_chunked(arch._ssm_blocked, arch._ssm_chunked, args, block, dtype, xp)


def test_state_numel_matches_init_state(xp):
    for cfg in (SMALL, arch.Config(hidden_size=16, state_size=3, num_hidden_layers=3, expand=3)):
        assert_state_numel(arch, cfg, xp, 2)


def test_init_params_follow_reference_init():
    xp = get_namespace("numpy")
    cfg = arch.Config(hidden_size=32, state_size=5, num_hidden_layers=1)
    p = arch.init_params(cfg, Generator(0, xp), "float32")
    assert set(p) == set(arch.param_shapes(cfg))
    assert all(tuple(p[k].shape) == s for k, s in arch.param_shapes(cfg).items())
    assert all(p[k].dtype == xp.float32 for k in p)
    np.testing.assert_allclose(np.exp(p["layers.0.mixer.A_log"][3]), np.arange(1, 6), rtol=1e-6)
    dt = np.log1p(np.exp(p["layers.0.mixer.dt_proj.bias"].astype(np.float64)))
    assert dt.min() >= cfg.time_step_floor * 0.999 and dt.max() <= cfg.time_step_max * 1.001
    assert cfg.time_step_rank == 2 and cfg.intermediate_size == 64
    bound = 1 / math.sqrt(cfg.intermediate_size)
    assert np.abs(p["layers.0.mixer.out_proj.weight"]).max() <= bound


def test_backbone_and_dtypes():
    xp = get_namespace("numpy")
    bb = Backbone("mamba", SMALL, arch.init_params(SMALL, Generator(1, xp), "float32"))
    y, s = bb.forward(rand(xp, (2, 5, 8)))
    assert y.dtype == xp.float32 and all(v.dtype == xp.float32 for v in s.values())
    y1, _ = bb.step(rand(xp, (2, 8)), bb.init_state(2))
    assert y1.shape == (2, 8)
    assert bb.state_numel() == arch.state_numel(SMALL)


def test_config_dict_roundtrip_and_validation():
    d = {**SMALL.to_dict(), "model_type": "mamba", "vocab_size": 7}
    assert arch.Config.from_dict(d) == SMALL
    assert json.loads(json.dumps(SMALL.to_dict())) == SMALL.to_dict()
    for field, bad in [
        ("state_size", 0),
        ("hidden_act", "gelu"),
        ("layer_norm_epsilon", 0.0),
        ("time_step_rank", -1),
        ("chunk_size", 0),
    ]:
        with pytest.raises(ConfigError, match=field):
            arch.Config(**{**SMALL.to_dict(), field: bad})


def test_params_from_checkpoint_names_first_problem():
    xp = get_namespace("numpy")
    params = arch.init_params(SMALL, Generator(0, xp), "float32")
    ckpt = {"backbone." + k: v for k, v in params.items()}
    ckpt["backbone.embeddings.weight"] = np.zeros((5, 8), np.float32)
    ckpt["lm_head.weight"] = np.zeros((5, 8), np.float32)
    assert arch.config_from_checkpoint(ckpt, None) == arch.Config(
        **{**SMALL.to_dict(), "chunk_size": 64}
    )
    mamba_ssm_json = {"d_model": 8, "n_layer": 2, "ssm_cfg": {}, "rms_norm": True}
    assert arch.config_from_checkpoint(ckpt, mamba_ssm_json) == arch.config_from_checkpoint(ckpt)
    got = arch.params_from_checkpoint(ckpt, SMALL)
    assert set(got) == set(params)
    bad = dict(ckpt)
    del bad["backbone.layers.1.mixer.D"]
    with pytest.raises(WeightsError, match=r"layers\.1\.mixer\.D.*\(16,\)"):
        arch.params_from_checkpoint(bad, SMALL)
    bad = {**ckpt, "backbone.layers.0.mixer.A_log": np.zeros((16, 3), np.float32)}
    with pytest.raises(WeightsError, match=r"layers\.0\.mixer\.A_log.*\(16, 4\)"):
        arch.params_from_checkpoint(bad, SMALL)
    with pytest.raises(WeightsError, match="state_size"):
        arch.config_from_checkpoint(ckpt, {"state_size": 9})


# ---------------------------------------------------------------------------------------------
# the reference: transformers' MambaModel


@contextlib.contextmanager
def _float64_reference(torch, modeling):
    """Keep the reference in float64: it upcasts to float32 (``.float()``, RMSNorm) for fp16
    training, which would cap the agreement of a float64 model near 1e-7."""
    orig_float = torch.Tensor.float

    def keep64(self, *args, **kwargs):
        return self if self.dtype == torch.float64 else orig_float(self, *args, **kwargs)

    def norm64(self, h):
        var = h.pow(2).mean(-1, keepdim=True)
        return self.weight * (h * torch.rsqrt(var + self.variance_epsilon))

    orig_norm = modeling.MambaRMSNorm.forward
    torch.Tensor.float, modeling.MambaRMSNorm.forward = keep64, norm64
    try:
        yield
    finally:
        torch.Tensor.float, modeling.MambaRMSNorm.forward = orig_float, orig_norm


def _reference_checkpoint(tmp_path, **overrides):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors.numpy")
    torch.manual_seed(0)
    kwargs = dict(
        hidden_size=8,
        state_size=4,
        num_hidden_layers=2,
        vocab_size=11,
        conv_kernel=4,
        residual_in_fp32=False,
        layer_norm_epsilon=1e-5,
    )
    hf_cfg = transformers.MambaConfig(**{**kwargs, **overrides})
    model = perturb_torch(torch, transformers.MambaForCausalLM(hf_cfg))
    tensors, config_json = saved_pretrained(model, tmp_path)
    return torch, model, tensors, config_json


@pytest.mark.parametrize(
    "overrides",
    [{}, {"use_bias": True, "use_conv_bias": False, "time_step_rank": 3, "expand": 3}],
)
def test_matches_transformers_mamba(tmp_path, overrides):
    torch, model, tensors, config_json = _reference_checkpoint(tmp_path, **overrides)
    from transformers.models.mamba import modeling_mamba

    xp = get_namespace("numpy")
    assert any(k.startswith("backbone.") for k in tensors)
    cfg = arch.config_from_checkpoint(tensors, config_json)
    cfg = arch.Config(**{**cfg.to_dict(), "chunk_size": 4})
    params = arch.params_from_checkpoint(tensors, cfg)
    assert all(v.dtype == np.float64 for v in params.values())
    x = np.random.default_rng(7).normal(size=(3, 10, cfg.hidden_size))
    with torch.no_grad(), _float64_reference(torch, modeling_mamba):
        out = model.backbone(inputs_embeds=torch.from_numpy(x), use_cache=True)
    ref = out.last_hidden_state.numpy()

    y, s = arch.forward(cfg, params, xp.asarray(x))
    y_step, s_step = step_loop(
        arch, cfg, params, xp.asarray(x), arch.init_state(cfg, 3, xp=xp, dtype=xp.float64)
    )
    np.testing.assert_allclose(to_numpy(y), ref, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(to_numpy(y_step), ref, rtol=1e-8, atol=1e-8)
    y1, _ = arch.forward(cfg, params, xp.asarray(x[:1]))  # batch of one too
    np.testing.assert_allclose(to_numpy(y1), ref[:1], rtol=1e-8, atol=1e-8)
    for i in range(cfg.num_hidden_layers):
        conv_ref = out.cache_params.get_conv_state(i).numpy()  # (B, Di, K): last K inputs
        ssm_ref = out.cache_params.get_recurrent_state(i).numpy()  # (B, Di, N)
        np.testing.assert_allclose(s[f"layers.{i}.ssm"], ssm_ref, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(
            s[f"layers.{i}.conv"], np.swapaxes(conv_ref[:, :, 1:], 1, 2), rtol=1e-8, atol=1e-8
        )
        np.testing.assert_allclose(s_step[f"layers.{i}.ssm"], ssm_ref, rtol=1e-8, atol=1e-8)

    # unpatched, the reference's float32 upcasts agree to float32 precision
    with torch.no_grad():
        ref32 = model.backbone(inputs_embeds=torch.from_numpy(x)).last_hidden_state.numpy()
    np.testing.assert_allclose(to_numpy(y), ref32, rtol=1e-4, atol=1e-5)


def test_checkpoint_without_prefix(tmp_path):
    _, model, tensors, config_json = _reference_checkpoint(tmp_path)
    bare = {k.removeprefix("backbone."): v for k, v in tensors.items() if k != "lm_head.weight"}
    cfg = arch.config_from_checkpoint(bare, config_json)
    assert cfg == arch.config_from_checkpoint(tensors, config_json)
    params = arch.params_from_checkpoint(bare, cfg)
    assert set(params) == set(arch.param_shapes(cfg))


@pytest.mark.parametrize("t,block_steps", [(1, 1), (9, 4), (12, 5), (6, 8)])
def test_recomputed_scan_gradients_equal_the_chunked_scan(xp, t, block_steps, monkeypatch):
    """Training on NumPy runs the selective scan as one operation with a recomputing backward
    (blocks of ``block_steps`` steps here); its value and the gradients of all six inputs, from
    ``y`` and from the last state, equal those of the chunked scan through the tape."""
    from kizzasi_lite.backends import backend_name

    if backend_name(xp) not in ("numpy", "array_api_strict"):
        pytest.skip("device backends train through the chunked scan")
    rng = np.random.default_rng(t + block_steps)
    b, di, n = 2, 6, 5
    monkeypatch.setattr(arch, "_GRAD_BLOCK_NUMBERS", block_steps * b * di * n)
    shapes = {"xs": (b, t, di), "dt": (b, t, di), "a": (di, n), "bm": (b, t, n), "cm": (b, t, n)}
    inputs = {k: xp.asarray(rng.normal(size=s)) for k, s in shapes.items()}
    inputs["dt"] = xp.asarray(rng.uniform(0.05, 1.0, size=shapes["dt"]))
    inputs["a"] = xp.asarray(-rng.uniform(0.1, 2.0, size=shapes["a"]))
    inputs["h0"] = xp.asarray(rng.normal(size=(b, di, n)))  # the scans' argument order
    assert_recomputed_scan_is_chunked(
        arch._ssm_recomputed, arch._ssm_chunked, inputs, (b, t, di), xp, seed=t
    )


def test_many_streams_update_in_blocks_as_the_plain_step(xp, monkeypatch):
    per_stream = SMALL.intermediate_size * SMALL.state_size
    assert_stream_blocks_are_plain(arch, SMALL, xp, _params(xp), per_stream, monkeypatch)
