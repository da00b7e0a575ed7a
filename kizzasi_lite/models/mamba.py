"""Mamba (S6), the selective state-space model, computed as transformers' ``MambaModel`` does.

Glossary (paper symbol -> name in the code):

- ``D`` (model width)              -> ``cfg.hidden_size``
- ``E`` (expansion), ``E*D``        -> ``cfg.expand``, ``cfg.intermediate_size`` (``d_inner``)
- ``N`` (state size)                -> ``cfg.state_size``
- ``R`` (rank of Delta)             -> ``cfg.time_step_rank``
- ``K`` (conv width)                -> ``cfg.conv_kernel``
- ``x``, ``z`` (SSM input, gate)    -> the two halves of ``in_proj``'s output: ``xs``, ``z``
- ``Delta = softplus(s_Delta(x))``  -> ``dt`` = softplus(dt_proj(dt_low)), (B, T, d_inner)
- ``A = -exp(A_log)``               -> ``a`` (d_inner, N)
- ``A_bar = exp(Delta A)``          -> ``da`` (B, T, d_inner, N)
- ``B_bar x = Delta B x``           -> ``dbx`` (B, T, d_inner, N)
- ``B``, ``C`` (selective)          -> ``bm``, ``cm`` (B, T, N), from ``x_proj``
- ``h_t = A_bar h_{t-1} + B_bar x`` -> the ssm state ``layers.{i}.ssm`` (B, d_inner, N)
- ``y = C h + D x``, ``y*silu(z)``  -> ``y``; ``D`` is the skip ``mixer.D`` (d_inner,)

A layer is ``h <- h + out_proj(mixer(RMSNorm(h)))``; the output is ``norm_f(h)``, the
``last_hidden_state`` of ``MambaModel`` for ``inputs_embeds=x``. The state of a layer is the last
``K-1`` conv inputs ``layers.{i}.conv`` (B, K-1, d_inner) and ``layers.{i}.ssm`` (B, d_inner, N).

The sequence path scans ``h_t`` three ways, tested equal: the chunked scan (``_ssm_chunked``, the
device backends, also under autodiff); on NumPy-backed arrays at inference, the recurrence in
blocks (``_ssm_blocked``), and in training one differentiable operation whose backward
recomputes each block's states and runs the adjoint recurrence (``_ssm_recomputed``), so that no
(B, T, d_inner, N) tensor is kept for the backward. The step runs on arrays derived from the
weights once (``_prepare_step``).

References:

- A. Gu, T. Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (2023),
  arXiv:2312.00752, Algorithm 2 and Section 3.
- transformers ``models/mamba/modeling_mamba.py``: ``MambaMixer`` (slow path), ``MambaRMSNorm``,
  ``MambaBlock``, ``MambaModel``, ``MambaPreTrainedModel._init_weights`` (initialisation).
- state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py`` (the original layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from kizzasi_lite.autodiff import plain
from kizzasi_lite.backends import namespace
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models._common import (
    DictConfig,
    check_mamba_common,
    check_numpy_backed,
    check_positive_int,
    count_layers,
    fold_into_in_proj,
    halved_taps,
    in_stream_blocks,
    inverse_softplus_dt,
    merge_checked,
    need,
    normed,
    resolve_dtype,
    run_mamba_sequence,
    run_mamba_stack,
    run_mamba_step,
    scan_block,
    scan_operation,
    scan_path,
    select_params,
    step_layouts,
    step_norm,
    strip_prefix,
)
from kizzasi_lite.nn import (
    causal_conv1d,
    causal_conv1d_step,
    conv_step,
    linear,
    outer,
    silu,
    silu_of_half,
    softplus,
    transposed,
)
from kizzasi_lite.nn.init import kaiming_uniform
from kizzasi_lite.scan import scan_chunked


@dataclass(frozen=True)
class Config(DictConfig):
    """Mamba hyper-parameters, named as in transformers' ``MambaConfig`` (config.json).

    ``time_step_rank="auto"`` resolves to ``ceil(hidden_size / 16)``. ``chunk_size`` (ours, not
    in MambaConfig) is the chunk length of the scan in :func:`forward` (the block length of its
    inference path); it changes rounding only.
    ``residual_in_fp32`` is accepted for compatibility and ignored: we compute in one dtype.
    """

    hidden_size: int = 768
    state_size: int = 16
    num_hidden_layers: int = 32
    expand: int = 2
    conv_kernel: int = 4
    time_step_rank: int | str = "auto"
    use_bias: bool = False
    use_conv_bias: bool = True
    layer_norm_epsilon: float = 1e-5
    hidden_act: str = "silu"
    initializer_range: float = 0.1
    residual_in_fp32: bool = True
    time_step_scale: float = 1.0
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_init_scheme: str = "random"
    time_step_floor: float = 1e-4
    rescale_prenorm_residual: bool = False
    chunk_size: int = 64

    def __post_init__(self) -> None:
        if self.time_step_rank == "auto":
            object.__setattr__(self, "time_step_rank", math.ceil(self.hidden_size / 16))
        for name in ("hidden_size", "state_size", "num_hidden_layers", "expand", "conv_kernel"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("time_step_rank", self.time_step_rank)
        check_positive_int("chunk_size", self.chunk_size)
        check_mamba_common(self)
        if self.time_step_init_scheme not in ("random", "constant"):
            raise ConfigError(
                "time_step_init_scheme must be 'random' or 'constant', "
                f"got {self.time_step_init_scheme!r}"
            )

    @property
    def intermediate_size(self) -> int:
        """``d_inner = expand * hidden_size``."""
        return int(self.expand * self.hidden_size)


# ---------------------------------------------------------------------------------------------
# parameters and state


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter name (MambaModel's key without ``backbone.``) and its shape."""
    d, di, n, r, k = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.state_size,
        cfg.time_step_rank,
        cfg.conv_kernel,
    )
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        shapes[p + "norm.weight"] = (d,)
        shapes[p + "mixer.in_proj.weight"] = (2 * di, d)
        if cfg.use_bias:
            shapes[p + "mixer.in_proj.bias"] = (2 * di,)
        shapes[p + "mixer.conv1d.weight"] = (di, 1, k)
        if cfg.use_conv_bias:
            shapes[p + "mixer.conv1d.bias"] = (di,)
        shapes[p + "mixer.x_proj.weight"] = (r + 2 * n, di)
        shapes[p + "mixer.dt_proj.weight"] = (di, r)
        shapes[p + "mixer.dt_proj.bias"] = (di,)
        shapes[p + "mixer.A_log"] = (di, n)
        shapes[p + "mixer.D"] = (di,)
        shapes[p + "mixer.out_proj.weight"] = (d, di)
        if cfg.use_bias:
            shapes[p + "mixer.out_proj.bias"] = (d,)
    shapes["norm_f.weight"] = (d,)
    return shapes


