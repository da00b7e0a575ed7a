"""S4D: step loop == chunked forward on every backend, state carry, the state-spaces reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import dtype_of, get_namespace, namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models import s4d
from tests.conftest import assert_close, rand
from tests.models import common
from tests.models.common import assert_states_close as _assert_states_close

SMALL = s4d.Config(d_model=6, d_state=8, n_layer=2, dt_min=0.01, dt_max=0.5, chunk_size=5)


def _perturbed(cfg, xp, dtype, seed=0):
    """Init params with every entry moved, so ones/zeros of the default init hide nothing."""
    return common.perturbed_params(s4d, cfg, xp, dtype, seed, std=0.1, noise_seed=seed + 100)


def _step_loop(cfg, params, x, state):
    return common.step_loop(s4d, cfg, params, x, state)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("init", ["lin", "inv"])
def test_step_loop_equals_forward(xp, dtype, init):
    cfg = s4d.Config(**{**SMALL.to_dict(), "init": init})
    params = _perturbed(cfg, xp, dtype)
    x = rand(xp, (2, 13, cfg.d_model), seed=1, dtype=dtype)
    y, state = s4d.forward(cfg, params, x)
    assert y.shape == (2, 13, cfg.d_model)
    y_loop, state_loop = _step_loop(cfg, params, x, s4d.init_state(cfg, 2, xp=xp, dtype=x.dtype))
    assert_close(y, y_loop, xp=xp)
    _assert_states_close(state, state_loop)
    # and from a non-zero initial state
    x2 = rand(xp, (2, 7, cfg.d_model), seed=2, dtype=dtype)
    y2, s2 = s4d.forward(cfg, params, x2, state)
    y2_loop, s2_loop = _step_loop(cfg, params, x2, state)
    assert_close(y2, y2_loop, xp=xp)
    _assert_states_close(s2, s2_loop)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("split", [1, 4, 5, 8])
def test_split_forward_equals_one_call(xp, dtype, split):
    cfg = SMALL  # chunk_size 5, T = 12: neither part is a multiple of the chunk in general
    params = _perturbed(cfg, xp, dtype, seed=3)
    x = rand(xp, (3, 12, cfg.d_model), seed=4, dtype=dtype)
    y, state = s4d.forward(cfg, params, x)
    y1, s1 = s4d.forward(cfg, params, x[:, :split, :])
    y2, s2 = s4d.forward(cfg, params, x[:, split:, :], s1)
    assert_close(xp.concat([y1, y2], axis=1), y, xp=xp)
    _assert_states_close(s2, state)


def test_single_token_and_empty_sequence(xp):
    cfg = SMALL
    params = _perturbed(cfg, xp, "float32", seed=5)
    x = rand(xp, (2, 1, cfg.d_model), seed=6)
    y, state = s4d.forward(cfg, params, x)
    y_step, state_step = s4d.step(cfg, params, x[:, 0, :], s4d.init_state(cfg, 2, xp=xp))
    assert_close(y[:, 0, :], y_step, xp=xp)
    _assert_states_close(state, state_step)
    y0, s0 = s4d.forward(cfg, params, x[:, :0, :], state)
    assert y0.shape == (2, 0, cfg.d_model)
    _assert_states_close(s0, state)


def test_step_discretises_once_per_set_of_weights(xp):
    """At inference ``step`` takes each layer's discretisation from the ``prepared`` cache
    (computed once for these arrays) and equals the step that discretises every time."""
    from kizzasi_lite.models import _common

    cfg = SMALL
    params = _perturbed(cfg, xp, "float64", seed=21)
    x = rand(xp, (3, cfg.d_model), seed=22, dtype="float64")
    state = s4d.init_state(cfg, 3, xp=xp, dtype=x.dtype)
    state = {k: v + 0.5 for k, v in state.items()}  # a nonzero state
    y, new = s4d.step(cfg, params, x, state)
    if not any(key[0] is s4d._prepare_step for key in _common._PREPARED):
        pytest.skip("this backend's arrays take no weak references: nothing is cached")
    h, want = x, {}
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        u = s4d._norm(cfg, params, p + "norm.", h)
        out, want[p + "h_re"], want[p + "h_im"] = s4d.layer_step(
            params, p, u, state[p + "h_re"], state[p + "h_im"]
        )
        h = h + out
    assert_close(y, s4d._norm(cfg, params, "norm_f.", h), xp=xp)
    _assert_states_close(new, want)


@settings(max_examples=12, deadline=None)
@given(
    T=st.integers(1, 23),
    chunk=st.integers(1, 9),
    split=st.integers(0, 23),
)
def test_chunk_size_and_split_do_not_change_the_result(T, chunk, split):
    xp = get_namespace("numpy")
    cfg = s4d.Config(**{**SMALL.to_dict(), "chunk_size": chunk})
    params = _perturbed(cfg, xp, "float64", seed=7)
    x = rand(xp, (2, T, cfg.d_model), seed=8, dtype="float64")
    y_ref, s_ref = s4d.forward(s4d.Config(**{**SMALL.to_dict(), "chunk_size": 64}), params, x)
    k = min(split, T)
    y1, s1 = s4d.forward(cfg, params, x[:, :k, :])
    y2, s2 = s4d.forward(cfg, params, x[:, k:, :], s1)
    assert_close(np.concatenate([y1, y2], axis=1), y_ref)
    _assert_states_close(s2, s_ref)


def test_state_numel_matches_init_state(xp):
    cfg = s4d.Config(d_model=5, d_state=6, n_layer=3)
    state = common.assert_state_numel(s4d, cfg, xp, 1)
    assert s4d.state_numel(cfg) == 3 * 5 * 6
    assert all(float(xp.max(xp.abs(v))) == 0.0 for v in state.values())


def test_init_follows_the_paper(xp):
    for init in ("lin", "inv"):
        cfg = s4d.Config(d_model=4, d_state=8, n_layer=1, dt_min=0.01, dt_max=0.2, init=init)
        p = s4d.init_params(cfg, Generator(0, xp), "float64")
        n = np.arange(4)
        want = np.pi * n if init == "lin" else 8 / np.pi * (8 / (2 * n + 1) - 1)
        assert_close(p["layers.0.kernel.A_imag"], xp.asarray(np.tile(want, (4, 1))))
        assert_close(p["layers.0.kernel.log_A_real"], xp.asarray(np.full((4, 4), np.log(0.5))))
        dt = np.exp(to_numpy(p["layers.0.kernel.log_dt"]))
        assert np.all((dt >= 0.01) & (dt <= 0.2))
        assert p["layers.0.kernel.C"].shape == (4, 4, 2)
        assert p["layers.0.output_linear.0.weight"].shape == (8, 4, 1)
    p32 = s4d.init_params(SMALL, Generator(0, xp), None)
    assert all(v.dtype == xp.float32 for v in p32.values())


def test_erfc_and_gelu(xp):
    z = np.linspace(-9.0, 9.0, 721)
    got = to_numpy(s4d.erfc(xp.asarray(z, dtype=dtype_of(xp, "float64"))))
    want = np.array([math.erfc(v) for v in z])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)
    g = to_numpy(s4d.gelu(xp.asarray(z, dtype=xp.float32)))
    np.testing.assert_allclose(
        g, 0.5 * z * (1.0 + np.array([math.erf(v / 2**0.5) for v in z])), atol=2e-6
    )


def test_config_validation_and_dict_round_trip():
    assert s4d.Config.from_dict({**SMALL.to_dict(), "unknown": 1}) == SMALL
    for bad in ({"d_state": 7}, {"d_model": 0}, {"init": "legs"}, {"dt_min": 0.2, "dt_max": 0.1}):
        field = next(iter(bad))
        with pytest.raises(ConfigError, match=field):
            s4d.Config(**bad)


def test_checkpoint_round_trip_and_errors(np_xp):
    params = s4d.init_params(SMALL, Generator(0, np_xp), "float64")
    tensors = {"backbone." + k: np.asarray(v) for k, v in params.items()}
    cfg = s4d.config_from_checkpoint(tensors, {"dt_min": 0.01, "dt_max": 0.5, "chunk_size": 5})
    assert cfg == SMALL
    got = s4d.params_from_checkpoint(tensors, cfg)
    assert got.keys() == params.keys()
    assert all(got[k] is tensors["backbone." + k] for k in got)
    missing = dict(tensors)
    del missing["backbone.layers.1.D"]
    with pytest.raises(WeightsError, match=r"backbone.layers.1.D.*\(6,\)"):
        s4d.params_from_checkpoint(missing, cfg)
    wrong = {**tensors, "backbone.layers.0.kernel.C": np.zeros((6, 3, 2))}
    with pytest.raises(WeightsError, match="kernel.C"):
        s4d.params_from_checkpoint(wrong, cfg)
    with pytest.raises(WeightsError, match="d_state"):
        s4d.config_from_checkpoint(tensors, {"d_state": 16})


# ---------------------------------------------------------------------------------------------
# a direct complex128 computation, independent of the chunking


def _direct_ssm(params, prefix, u, h0):
    """y_t = sum_s K_(t-s) u_s + 2 Re sum_n C_n A_bar^(t+1) h0_n, state after T, in complex128."""
    g = {k[len(prefix) :]: np.asarray(v) for k, v in params.items() if k.startswith(prefix)}
    dt = np.exp(g["kernel.log_dt"])[:, None]
    A = -np.exp(g["kernel.log_A_real"]) + 1j * g["kernel.A_imag"]
    C = g["kernel.C"][..., 0] + 1j * g["kernel.C"][..., 1]
    dA = np.exp(dt * A)
    dB = (dA - 1.0) / A
    T = u.shape[1]
    K = 2 * np.einsum("hn,hnl->hl", C * dB, dA[..., None] ** np.arange(T)).real
    y = np.stack(
        [
            np.stack([np.convolve(u[b, :, h], K[h])[:T] for h in range(u.shape[2])], -1)
            for b in range(u.shape[0])
        ]
    )
    powers = dA[..., None] ** np.arange(1, T + 1)  # (H, N2, T)
    y += 2 * np.einsum("hn,bhn,hnt->bth", C, h0, powers).real
    hT = dA**T * h0 + np.einsum(
        "hnt,bth->bhn", dA[..., None] ** np.arange(T - 1, -1, -1) * dB[..., None], u
    )
    return y, hT


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_chunked_forward_equals_direct_complex_convolution(np_xp, init):
    cfg = s4d.Config(
        d_model=3, d_state=16, n_layer=1, dt_min=0.001, dt_max=0.3, init=init, chunk_size=16
    )
    params = _perturbed(cfg, np_xp, "float64", seed=9)
    rng = np.random.default_rng(10)
    u = rng.normal(size=(2, 53, 3))
    h0 = rng.normal(size=(2, 3, 8)) + 1j * rng.normal(size=(2, 3, 8))
    y, h_re, h_im = s4d.ssm_forward(params, "layers.0.", u, h0.real.copy(), h0.imag.copy(), 16)
    y_ref, h_ref = _direct_ssm(params, "layers.0.", u, h0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(h_re + 1j * h_im, h_ref, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# the state-spaces reference, transcribed


def _reference_modules():
    """Transcription of state-spaces/s4 ``models/s4/s4d.py`` (S4DKernel, S4D; dropout 0, no einops).

    Copyright (c) the state-spaces/s4 authors (A. Gu et al.), Apache License 2.0. Only the
    parameter registration helper and the dropout were dropped; the math is unchanged. The stack
    (pre-LayerNorm residual blocks + final norm_f) is ours, the layout kizzasi_lite documents.
    """
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class S4DKernel(nn.Module):
        def __init__(self, d_model, N=64, dt_min=0.001, dt_max=0.1):
            super().__init__()
            H = d_model
            log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
            C = torch.randn(H, N // 2, dtype=torch.cfloat)
            self.C = nn.Parameter(torch.view_as_real(C))
            self.log_dt = nn.Parameter(log_dt)
            self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(H, N // 2)))
            self.A_imag = nn.Parameter(math.pi * torch.arange(N // 2).repeat(H, 1).float())

        def forward(self, L):
            dt = torch.exp(self.log_dt)  # (H)
            C = torch.view_as_complex(self.C)  # (H N)
            A = -torch.exp(self.log_A_real) + 1j * self.A_imag  # (H N)
            dtA = A * dt.unsqueeze(-1)  # (H N)
            K = dtA.unsqueeze(-1) * torch.arange(L, device=A.device)  # (H N L)
            C = C * (torch.exp(dtA) - 1.0) / A
            return 2 * torch.einsum("hn, hnl -> hl", C, torch.exp(K)).real

    class S4D(nn.Module):
        def __init__(self, d_model, d_state=64, **kernel_args):
            super().__init__()
            self.h = d_model
            self.D = nn.Parameter(torch.randn(self.h))
            self.kernel = S4DKernel(self.h, N=d_state, **kernel_args)
            self.activation = nn.GELU()
            self.output_linear = nn.Sequential(
                nn.Conv1d(self.h, 2 * self.h, kernel_size=1), nn.GLU(dim=-2)
            )

        def forward(self, u):  # (B, H, L)
            L = u.size(-1)
            k = self.kernel(L=L)  # (H L)
            k_f = torch.fft.rfft(k, n=2 * L)  # (H L)
            u_f = torch.fft.rfft(u, n=2 * L)  # (B H L)
            y = torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]  # (B H L)
            y = y + u * self.D.unsqueeze(-1)
            return self.output_linear(self.activation(y))

    class Block(S4D):  # ours: pre-norm residual block around the reference layer
        def __init__(self, d_model, d_state, **kernel_args):
            super().__init__(d_model, d_state, **kernel_args)
            self.norm = nn.LayerNorm(d_model)

        def forward(self, x):  # (B, L, H)
            return x + super().forward(self.norm(x).transpose(-1, -2)).transpose(-1, -2)

    class Stack(nn.Module):
        def __init__(self, d_model, d_state, n_layer, **kernel_args):
            super().__init__()
            self.layers = nn.ModuleList(
                [Block(d_model, d_state, **kernel_args) for _ in range(n_layer)]
            )
            self.norm_f = nn.LayerNorm(d_model)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.norm_f(x)

    return torch, S4D, Stack


def test_layer_matches_state_spaces_reference(np_xp):
    torch, S4D, _ = _reference_modules()
    torch.manual_seed(0)
    ref = common.perturb_torch(torch, S4D(5, d_state=8, dt_min=0.01, dt_max=0.5))
    params = {"layers.0." + k: v.detach().numpy() for k, v in ref.state_dict().items()}
    u = np.random.default_rng(1).normal(size=(3, 21, 5))
    with torch.no_grad():
        y_ref = ref(torch.from_numpy(u).transpose(-1, -2)).transpose(-1, -2).numpy()
        k_ref = ref.kernel(L=21).numpy()
    np.testing.assert_allclose(s4d.kernel(params, "layers.0.", 21), k_ref, rtol=1e-9, atol=1e-10)
    zeros = np.zeros((3, 5, 4))
    y, _, _ = s4d.layer_forward(params, "layers.0.", u, zeros, zeros, chunk_size=8)
    np.testing.assert_allclose(y, y_ref, rtol=1e-8, atol=1e-9)
    h_re = h_im = zeros
    for t in range(21):
        y_t, h_re, h_im = s4d.layer_step(params, "layers.0.", u[:, t, :], h_re, h_im)
        np.testing.assert_allclose(y_t, y_ref[:, t, :], rtol=1e-8, atol=1e-9)


def test_stack_matches_reference_through_safetensors(np_xp, tmp_path):
    torch, _, Stack = _reference_modules()
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(1)
    ref = common.perturb_torch(torch, Stack(6, 8, 2, dt_min=0.01, dt_max=0.5))
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    tensors = safetensors_numpy.load_file(str(path))
    cfg = s4d.config_from_checkpoint(tensors, {"layer_norm_epsilon": 1e-5, "chunk_size": 4})
    assert (cfg.d_model, cfg.d_state, cfg.n_layer) == (6, 8, 2)
    params = s4d.params_from_checkpoint(tensors, cfg)
    assert set(params) == set(ref.state_dict())
    x = np.random.default_rng(2).normal(size=(2, 11, 6))
    with torch.no_grad():
        y_ref = ref(torch.from_numpy(x)).numpy()
    y, state = s4d.forward(cfg, params, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-8, atol=1e-8)
    y_loop, _ = _step_loop(cfg, params, x, s4d.init_state(cfg, 2, xp=np_xp, dtype=np_xp.float64))
    np.testing.assert_allclose(y_loop, y_ref, rtol=1e-8, atol=1e-8)


def test_gradients_match_finite_differences(np_xp):
    """The forward pass runs through the autodiff namespace (real arithmetic only)."""
    from kizzasi_lite.autodiff import value_and_grad

    cfg = s4d.Config(d_model=3, d_state=4, n_layer=2, chunk_size=3, dt_min=0.05, dt_max=0.5)
    params = _perturbed(cfg, np_xp, "float64", seed=11)
    x = np.random.default_rng(12).normal(size=(2, 7, 3))

    def loss(p):
        y, _ = s4d.forward(cfg, p, x)
        return namespace(y).mean(y * y)

    _, grads = value_and_grad(loss, params)
    rng = np.random.default_rng(13)
    d = {k: rng.normal(size=v.shape) for k, v in params.items()}
    h = 1e-5
    f_plus = float(loss({k: v + h * d[k] for k, v in params.items()}))
    f_minus = float(loss({k: v - h * d[k] for k, v in params.items()}))
    analytic = sum(float(np.sum(grads[k] * d[k])) for k in params)
    np.testing.assert_allclose(analytic, (f_plus - f_minus) / (2 * h), rtol=1e-6)
