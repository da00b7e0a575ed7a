import contextlib
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import backend_name, get_namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import ConfigError, InputError, WeightsError
from kizzasi_lite.models import Backbone
from kizzasi_lite.models import mamba2 as arch
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
    hidden_size=8,
    state_size=4,
    num_heads=4,
    head_dim=4,
    n_groups=2,
    num_hidden_layers=2,
    conv_kernel=3,
    chunk_size=4,
    use_bias=True,
)
# mamba_ssm's variants: a gated-MLP side branch (d_ssm < d_inner), norm before gate, dt limits
VARIANT = arch.Config(
    hidden_size=8,
    state_size=3,
    num_heads=2,
    head_dim=4,
    n_groups=1,
    num_hidden_layers=2,
    chunk_size=3,
    norm_before_gate=True,
    time_step_limit=(0.02, 0.3),
)


def _params(xp, cfg=SMALL, dtype="float64", seed=0):
    """Initialised weights plus noise, so that no 0/1 of the default init hides a mistake."""
    return perturbed_params(arch, cfg, xp, dtype, seed)


@pytest.mark.parametrize("cfg", [SMALL, VARIANT], ids=["hf", "mamba_ssm_variant"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_loop_matches_forward(xp, dtype, cfg):
    params = _params(xp, cfg, dtype=dtype)
    x = rand(xp, (2, 11, cfg.hidden_size), seed=1, dtype=dtype)
    s0 = random_state(arch, xp, cfg, 2, dtype)
    y, s = arch.forward(cfg, params, x, s0)
    y_ref, s_ref = step_loop(arch, cfg, params, x, s0)
    assert y.shape == (2, 11, cfg.hidden_size)
    assert_close(y, y_ref, xp=xp)
    for k in s_ref:
        assert_close(s[k], s_ref[k], xp=xp)


@pytest.mark.parametrize("split", [1, 4, 6, 10])
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


@pytest.mark.parametrize("cfg", [SMALL, VARIANT], ids=["hf", "mamba_ssm_variant"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_prepared_step_equals_plain_step(xp, dtype, cfg):
    params = _params(xp, cfg, dtype=dtype)
    assert_prepared_step_is_plain(arch, cfg, xp, params, dtype, "layers.1.mixer.D", 1.0)


def _ssd_sequential(x, dt, a, bm, cm, h0):
    """The definition in NumPy: h_t = exp(dt a) h + dt x B^T, y_t = h C (head h -> group h//R)."""
    r = x.shape[2] // bm.shape[2]
    bh, ch = np.repeat(bm, r, axis=2), np.repeat(cm, r, axis=2)  # (B, T, H, N)
    h, ys = h0, []
    for t in range(x.shape[1]):
        da = np.exp(dt[:, t] * a)[:, :, None, None]
        h = da * h + (dt[:, t, :, None] * x[:, t])[..., None] * bh[:, t, :, None, :]
        ys.append(np.einsum("bhpn,bhn->bhp", h, ch[:, t]))
    return np.stack(ys, axis=1), h


@pytest.mark.parametrize("t,chunk", [(1, 4), (7, 1), (9, 3), (12, 4), (5, 8)])
def test_ssd_chunked_matches_the_recurrence(xp, t, chunk):
    rng = np.random.default_rng(t * 10 + chunk)
    shapes = {"x": (2, t, 4, 3), "bm": (2, t, 2, 5), "cm": (2, t, 2, 5), "h0": (2, 4, 3, 5)}
    arrs = {k: rng.normal(size=s) for k, s in shapes.items()}
    dt = rng.uniform(0.01, 2.0, size=(2, t, 4))
    a = -rng.uniform(0.1, 3.0, size=(4,))
    y_ref, h_ref = _ssd_sequential(arrs["x"], dt, a, arrs["bm"], arrs["cm"], arrs["h0"])
    args = [xp.asarray(v) for v in (arrs["x"], dt, a, arrs["bm"], arrs["cm"], arrs["h0"])]
    y, h = arch.ssd_chunked(*args, chunk)
    assert_close(y, xp.asarray(y_ref), xp=xp)
    assert_close(h, xp.asarray(h_ref), xp=xp)
    skip = rng.normal(size=(4,))  # D, joined to the scores' diagonal: y + D x
    y, h = arch.ssd_chunked(*args, chunk, xp.asarray(skip))
    assert_close(y, xp.asarray(y_ref + skip[:, None] * arrs["x"]), xp=xp)
    assert_close(h, xp.asarray(h_ref), xp=xp)


@pytest.mark.parametrize("chunk", [16, 40])  # segment sums by matmul / by a cumulative sum
def test_ssd_chunked_is_precise_after_large_decays(xp, chunk):
    """20 steps of dt a near -100, then steps of -1e-3: every segment sum adds only its own
    terms, so float32 keeps the float64 recurrence's result to 2e-5. A difference of running
    sums (near -2000 here) would round each small decay to ~1e-4 and fail."""
    rng = np.random.default_rng(chunk)
    t, h, g = 45, 4, 2
    shapes = {"x": (2, t, h, 3), "bm": (2, t, g, 5), "cm": (2, t, g, 5), "h0": (2, h, 3, 5)}
    arrs = {k: rng.normal(size=s) for k, s in shapes.items()}
    dt = np.where(np.arange(t)[None, :, None] < 20, 50.0, 1e-3) * rng.uniform(1.0, 1.1, (2, t, h))
    a = -rng.uniform(1.5, 2.0, size=(h,))
    y_ref, h_ref = _ssd_sequential(arrs["x"], dt, a, arrs["bm"], arrs["cm"], arrs["h0"])
    args = [arrs["x"], dt, a, arrs["bm"], arrs["cm"], arrs["h0"]]
    y, h_last = arch.ssd_chunked(*(xp.asarray(v.astype(np.float32)) for v in args), chunk)
    np.testing.assert_allclose(to_numpy(y), y_ref, rtol=2e-5, atol=1e-6 * np.abs(y_ref).max())
    np.testing.assert_allclose(to_numpy(h_last), h_ref, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "t,chunk,groups,strong",
    [
        (1, 8, 1, ()),
        (37, 8, 2, ()),
        (50, 16, 1, (1,)),
        (45, 32, 2, (0, 3)),
        (40, 8, 4, (0, 1, 2, 3)),
    ],
)
def test_ssd_factored_matches_the_recurrence(xp, dtype, t, chunk, groups, strong):
    """The factored SSD (NumPy inference) equals the recurrence, D x included, with any length
    and groups, and with heads whose decays are strong (``strong``: dt a near -100 every 5th
    step, spans far beyond _FACTORED_SPAN: their states carried by decays, their outputs from
    inside each chunk by their own Q x Q decays), some or all of them.
    Off NumPy it refuses with InputError; it leaves the state passed in untouched."""
    rng = np.random.default_rng(t + chunk)
    h = 4
    shapes = {"x": (2, t, h, 3), "bm": (2, t, groups, 5), "cm": (2, t, groups, 5)}
    arrs = {k: rng.normal(size=s) for k, s in shapes.items()}
    h0 = rng.normal(size=(2, h, 3, 5))
    dt = rng.uniform(0.01, 1.0, size=(2, t, h))
    dt[:, ::5, list(strong)] = 50.0
    a, skip = -rng.uniform(0.5, 2.0, size=(h,)), rng.normal(size=(h,))
    y_ref, h_ref = _ssd_sequential(arrs["x"], dt, a, arrs["bm"], arrs["cm"], h0)
    args = [arrs["x"], dt, a, arrs["bm"], arrs["cm"], h0]
    args = [xp.asarray(v.astype(dtype)) for v in args]
    d = xp.asarray(skip.astype(dtype))
    if backend_name(xp) not in ("numpy", "array_api_strict"):
        with pytest.raises(InputError, match="NumPy views in place"):
            arch.ssd_factored(*args, chunk, d)
        return
    y, h_last = arch.ssd_factored(*args, chunk, d)
    np.testing.assert_array_equal(to_numpy(args[-1]), h0.astype(dtype))
    t32 = {"rtol": 2e-5, "atol": 2e-5} if dtype == "float32" else {}
    assert_close(y, xp.asarray((y_ref + skip[:, None] * arrs["x"]).astype(dtype)), xp=xp, **t32)
    assert_close(h_last, xp.asarray(h_ref.astype(dtype)), xp=xp, **t32)
    y, h_last = arch.ssd_factored(*args, chunk)  # no skip
    assert_close(y, xp.asarray(y_ref.astype(dtype)), xp=xp, **t32)


def test_ssd_factored_is_quiet_when_a_head_decays_beyond_float64():
    """A head whose decay over one chunk is beyond float64's range (dt a = -1000 a step:
    exp(m - c) underflows to 0 where the other heads' factors are divided out) still gives the
    recurrence's outputs and state, with no floating-point warning."""
    rng = np.random.default_rng(7)
    t, h = 70, 3
    x, bm, cm = (
        rng.normal(size=(1, t, h, 4)),
        rng.normal(size=(1, t, 1, 5)),
        rng.normal(size=(1, t, 1, 5)),
    )
    h0 = rng.normal(size=(1, h, 4, 5))
    dt = rng.uniform(0.01, 0.5, size=(1, t, h))
    dt[..., 1] = 1000.0
    a = -np.ones(h)
    y_ref, h_ref = _ssd_sequential(x, dt, a, bm, cm, h0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, h_last = arch.ssd_factored(x, dt, a, bm, cm, h0, 32)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_last, h_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("total", [119.0, 121.0])  # span 59.5: factored; 60.5: strong
def test_ssd_factored_is_precise_at_its_largest_span(total):
    """A chunk whose decays add up to ``total`` spans ``total / 2`` around its middle: its
    factors reach exp(+-59.5), the largest _FACTORED_SPAN (60) allows, and float32 keeps the
    float64 recurrence's result to 2e-5 (the factors are computed in float64, rounded once)."""
    xp = get_namespace("numpy")
    rng = np.random.default_rng(int(total))
    t, h, q = 64, 3, 32
    x, bm, cm = (
        rng.normal(size=(1, t, h, 4)),
        rng.normal(size=(1, t, 1, 5)),
        rng.normal(size=(1, t, 1, 5)),
    )
    h0 = rng.normal(size=(1, h, 4, 5))
    a = -np.ones(h)
    dt = np.full((1, t, h), total / q) * np.array([1.0, 0.5, 0.01])  # head 0 at the limit
    assert (np.abs(np.cumsum(dt[0, :q, 0]) - total / 2).max() > arch._FACTORED_SPAN) == (
        total > 120
    )
    y_ref, h_ref = _ssd_sequential(x, dt, a, bm, cm, h0)
    y, h_last = arch.ssd_factored(
        *(xp.asarray(v.astype(np.float32)) for v in (x, dt, a, bm, cm, h0)), q
    )
    np.testing.assert_allclose(to_numpy(y), y_ref, rtol=2e-5, atol=1e-6 * np.abs(y_ref).max())
    np.testing.assert_allclose(to_numpy(h_last), h_ref, rtol=2e-5, atol=1e-6 * np.abs(h_ref).max())


def test_segment_sums_by_matmul_equal_the_cumulative_sum(xp, monkeypatch):
    rng = np.random.default_rng(3)
    a = xp.asarray(-rng.uniform(0.0, 50.0, size=(3, 2, 9)))
    by_matmul = arch._segment_sums(a)
    monkeypatch.setattr(arch, "_MATMUL_SEGSUM_CHUNK", 0)  # every chunk by the cumulative sum
    by_cumsum = arch._segment_sums(a)
    assert_close(by_matmul, by_cumsum, xp=xp)
    ref = np.zeros((9, 9))
    a0 = to_numpy(a)[1, 0]
    for lo in range(9):
        for hi in range(lo, 9):
            ref[hi, lo] = a0[lo + 1 : hi + 1].sum()
    assert_close(by_matmul[1, 0, ...], xp.asarray(ref), xp=xp)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("t,block,groups", [(1, 4, 2), (7, 1, 1), (9, 4, 2), (12, 4, 4), (5, 8, 1)])
def test_ssd_blocked_equals_ssd_chunked(xp, dtype, t, block, groups):
    """The blocked recurrence (the forward of training on NumPy) equals the chunked SSD."""
    rng = np.random.default_rng(t * 10 + block)
    shapes = {"x": (2, t, 4, 3), "bm": (2, t, groups, 5), "cm": (2, t, groups, 5)}
    arrs = {k: rng.normal(size=s) for k, s in shapes.items()}
    arrs["h0"] = rng.normal(size=(2, 4, 3, 5))
    arrs["dt"] = rng.uniform(0.01, 2.0, size=(2, t, 4))
    a = -rng.uniform(0.1, 3.0, size=(4,))
    args = [xp.asarray(arrs[k].astype(dtype)) for k in ("x", "dt")] + [xp.asarray(a.astype(dtype))]
    args += [xp.asarray(arrs[k].astype(dtype)) for k in ("bm", "cm", "h0")]
    assert_blocked_scan_is_chunked(arch.ssd_blocked, arch.ssd_chunked, args, block, dtype, xp)


@settings(max_examples=15, deadline=None)
@given(t=st.integers(1, 13), split=st.integers(1, 12), chunk=st.integers(1, 6))
def test_any_length_split_and_chunk(t, split, chunk):
    xp = get_namespace("numpy")
    cfg = arch.Config(**{**SMALL.to_dict(), "chunk_size": chunk, "use_bias": False})
    params = _params(xp, cfg)
    x = rand(xp, (1, t, cfg.hidden_size), seed=t, dtype="float64")
    y, _ = arch.forward(cfg, params, x)
    y_ref, _ = step_loop(arch, cfg, params, x, arch.init_state(cfg, 1, xp=xp, dtype=xp.float64))
    assert_close(y, y_ref)
    if split < t:
        y1, s1 = arch.forward(cfg, params, x[:, :split, :])
        y2, _ = arch.forward(cfg, params, x[:, split:, :], s1)
        assert_close(xp.concat([y1, y2], axis=1), y)


def test_state_numel_matches_init_state(xp):
    for cfg in (SMALL, VARIANT):
        assert_state_numel(arch, cfg, xp, 2)


def test_init_params_follow_reference_init():
    xp = get_namespace("numpy")
    p = arch.init_params(SMALL, Generator(0, xp), "float32")
    assert set(p) == set(arch.param_shapes(SMALL))
    assert all(tuple(p[k].shape) == s for k, s in arch.param_shapes(SMALL).items())
    assert all(p[k].dtype == xp.float32 for k in p)
    np.testing.assert_allclose(np.exp(p["layers.1.mixer.A_log"]), np.arange(1, 5), rtol=1e-6)
    dt = np.log1p(np.exp(p["layers.0.mixer.dt_bias"].astype(np.float64)))
    assert dt.min() >= SMALL.time_step_floor * 0.999 and dt.max() <= SMALL.time_step_max * 1.001
    np.testing.assert_array_equal(p["layers.0.mixer.D"], 1.0)
    assert p["layers.0.mixer.in_proj.weight"].shape == (2 * 16 + 2 * 2 * 4 + 4, 8)


def test_norm_before_gate_is_norm_then_gate():
    xp = get_namespace("numpy")
    rng = np.random.default_rng(0)
    y, z, w = rng.normal(size=(3, 8)), rng.normal(size=(3, 8)), rng.normal(size=(8,))
    got = arch._gated_norm(VARIANT, y, z, w)  # one group of 8
    ref = y / np.sqrt((y**2).mean(-1, keepdims=True) + 1e-5) * w * z / (1 + np.exp(-z))
    assert_close(xp.asarray(got), xp.asarray(ref))


def test_backbone_and_dtypes():
    xp = get_namespace("numpy")
    bb = Backbone("mamba2", SMALL, arch.init_params(SMALL, Generator(1, xp), "float32"))
    y, s = bb.forward(rand(xp, (2, 5, 8)))
    assert y.dtype == xp.float32 and all(v.dtype == xp.float32 for v in s.values())
    y1, _ = bb.step(rand(xp, (2, 8)), bb.init_state(2))
    assert y1.shape == (2, 8)


def test_config_dict_roundtrip_and_validation():
    d = {**VARIANT.to_dict(), "model_type": "mamba2", "vocab_size": 7}
    assert arch.Config.from_dict(json.loads(json.dumps(d))) == VARIANT
    for limit in ([0.0, math.inf], [0, "inf"], [0.0, {"__float__": "Infinity"}]):  # HF 5 json
        assert arch.Config.from_dict({"time_step_limit": limit}).time_step_limit == (0.0, math.inf)
    for field, bad in [("n_groups", 3), ("head_dim", 0), ("num_heads", 64),
                       ("time_step_limit", (0.5, 0.1)), ("time_step_limit", (0, None)),
                       ("chunk_size", 0)]:  # fmt: skip
        with pytest.raises(ConfigError, match=field):
            arch.Config(**{**SMALL.to_dict(), field: bad})


def test_params_from_checkpoint_names_first_problem():
    xp = get_namespace("numpy")
    params = arch.init_params(SMALL, Generator(0, xp), "float32")
    ckpt = {"backbone." + k: v for k, v in params.items()}
    ckpt["backbone.embeddings.weight"] = np.zeros((5, 8), np.float32)
    assert arch.config_from_checkpoint(ckpt, {"n_groups": 2, "chunk_size": 4}) == SMALL
    assert arch.config_from_checkpoint(ckpt, {"state_size": 4, "chunk_size": 4}) == SMALL
    mamba_ssm_json = {"d_model": 8, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2", "d_state": 4,
                      "headdim": 4, "ngroups": 2, "chunk_size": 4}}  # fmt: skip
    assert arch.config_from_checkpoint(ckpt, mamba_ssm_json) == SMALL
    assert set(arch.params_from_checkpoint(ckpt, SMALL)) == set(params)
    bad = dict(ckpt)
    del bad["backbone.layers.1.mixer.dt_bias"]
    with pytest.raises(WeightsError, match=r"layers\.1\.mixer\.dt_bias.*\(4,\)"):
        arch.params_from_checkpoint(bad, SMALL)
    bad = {**ckpt, "backbone.layers.0.mixer.norm.weight": np.zeros((8,), np.float32)}
    with pytest.raises(WeightsError, match=r"layers\.0\.mixer\.norm\.weight.*\(16,\)"):
        arch.params_from_checkpoint(bad, SMALL)
    with pytest.raises(WeightsError, match="num_heads"):
        arch.config_from_checkpoint(ckpt, {"state_size": 4, "num_heads": 8, "head_dim": 2})


# ---------------------------------------------------------------------------------------------
# the reference: transformers' Mamba2Model


@contextlib.contextmanager
def _float64_reference(torch, modeling):
    """Keep the reference in float64: it upcasts to float32 (``.float()``, both RMSNorms) for
    fp16 training, which would cap the agreement of a float64 model near 1e-7."""
    orig_float = torch.Tensor.float

    def keep64(self, *args, **kwargs):
        return self if self.dtype == torch.float64 else orig_float(self, *args, **kwargs)

    def norm64(self, h):
        var = h.pow(2).mean(-1, keepdim=True)
        return self.weight * (h * torch.rsqrt(var + self.variance_epsilon))

    def gated_norm64(self, h, gate=None):
        if gate is not None:
            h = h * torch.nn.functional.silu(gate)
        g = h.view(*h.shape[:-1], -1, self.group_size)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * g.view(h.shape)

    patched = [
        (torch.Tensor, "float", keep64),
        (modeling.Mamba2RMSNorm, "forward", norm64),
        (modeling.MambaRMSNormGated, "forward", gated_norm64),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patched]
    try:
        for obj, name, fn in patched:
            setattr(obj, name, fn)
        yield
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)


REFERENCE_CASES = [
    {},
    {
        "use_bias": True,
        "use_conv_bias": False,
        "n_groups": 1,
        "num_heads": 8,
        "head_dim": 4,
        "conv_kernel": 3,
        "chunk_size": 5,
        "time_step_limit": (0.0, 0.05),
    },
]


@pytest.mark.parametrize("overrides", REFERENCE_CASES, ids=["default", "bias_groups_limit"])
def test_matches_transformers_mamba2(tmp_path, overrides):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors.numpy")
    from transformers.models.mamba2 import modeling_mamba2

    kwargs = dict(hidden_size=16, expand=2, num_heads=4, head_dim=8, n_groups=2, state_size=4,
                  num_hidden_layers=2, vocab_size=11, chunk_size=4, residual_in_fp32=False)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(**{**kwargs, **overrides}))
    model = perturb_torch(torch, model)
    tensors, config_json = saved_pretrained(model, tmp_path)

    xp = get_namespace("numpy")
    assert any(k.startswith("backbone.") for k in tensors)
    cfg = arch.config_from_checkpoint(tensors, config_json)
    assert cfg.chunk_size == model.config.chunk_size and cfg.n_groups == model.config.n_groups
    params = arch.params_from_checkpoint(tensors, cfg)
    assert all(v.dtype == np.float64 for v in params.values())
    x = np.random.default_rng(7).normal(size=(3, 11, cfg.hidden_size))
    with torch.no_grad(), _float64_reference(torch, modeling_mamba2):
        out = model.backbone(inputs_embeds=torch.from_numpy(x), use_cache=True)
    ref = out.last_hidden_state.numpy()

    y, s = arch.forward(cfg, params, xp.asarray(x))
    zeros = arch.init_state(cfg, 3, xp=xp, dtype=xp.float64)
    y_step, s_step = step_loop(arch, cfg, params, xp.asarray(x), zeros)
    np.testing.assert_allclose(to_numpy(y), ref, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(to_numpy(y_step), ref, rtol=1e-8, atol=1e-8)
    y1, _ = arch.forward(cfg, params, xp.asarray(x[1:2]))  # batch of one too
    np.testing.assert_allclose(to_numpy(y1), ref[1:2], rtol=1e-8, atol=1e-8)
    for i in range(cfg.num_hidden_layers):
        conv_ref = out.cache_params.get_conv_state(i).numpy()  # (B, conv_dim, K): last K inputs
        ssm_ref = out.cache_params.get_recurrent_state(i).numpy()  # (B, H, P, N)
        np.testing.assert_allclose(s[f"layers.{i}.ssm"], ssm_ref, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(s_step[f"layers.{i}.ssm"], ssm_ref, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(
            s[f"layers.{i}.conv"], np.swapaxes(conv_ref[:, :, 1:], 1, 2), rtol=1e-8, atol=1e-8
        )

    # unpatched, the reference's float32 upcasts agree to float32 precision
    with torch.no_grad():
        ref32 = model.backbone(inputs_embeds=torch.from_numpy(x)).last_hidden_state.numpy()
    np.testing.assert_allclose(to_numpy(y), ref32, rtol=1e-4, atol=1e-5)


def test_many_streams_update_in_blocks_as_the_plain_step(xp, monkeypatch):
    per_stream = SMALL.num_heads * SMALL.head_dim * SMALL.state_size
    assert_stream_blocks_are_plain(
        arch, SMALL, xp, _params(xp, dtype="float64"), per_stream, monkeypatch
    )


@pytest.mark.parametrize("t,block_steps,groups", [(1, 1, 1), (9, 4, 2), (12, 5, 4), (6, 8, 1)])
def test_recomputed_ssd_gradients_equal_the_chunked_ssd(xp, t, block_steps, groups, monkeypatch):
    """Training on NumPy runs the SSD recurrence as one operation with a recomputing backward
    (blocks of ``block_steps`` steps here); its value and the gradients of all six inputs, from
    ``y`` and from the last state, equal those of the chunked SSD through the tape."""
    from kizzasi_lite.backends import backend_name

    if backend_name(xp) not in ("numpy", "array_api_strict"):
        pytest.skip("device backends train through the chunked SSD")
    rng = np.random.default_rng(t + block_steps)
    b, h, p, n = 2, 4, 3, 5
    monkeypatch.setattr(arch, "_GRAD_BLOCK_NUMBERS", block_steps * b * h * p * n)
    inputs = {  # in the scans' argument order
        "x": xp.asarray(rng.normal(size=(b, t, h, p))),
        "dt": xp.asarray(rng.uniform(0.05, 1.0, size=(b, t, h))),
        "a": xp.asarray(-rng.uniform(0.1, 2.0, size=(h,))),
        "bm": xp.asarray(rng.normal(size=(b, t, groups, n))),
        "cm": xp.asarray(rng.normal(size=(b, t, groups, n))),
        "h0": xp.asarray(rng.normal(size=(b, h, p, n))),
    }
    assert_recomputed_scan_is_chunked(
        arch._ssd_recomputed, arch.ssd_chunked, inputs, (b, t, h, p), xp, seed=t
    )