def init_params(cfg: Config, rng: Any, dtype: Any = None) -> dict[str, Any]:
    """Fresh weights initialised as ``MambaPreTrainedModel._init_weights`` does.

    ``rng`` is a :class:`kizzasi_lite.backends.random.Generator` (its ``xp`` is the namespace).
    in_proj / x_proj ~ N(0, initializer_range); dt_proj.weight ~ U(+-R^-0.5 * time_step_scale)
    (or that constant); dt_proj.bias = softplus^-1(log-uniform dt); A_log = log(1..N);
    D = 1; conv and out_proj: kaiming-uniform; biases 0; norms 1.
    """
    xp = rng.xp
    dtype = resolve_dtype(xp, dtype)
    d, di, n, r, k = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.state_size,
        cfg.time_step_rank,
        cfg.conv_kernel,
    )
    std = cfg.initializer_range
    dt_std = r**-0.5 * cfg.time_step_scale
    out_scale = 1.0 / math.sqrt(cfg.num_hidden_layers) if cfg.rescale_prenorm_residual else 1.0
    a_log_row = xp.log(xp.arange(1, n + 1, dtype=dtype))  # (N,)
    params: dict[str, Any] = {}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        params[p + "norm.weight"] = xp.ones((d,), dtype=dtype)  # (D,)
        params[p + "mixer.in_proj.weight"] = rng.normal((2 * di, d), std=std, dtype=dtype)
        if cfg.use_bias:
            params[p + "mixer.in_proj.bias"] = xp.zeros((2 * di,), dtype=dtype)  # (2Di,)
        params[p + "mixer.conv1d.weight"] = kaiming_uniform(rng, (di, 1, k), k, dtype)
        if cfg.use_conv_bias:
            params[p + "mixer.conv1d.bias"] = xp.zeros((di,), dtype=dtype)  # (Di,)
        params[p + "mixer.x_proj.weight"] = rng.normal((r + 2 * n, di), std=std, dtype=dtype)
        if cfg.time_step_init_scheme == "constant":
            params[p + "mixer.dt_proj.weight"] = xp.full((di, r), dt_std, dtype=dtype)  # (Di, R)
        else:
            params[p + "mixer.dt_proj.weight"] = rng.uniform((di, r), -dt_std, dt_std, dtype=dtype)
        params[p + "mixer.dt_proj.bias"] = inverse_softplus_dt(cfg, rng, di, dtype)  # (Di,)
        params[p + "mixer.A_log"] = xp.ones((di, n), dtype=dtype) * a_log_row  # (Di, N)
        params[p + "mixer.D"] = xp.ones((di,), dtype=dtype)  # (Di,)
        w_out = kaiming_uniform(rng, (d, di), di, dtype)  # (D, Di)
        params[p + "mixer.out_proj.weight"] = w_out * out_scale
        if cfg.use_bias:
            params[p + "mixer.out_proj.bias"] = xp.zeros((d,), dtype=dtype)  # (D,)
    params["norm_f.weight"] = xp.ones((d,), dtype=dtype)  # (D,)
    return params


def init_state(cfg: Config, batch: int, *, xp: Any, dtype: Any = None) -> dict[str, Any]:
    """Zero state: per layer ``conv`` (B, K-1, d_inner) and ``ssm`` (B, d_inner, N)."""
    dtype = resolve_dtype(xp, dtype)
    di, k, n = cfg.intermediate_size, cfg.conv_kernel, cfg.state_size
    state = {}
    for i in range(cfg.num_hidden_layers):
        state[f"layers.{i}.conv"] = xp.zeros((batch, k - 1, di), dtype=dtype)  # (B, K-1, Di)
        state[f"layers.{i}.ssm"] = xp.zeros((batch, di, n), dtype=dtype)  # (B, Di, N)
    return state


def state_numel(cfg: Config) -> int:
    """Numbers in one stream's state: ``L * d_inner * (K - 1 + N)``."""
    di = cfg.intermediate_size
    return cfg.num_hidden_layers * di * (cfg.conv_kernel - 1 + cfg.state_size)


# ---------------------------------------------------------------------------------------------
# the mixer: sequence path and single step side by side


def _selective_params(cfg: Config, params: dict[str, Any], p: str, xs: Any) -> tuple[Any, ...]:
    """``Delta`` (..., Di), ``B`` and ``C`` (..., N) from the conv output ``xs`` (..., Di)."""
    r, n = cfg.time_step_rank, cfg.state_size
    x_dbl = linear(xs, params[p + "x_proj.weight"])  # (..., R + 2N)
    dt_low, bm, cm = x_dbl[..., :r], x_dbl[..., r : r + n], x_dbl[..., r + n :]
    dt_w, dt_b = params[p + "dt_proj.weight"], params[p + "dt_proj.bias"]
    dt = softplus(linear(dt_low, dt_w, dt_b))  # (..., Di)
    return dt, bm, cm  # (..., Di), (..., N), (..., N)


def _ssm_chunked(
    xs: Any, dt: Any, a: Any, bm: Any, cm: Any, h0: Any, chunk: int
) -> tuple[Any, Any]:
    """The selective SSM over a sequence by the chunked scan (the path gradients go through).

    ``xs``, ``dt`` (B, T, Di); ``a`` (Di, N); ``bm``, ``cm`` (B, T, N); ``h0`` (B, Di, N).
    Returns ``y_t = C_t h_t`` (B, T, Di) and the last state, with
    ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t``. Builds every state (B, T, Di, N) at once.
    """
    xp = namespace(xs)
    da = xp.exp(dt[..., None] * a)  # (B, T, Di, N)
    dbx = (dt * xs)[..., None] * bm[:, :, None, :]  # (B, T, Di, N)
    hs, h_last = scan_chunked(da, dbx, h0, chunk=chunk)  # (B, T, Di, N), (B, Di, N)
    return (hs @ cm[..., None])[..., 0], h_last  # (B, T, Di), (B, Di, N)


def _block_states(xp: Any, dt: Any, xs: Any, a_t: Any, bm: Any, h: Any) -> tuple[Any, Any]:
    """The states after each step of one block and its decays, both (B, L, N, Di), from ``dt``,
    ``xs`` (B, L, Di), ``a_t`` (N, Di), ``bm`` (B, L, N) and the state ``h`` (B, N, Di) before it.
    The states are written in place over the block's inputs (NumPy-backed arrays only)."""
    da = xp.exp(dt[:, :, None, :] * a_t)  # (B, L, N, Di)
    hs = outer(bm, dt * xs)  # (B, L, N, Di): the inputs dt x B
    for j in range(hs.shape[1]):  # in place: row j becomes the state after step j
        row = hs[:, j, ...]  # (B, N, Di), a view
        row += da[:, j, ...] * h
        h = row
    return hs, da


def _ssm_blocked(
    xs: Any, dt: Any, a: Any, bm: Any, cm: Any, h0: Any, block: int, starts: list | None = None
) -> tuple[Any, Any]:
    """:func:`_ssm_chunked` step by step, over blocks of ``block`` steps (inference path).

    Each block computes its decays and inputs at once, runs the recurrence one step at a time
    (two array ops per step, no log-depth doubling) and reads its states out with one matmul,
    so no (B, T, Di, N) array is built. The running state is kept as (B, N, Di), a transposed
    view of (B, Di, N), so that every elementwise op runs along Di contiguous numbers rather than
    N. Each block's states are written in place over its inputs, so it takes NumPy-backed arrays
    only (``loops_are_cheap``), and it is not for autodiff. A ``starts`` list receives the state
    before each block, (B, N, Di).
    """
    check_numpy_backed("_ssm_blocked", xs, dt, a, bm, cm, h0)
    xp = namespace(xs)
    h, ys, a_t = xp.permute_dims(h0, (0, 2, 1)), [], transposed(a)  # (B, N, Di), (N, Di)
    for t0 in range(0, xs.shape[1], block):
        sl = slice(t0, min(t0 + block, xs.shape[1]))
        if starts is not None:
            starts.append(h)
        hs, _ = _block_states(xp, dt[:, sl, ...], xs[:, sl, ...], a_t, bm[:, sl, ...], h)
        ys.append((cm[:, sl, None, :] @ hs)[:, :, 0, :])  # (B, L, Di)
        h = xp.asarray(hs[:, -1, ...], copy=True)  # (B, N, Di), not a view of the block
    if not ys:
        return xs, h0
    return xp.concat(ys, axis=1), xp.permute_dims(h, (0, 2, 1))  # (B, T, Di), (B, Di, N)


# Numbers per (B, L, N, Di) array of a block in :func:`_ssm_recomputed` (4 MiB of float32).
_GRAD_BLOCK_NUMBERS = 1 << 20


def _ssm_recomputed(xs: Any, dt: Any, a: Any, bm: Any, cm: Any, h0: Any) -> tuple[Any, Any]:
    """:func:`_ssm_chunked` as one differentiable operation, for training on NumPy-backed arrays.

    Through the tape, the chunked scan keeps every state and every level of its doubling: at a
    batch of 32 windows of 128 steps of the default preset, gigabytes per layer. Here the
    forward is :func:`_ssm_blocked` in cache-sized blocks, keeping only the state at the start
    of each; the backward recomputes a block's states from it and runs the adjoint recurrence
    backwards, ``lambda_t = gy_t C_t + exp(dt_{t+1} A) lambda_{t+1}`` (``lambda`` = dL/dh_t),
    from which every input's gradient is a product per block (Mamba's recomputing
    selective-scan backward). Same arguments and results as :func:`_ssm_chunked` (tested equal,
    with its gradients).
    """
    v = [plain(u) for u in (xs, dt, a, bm, cm, h0)]
    bsz, _, di = v[0].shape
    block = max(1, _GRAD_BLOCK_NUMBERS // max(1, bsz * di * v[2].shape[1]))
    starts: list = []
    y, h_last = _ssm_blocked(*v, block, starts)
    inputs = {"xs": xs, "dt": dt, "a": a, "bm": bm, "cm": cm, "h0": h0}
    return scan_operation((y, h_last), inputs, partial(_ssm_backward, v, starts, block))


def _ssm_backward(v: list, starts: list, block: int, gy: Any, gh: Any) -> dict[str, Any]:
    """Gradients of :func:`_ssm_recomputed`'s inputs given ``gy`` (B, T, Di) of ``y`` and ``gh``
    (B, Di, N) of the last state (either may be None: zero)."""
    xs, dt, a, bm, cm, _ = v
    xp = namespace(xs)
    t, a_t = xs.shape[1], transposed(a)  # (N, Di)
    if gy is None:
        gy = xp.zeros_like(xs)
    lam_in = xp.zeros_like(starts[0]) if gh is None else xp.permute_dims(gh, (0, 2, 1))
    g_a = xp.zeros_like(a_t)  # (N, Di)
    parts: dict[str, list] = {"xs": [], "dt": [], "bm": [], "cm": []}
    for k in range(len(starts) - 1, -1, -1):
        sl = slice(k * block, min((k + 1) * block, t))
        dtb, xsb, bmb, gyb = dt[:, sl, ...], xs[:, sl, ...], bm[:, sl, ...], gy[:, sl, ...]
        hs, da = _block_states(xp, dtb, xsb, a_t, bmb, starts[k])  # (B, L, N, Di) each
        lam = outer(cm[:, sl, :], gyb)  # (B, L, N, Di): gy_t C_t, then lambda
        last = lam[:, -1, ...]
        last += lam_in  # lambda of the step after the block, already through its decay
        for j in range(hs.shape[1] - 2, -1, -1):  # in place, backwards
            row = lam[:, j, ...]
            row += da[:, j + 1, ...] * lam[:, j + 1, ...]
        lam_in = da[:, 0, ...] * lam[:, 0, ...]  # (B, N, Di): dL/dh before the block
        h_prev = xp.concat([starts[k][:, None, ...], hs[:, :-1, ...]], axis=1)  # (B, L, N, Di)
        g_pre = lam * h_prev * da  # (B, L, N, Di): dL/d(dt A)
        g_dtx = (bmb[:, :, None, :] @ lam)[:, :, 0, :]  # (B, L, Di): sum_n B_n lambda_n
        parts["cm"].append((hs @ gyb[..., None])[..., 0])  # (B, L, N)
        parts["bm"].append((lam @ (dtb * xsb)[..., None])[..., 0])  # (B, L, N)
        parts["dt"].append(xp.sum(g_pre * a_t, axis=2) + g_dtx * xsb)  # (B, L, Di)
        parts["xs"].append(g_dtx * dtb)  # (B, L, Di)
        g_a = g_a + xp.sum(g_pre * dtb[:, :, None, :], axis=(0, 1))  # (N, Di)
    out = {key: xp.concat(p[::-1], axis=1) for key, p in parts.items()}
    out["a"] = xp.matrix_transpose(g_a)  # (Di, N)
    out["h0"] = xp.permute_dims(lam_in, (0, 2, 1))  # (B, Di, N)
    return out


def _mixer_seq(
    cfg: Config, params: dict[str, Any], i: int, u: Any, conv: Any, ssm: Any
) -> tuple[Any, Any, Any]:
    """Mixer over a sequence: ``u`` (B, T, D) -> (B, T, D), with conv and ssm states in/out."""
    xp = namespace(u)
    p, di = f"layers.{i}.mixer.", cfg.intermediate_size
    xz = linear(u, params[p + "in_proj.weight"], params.get(p + "in_proj.bias"))  # (B, T, 2Di)
    xs, z = xz[..., :di], xz[..., di:]
    xs, conv = causal_conv1d(xs, params[p + "conv1d.weight"], params.get(p + "conv1d.bias"), conv)
    xs = silu(xs)  # (B, T, Di)
    dt, bm, cm = _selective_params(cfg, params, p, xs)
    a = -xp.exp(params[p + "A_log"])  # (Di, N)
    path = scan_path(xs, dt, a, bm, cm, ssm) if xs.shape[1] else "chunked"
    if path == "recomputed":  # training on NumPy: one operation, a recomputing backward
        y, ssm = _ssm_recomputed(xs, dt, a, bm, cm, ssm)
    elif path == "blocked":  # NumPy inference: the recurrence in cache-sized blocks
        y, ssm = _ssm_blocked(xs, dt, a, bm, cm, ssm, scan_block(ssm))
    else:  # the device backends
        y, ssm = _ssm_chunked(xs, dt, a, bm, cm, ssm, cfg.chunk_size)  # (B, T, Di), (B, Di, N)
    y = (y + xs * params[p + "D"]) * silu(z)  # (B, T, Di)
    out = linear(y, params[p + "out_proj.weight"], params.get(p + "out_proj.bias"))  # (B, T, D)
    return out, conv, ssm


def _mixer_step(
    cfg: Config, params: dict[str, Any], i: int, u: Any, conv: Any, ssm: Any
) -> tuple[Any, Any, Any]:
    """One step of the mixer: ``u`` (B, D) -> (B, D), with conv and ssm states in/out."""
    xp = namespace(u)
    p, di = f"layers.{i}.mixer.", cfg.intermediate_size
    xz = linear(u, params[p + "in_proj.weight"], params.get(p + "in_proj.bias"))  # (B, 2Di)
    xs, z = xz[..., :di], xz[..., di:]
    w, b = params[p + "conv1d.weight"], params.get(p + "conv1d.bias")
    xs, conv = causal_conv1d_step(xs, w, b, conv)  # (B, Di), (B, K-1, Di)
    xs = silu(xs)  # (B, Di)
    dt, bm, cm = _selective_params(cfg, params, p, xs)
    a = -xp.exp(params[p + "A_log"])  # (Di, N)
    da = xp.exp(dt[..., None] * a)  # (B, Di, N)
    ssm = da * ssm + (dt * xs)[..., None] * bm[:, None, :]  # (B, Di, N)
    y = (ssm @ cm[..., None])[..., 0]  # (B, Di)
    y = (y + xs * params[p + "D"]) * silu(z)  # (B, Di)
    out = linear(y, params[p + "out_proj.weight"], params.get(p + "out_proj.bias"))  # (B, D)
    return out, conv, ssm


# the weights a step reads through ``linear``, laid out (in, out) for it (:func:`step_layouts`)
_PROJECTIONS = ("in_proj.weight", "x_proj.weight", "dt_proj.weight", "out_proj.weight")
# the names a step's layer reads, after its prefix (a prefix ending in "." takes weight or bias)
_STEP_KEYS = ("in_proj.", "x_proj.weight", "dt_proj.", "D", "out_proj.")


def _prepare_step(cfg: Config, params: dict[str, Any]) -> tuple[list[dict], tuple, dict]:
    """Per layer, what a step derives from the config and weights alone (cached by
    ``prepared``): ``xp``, the namespace; ``keys``, the names of the layer's parameters;
    ``norm`` (the pre-norm for :func:`normed`), ``a_t`` (N, Di) = -exp(A_log)^T, ``taps`` (K, Di)
    the conv weights, time first, and ``conv_bias``, both halved (for :func:`silu_of_half`),
    ``half`` a 0-d array (the gate's halving); then the final norm's :func:`step_norm`, and the
    four projections laid out (in, out) (:func:`step_layouts`). Where ``in_proj`` is a copy, it
    takes in the pre-norm's weight and the gate's halving (:func:`fold_into_in_proj`): that
    layer's ``norm`` then carries no weight, and ``half`` is None."""
    xp, di, eps = namespace(*params.values()), cfg.intermediate_size, cfg.layer_norm_epsilon
    half = xp.asarray(0.5, dtype=params["layers.0.mixer.D"].dtype)
    layouts = step_layouts(_PROJECTIONS, cfg, params)
    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}.mixer."
        conv_bias = params.get(p + "conv1d.bias")
        norm = step_norm(params[f"layers.{i}.norm.weight"], eps)
        folded = p + "in_proj.weight" in layouts
        if folded:
            norm = fold_into_in_proj(layouts, params, p, norm, slice(di, 2 * di))  # z halved
        layers.append(
            {
                "xp": xp,
                "keys": tuple(p + k for k in _STEP_KEYS),
                "norm": norm,
                "a_t": transposed(-xp.exp(params[p + "A_log"])),  # (N, Di)
                "taps": halved_taps(params[p + "conv1d.weight"]),  # (K, Di)
                "conv_bias": None if conv_bias is None else conv_bias * 0.5,  # (Di,)
                "half": None if folded else half,
            }
        )
    return layers, step_norm(params["norm_f.weight"], eps), layouts


def _layer_step_prepared(
    cfg: Config, params: dict[str, Any], w: dict[str, Any], x: Any, conv: Any, ssm: Any
) -> tuple[Any, Any, Any]:
    """A layer of :func:`_step_plain`, ``x + mixer(RMSNorm(x))``, on its prepared arrays
    ``w``: ``x`` (B, D), ``conv`` (B, K-1, Di), ``ssm`` (B, Di, N)."""
    xp, (inp, x_proj, dt_proj, skip, outp) = w["xp"], w["keys"]
    di, r, n = cfg.intermediate_size, cfg.time_step_rank, cfg.state_size
    u = normed(x, w["norm"])  # (B, D)
    xz = linear(u, params[inp + "weight"], params.get(inp + "bias"))  # (B, 2Di)
    xs, conv = conv_step(xz[:, :di], w["taps"], conv)  # (B, Di), halved
    xs = silu_of_half(xs if w["conv_bias"] is None else xs + w["conv_bias"])  # (B, Di)
    x_dbl = linear(xs, params[x_proj])  # (B, R + 2N): dt_low, B, C
    dt = softplus(linear(x_dbl[:, :r], params[dt_proj + "weight"], params[dt_proj + "bias"]))
    bm, cm = x_dbl[:, r : r + n, None], x_dbl[:, None, r + n :]  # (B, N, 1), (B, 1, N)
    rows = xp.permute_dims(ssm, (0, 2, 1))  # (B, N, Di): contiguous after a step or forward
    rows, y = in_stream_blocks(partial(_state_update, w["a_t"]), rows, dt, dt * xs, bm, cm)
    z = xz[:, di:]  # (B, Di), halved already where in_proj's copy folds it in
    y = (y + xs * params[skip]) * silu_of_half(z if w["half"] is None else z * w["half"])
    out = linear(y, params[outp + "weight"], params.get(outp + "bias"))  # (B, D)
    return x + out, conv, xp.permute_dims(rows, (0, 2, 1))  # state (B, Di, N), a view


def _state_update(
    a_t: Any, ssm: Any, dt: Any, xdt: Any, bm: Any, cm: Any, out: tuple | None = None
) -> tuple[Any, Any] | None:
    """``h = exp(dt A) h + (dt x) B`` and ``y = C^T h`` for a step, in the (N, Di) layout (every
    elementwise op runs along Di numbers, not N): ``a_t`` (N, Di), ``ssm`` (B, N, Di), ``dt``
    and ``xdt`` = dt x (B, Di), ``bm`` (B, N, 1), ``cm`` (B, 1, N). Returns the new state
    (B, N, Di) and ``y`` (B, Di).

    With ``out`` (NumPy arrays of those shapes, :func:`in_stream_blocks`) it writes them instead:
    the outer product ``B (dt x)`` by ``einsum`` straight into the new state, then the decayed
    state added to it."""
    xp = namespace(ssm)
    decayed = xp.exp(dt[:, None, :] * a_t) * ssm  # (B, N, Di)
    if out is None:
        new = decayed + bm * xdt[:, None, :]  # (B, N, Di)
        return new, (cm @ new)[:, 0, :]
    new, y = out
    xp.einsum("bn,bd->bnd", bm[..., 0], xdt, out=new)
    new += decayed
    y[...] = (cm @ new)[:, 0, :]
    return None


def step(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """One time step, O(1) in time: ``x`` (B, D) -> ``y`` (B, D) after ``norm_f``, new state.

    At inference it runs on arrays derived from the weights once (``_prepare_step``, cached per
    set of weights); under autodiff it is the plain ``_mixer_step`` (tested equal).
    """
    return run_mamba_step(
        cfg, params, x, state,
        prepare=_prepare_step, fast_layer=_layer_step_prepared, plain=_step_plain,
    )  # fmt: skip


def _step_plain(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """:func:`step` without the prepared arrays (the path gradients go through)."""
    return run_mamba_stack(cfg, params, x, state, _mixer_step)


def forward(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """A sequence by the chunked scan: ``x`` (B, T, D) -> ``y`` (B, T, D), final state.

    ``state`` (default zeros) is the state before ``x``; the returned one is the state after it,
    so ``forward(x[:, :k])`` then ``forward(x[:, k:], state)`` equals ``forward(x)``.
    """
    if state is None:
        state = init_state(cfg, x.shape[0], xp=namespace(x), dtype=x.dtype)
    return run_mamba_sequence(cfg, params, x, state, _mixer_seq)


# ---------------------------------------------------------------------------------------------
# reference checkpoints (transformers MambaModel / MambaForCausalLM, mamba_ssm)


def config_from_checkpoint(tensors: dict[str, Any], config_json: dict | None = None) -> Config:
    """The Config of a checkpoint: sizes from the tensor shapes, the rest from ``config_json``.

    Accepts MambaModel keys, or ``backbone.``-prefixed ones (MambaForCausalLM, mamba_ssm).
    Raises WeightsError when config.json contradicts the tensors.
    """
    t = strip_prefix(tensors)
    in_proj = need(t, "layers.0.mixer.in_proj.weight", 2)
    hidden, di = int(in_proj.shape[1]), int(in_proj.shape[0]) // 2
    if di % hidden:
        raise WeightsError(f"in_proj gives d_inner={di}, not a multiple of hidden_size={hidden}")
    dt_w = need(t, "layers.0.mixer.dt_proj.weight", 2)
    inferred = {
        "hidden_size": hidden,
        "expand": di // hidden,
        "state_size": int(need(t, "layers.0.mixer.A_log", 2).shape[1]),
        "num_hidden_layers": count_layers(t),
        "conv_kernel": int(need(t, "layers.0.mixer.conv1d.weight", 3).shape[-1]),
        "time_step_rank": int(dt_w.shape[1]),
        "use_bias": "layers.0.mixer.in_proj.bias" in t,
        "use_conv_bias": "layers.0.mixer.conv1d.bias" in t,
    }
    return merge_checked(Config, config_json, inferred)


def params_from_checkpoint(tensors: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Our params from checkpoint tensors (any prefix; embeddings and lm_head are skipped).

    The arrays are returned as given (same namespace and dtype). Raises WeightsError naming the
    first missing or mis-shaped key and the shape expected.
    """
    return select_params(strip_prefix(tensors), param_shapes(cfg))


__all__ = [
    "Config",
    "config_from_checkpoint",
    "forward",
    "init_params",
    "init_state",
    "param_shapes",
    "params_from_checkpoint",
    "state_numel",
    "step",
]
