"""Mamba-2 (SSD), computed as transformers' ``Mamba2Model`` (torch_forward path) does.

Glossary (paper symbol -> name in the code):

- ``D`` (model width)                -> ``cfg.hidden_size``
- ``d_inner = E*D``                   -> ``cfg.intermediate_size`` (``expand * hidden_size``)
- ``H`` heads, ``P`` head dim         -> ``cfg.num_heads``, ``cfg.head_dim``; ``d_ssm = H*P``
- ``G`` groups of B/C, ``N`` state    -> ``cfg.n_groups``, ``cfg.state_size``
- ``Q`` (chunk length)                -> ``cfg.chunk_size``
- ``K`` (conv width)                  -> ``cfg.conv_kernel``; conv channels ``conv_dim = d_ssm + 2GN``
- ``z``, ``xBC``, ``Delta`` (dt)      -> the parts of ``in_proj``'s output (after an optional
  gated-MLP pair ``z0``, ``x0`` of width ``d_mlp = d_inner - d_ssm``, as in mamba_ssm)
- ``Delta = clamp(softplus(dt + dt_bias), time_step_limit)`` -> ``dt`` (B, T, H)
- ``a = -exp(A_log)`` (scalar per head), ``A_bar = exp(Delta a)`` -> ``a`` (H,), ``da``
- ``B``, ``C`` (per group)            -> ``bm``, ``cm`` (B, T, G, N); head h uses group h // (H/G)
- ``h_t = A_bar h_{t-1} + Delta B x`` -> the ssm state ``layers.{i}.ssm`` (B, H, P, N)
- ``y = C h + D x``                   -> ``y``; ``D`` is ``mixer.D`` (H,)
- ``L = exp(segsum(Delta a))``        -> ``lmat``: the 1-semiseparable mask inside a chunk
- gated RMSNorm ``norm(y * silu(z))`` -> ``mixer.norm`` over groups of ``d_ssm / G`` channels

A layer is ``h <- h + out_proj(mixer(RMSNorm(h)))``; the output is ``norm_f(h)``, the
``last_hidden_state`` of ``Mamba2Model`` for ``inputs_embeds=x``. The state of a layer is the last
``K-1`` conv inputs ``layers.{i}.conv`` (B, K-1, conv_dim) and ``layers.{i}.ssm`` (B, H, P, N).

The sequence path is the chunked SSD algorithm of ``ssd_minimal.py``: (1) intra-chunk outputs as
masked matmuls ``(C B^T o L) X``, (2) the state each chunk produces, (3) the recurrence of the
states across chunk boundaries (a scan over chunks), (4) the output of the carried-in state.
Every decay is ``exp`` of a segment sum that adds only its own terms (stable for any ``dt``);
chunks of up to 32 steps get all their segment sums from one matmul with a constant 0/1 matrix.
Inference on the device backends runs in chunks of ``chunk_size``, device autodiff in chunks of
``_SHORT_CHUNK`` steps. NumPy inference runs ``ssd_factored``: each chunk's decay mask is rank one
(``exp(c_l - c_s) = exp(c_l - m) exp(m - c_s)``), so the heads of a group share one masked
``C B^T`` and one matmul per chunk, with a plain loop across chunks (a head whose decays are too
strong for the factors' range gets its outputs from inside each chunk from its own Q x Q
decays); a long sequence goes through the stack in
cache-sized time segments. Training on NumPy
runs the recurrence as one differentiable operation whose backward recomputes each block's
states and runs the adjoint recurrence (``_ssd_recomputed``, its gradients tested equal to the
chunked SSD's; its forward ``ssd_blocked`` is the recurrence step by step in cache-sized blocks,
tested equal). The step path is the O(1) recurrence; at inference it runs on a few arrays
derived from the weights once (``_prepare_step``, cached per set of weights), and many streams
update their states in cache-sized blocks of streams.

References:

- T. Dao, A. Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through
  Structured State Space Duality" (2024), arXiv:2405.21060, Section 6 and Listing 1.
- state-spaces/mamba ``mamba_ssm/modules/ssd_minimal.py`` and ``mamba_ssm/modules/mamba2.py``.
- transformers ``models/mamba2/modeling_mamba2.py``: ``Mamba2Mixer.torch_forward`` (chunk scan,
  ``segment_sum``), ``MambaRMSNormGated``, ``Mamba2Model``, ``_init_weights``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from kizzasi_lite.autodiff import plain
from kizzasi_lite.backends import loops_are_cheap, namespace, plain_numpy
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models._common import (
    DictConfig,
    check_mamba_common,
    check_numpy_backed,
    check_positive_int,
    count_layers,
    fold_into_in_proj,
    halved_taps,
    hf_names,
    in_stream_blocks,
    inverse_softplus_dt,
    is_positive_int,
    known_fields,
    merge_checked,
    need,
    normed,
    resolve_dtype,
    run_mamba_sequence,
    run_mamba_stack,
    run_mamba_step,
    scan_operation,
    scan_path,
    select_params,
    step_layouts,
    step_norm,
    strip_prefix,
    traced,
)
from kizzasi_lite.nn import (
    causal_conv1d,
    causal_conv1d_step,
    conv_step,
    gated_rms_norm,
    linear,
    outer,
    rms_norm,
    silu,
    silu_of_half,
    softplus,
)
from kizzasi_lite.nn.init import kaiming_uniform
from kizzasi_lite.scan import scan_parallel

_DEFAULT_STATE_SIZE = 128  # d_state of both references when config.json does not say
# Longest chunk of the chunked SSD under autodiff on devices and for the heads that NumPy
# inference cannot factor. Per step and head, a chunk's Q x Q decays cost O(Q) and its states
# O(P N) whatever Q (and the tape keeps every Q x Q intermediate): on a CPU the default preset
# (P N = 256) trains 1.4x faster in chunks of 16 steps than of 64, 1.1x faster than of 32, and
# ran its forward over 8192 steps 1.1x faster than in chunks of 8 or 32 and ~1.2x faster than
# the step-by-step recurrence in cache-sized blocks (the result is the same).
_SHORT_CHUNK = 16


@dataclass(frozen=True)
class Config(DictConfig):
    """Mamba-2 hyper-parameters, named as in transformers' ``Mamba2Config`` (config.json).

    transformers requires ``num_heads * head_dim == expand * hidden_size``; a smaller ``d_ssm``
    (mamba_ssm's gated-MLP split, ``d_mlp = d_inner - d_ssm``) is also accepted here.
    ``norm_before_gate`` (mamba_ssm; False in transformers) normalises before the gate.
    ``residual_in_fp32`` is accepted for compatibility and ignored: we compute in one dtype.
    """

    hidden_size: int = 4096
    state_size: int = 128
    num_heads: int = 128
    head_dim: int = 64
    n_groups: int = 8
    num_hidden_layers: int = 64
    expand: int = 2
    conv_kernel: int = 4
    chunk_size: int = 256
    use_bias: bool = False
    use_conv_bias: bool = True
    layer_norm_epsilon: float = 1e-5
    hidden_act: str = "silu"
    initializer_range: float = 0.1
    residual_in_fp32: bool = True
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    time_step_limit: tuple[float, float] = (0.0, float("inf"))
    rescale_prenorm_residual: bool = False
    norm_before_gate: bool = False

    def __post_init__(self) -> None:
        for name in ("hidden_size", "state_size", "num_heads", "head_dim", "n_groups"):
            check_positive_int(name, getattr(self, name))
        for name in ("num_hidden_layers", "expand", "conv_kernel", "chunk_size"):
            check_positive_int(name, getattr(self, name))
        check_mamba_common(self)
        if self.num_heads % self.n_groups:
            raise ConfigError(
                f"num_heads ({self.num_heads}) must be a multiple of n_groups ({self.n_groups})"
            )
        if self.d_ssm > self.intermediate_size:
            raise ConfigError(
                f"num_heads * head_dim ({self.d_ssm}) must not exceed expand * hidden_size "
                f"({self.intermediate_size})"
            )
        limit = _json_pair(self.time_step_limit)
        if len(limit) != 2 or not 0.0 <= limit[0] <= limit[1]:
            raise ConfigError(
                f"time_step_limit must be (low, high) with 0 <= low <= high, got {limit!r}"
            )
        object.__setattr__(self, "time_step_limit", limit)

    @property
    def intermediate_size(self) -> int:
        """``d_inner = expand * hidden_size`` (input width of ``out_proj``)."""
        return int(self.expand * self.hidden_size)

    @property
    def d_ssm(self) -> int:
        """Channels that go through the SSM: ``num_heads * head_dim``."""
        return self.num_heads * self.head_dim

    @property
    def d_mlp(self) -> int:
        """Width of mamba_ssm's gated-MLP side branch (0 in transformers)."""
        return self.intermediate_size - self.d_ssm

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv: ``x``, ``B`` and ``C``: ``d_ssm + 2 * G * N``."""
        return self.d_ssm + 2 * self.n_groups * self.state_size

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (config.json)."""
        d = super().to_dict()
        d["time_step_limit"] = list(self.time_step_limit)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a dict such as a Hugging Face config.json; unknown keys are ignored."""
        kw = known_fields(cls, d)
        if "time_step_limit" in kw:
            kw["time_step_limit"] = _json_pair(kw["time_step_limit"])
        return cls(**kw)


def _json_pair(v: Any) -> tuple[float, ...]:
    """``time_step_limit`` from config.json: a list or tuple of :func:`_json_float` numbers."""
    if not isinstance(v, list | tuple):
        raise ConfigError(f"time_step_limit must be (low, high), got {v!r}")
    return tuple(_json_float(u) for u in v)


def _json_float(v: Any) -> float:
    """A float from config.json: a number, ``"inf"``, or transformers 5's ``{"__float__": ...}``."""
    if isinstance(v, dict) and "__float__" in v:
        v = v["__float__"]
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"time_step_limit entries must be numbers, got {v!r}") from None


# ---------------------------------------------------------------------------------------------
# parameters and state


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter name (Mamba2Model's key without ``backbone.``) and its shape."""
    d, di, h = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads
    d_proj = 2 * di + 2 * cfg.n_groups * cfg.state_size + h
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        shapes[p + "norm.weight"] = (d,)
        shapes[p + "mixer.in_proj.weight"] = (d_proj, d)
        if cfg.use_bias:
            shapes[p + "mixer.in_proj.bias"] = (d_proj,)
        shapes[p + "mixer.conv1d.weight"] = (cfg.conv_dim, 1, cfg.conv_kernel)
        if cfg.use_conv_bias:
            shapes[p + "mixer.conv1d.bias"] = (cfg.conv_dim,)
        shapes[p + "mixer.dt_bias"] = (h,)
        shapes[p + "mixer.A_log"] = (h,)
        shapes[p + "mixer.D"] = (h,)
        shapes[p + "mixer.norm.weight"] = (cfg.d_ssm,)
        shapes[p + "mixer.out_proj.weight"] = (d, di)
        if cfg.use_bias:
            shapes[p + "mixer.out_proj.bias"] = (d,)
    shapes["norm_f.weight"] = (d,)
    return shapes


def init_params(cfg: Config, rng: Any, dtype: Any = None) -> dict[str, Any]:
    """Fresh weights initialised as ``Mamba2PreTrainedModel._init_weights`` does.

    in_proj ~ N(0, initializer_range); dt_bias = softplus^-1(log-uniform dt); A_log = log(1..H);
    D = 1; conv and out_proj: kaiming-uniform; biases 0; norms 1.
    """
    xp = rng.xp
    dtype = resolve_dtype(xp, dtype)
    shapes = param_shapes(cfg)
    out_scale = 1.0 / math.sqrt(cfg.num_hidden_layers) if cfg.rescale_prenorm_residual else 1.0
    params: dict[str, Any] = {}
    for key, shape in shapes.items():
        if key.endswith("in_proj.weight"):
            params[key] = rng.normal(shape, std=cfg.initializer_range, dtype=dtype)
        elif key.endswith("conv1d.weight"):
            params[key] = kaiming_uniform(rng, shape, cfg.conv_kernel, dtype)  # (C, 1, K)
        elif key.endswith("out_proj.weight"):
            w = kaiming_uniform(rng, shape, cfg.intermediate_size, dtype)  # (D, d_inner)
            params[key] = w * out_scale
        elif key.endswith("dt_bias"):
            params[key] = inverse_softplus_dt(cfg, rng, cfg.num_heads, dtype)  # (H,)
        elif key.endswith("A_log"):
            params[key] = xp.log(xp.arange(1, cfg.num_heads + 1, dtype=dtype))  # (H,)
        elif key.endswith("bias"):
            params[key] = xp.zeros(shape, dtype=dtype)  # (C,)
        else:  # norms and D
            params[key] = xp.ones(shape, dtype=dtype)  # (C,)
    return params


def init_state(cfg: Config, batch: int, *, xp: Any, dtype: Any = None) -> dict[str, Any]:
    """Zero state: per layer ``conv`` (B, K-1, conv_dim) and ``ssm`` (B, H, P, N)."""
    dtype = resolve_dtype(xp, dtype)
    h, p, n = cfg.num_heads, cfg.head_dim, cfg.state_size
    state = {}
    for i in range(cfg.num_hidden_layers):
        conv_shape = (batch, cfg.conv_kernel - 1, cfg.conv_dim)
        state[f"layers.{i}.conv"] = xp.zeros(conv_shape, dtype=dtype)  # (B, K-1, conv_dim)
        state[f"layers.{i}.ssm"] = xp.zeros((batch, h, p, n), dtype=dtype)  # (B, H, P, N)
    return state


def state_numel(cfg: Config) -> int:
    """Numbers in one stream's state: ``L * ((K - 1) * conv_dim + H * P * N)``."""
    per_layer = (cfg.conv_kernel - 1) * cfg.conv_dim + cfg.d_ssm * cfg.state_size
    return cfg.num_hidden_layers * per_layer


# ---------------------------------------------------------------------------------------------
# SSD: the chunked sequence algorithm


# Chunks of at most this many steps get their segment sums from one matmul with a constant 0/1
# matrix (Q^3 multiply-adds per chunk and head, no Q x Q masks or strided cumulative sums).
_MATMUL_SEGSUM_CHUNK = 32


@functools.cache
def _segsum_weights(xp: Any, dtype: Any, q: int) -> Any:
    """``W[k, l*Q + s] = 1`` where ``s < k <= l``, else 0: (Q, Q*Q), made once per namespace,
    dtype and ``q``."""
    k, l, s = (xp.reshape(xp.arange(q), shape) for shape in ((q, 1, 1), (1, q, 1), (1, 1, q)))
    inside = xp.logical_and(k > s, k <= l)  # (Q, Q, Q)
    return xp.reshape(xp.astype(inside, dtype), (q, q * q))


def _segment_sums(a: Any) -> Any:
    """``S[..., l, s] = a_{s+1} + ... + a_l`` for ``l >= s``, else 0. ``a`` (..., Q).

    Each entry sums only its own terms, never a difference of cumulative sums, so the decays
    ``exp(S)`` stay exact when the sums are large (ssd_minimal's stable ``segsum``). Short
    chunks take one matmul with :func:`_segsum_weights`; longer ones a masked cumulative sum.
    """
    xp = namespace(a)
    q = a.shape[-1]
    if q <= _MATMUL_SEGSUM_CHUNK:
        w = _segsum_weights(namespace(plain(a)), a.dtype, q)  # (Q, Q*Q), a plain array
        return xp.reshape(xp.matmul(a, w), (*a.shape[:-1], q, q))  # (..., Q, Q)
    idx = xp.arange(q)  # (Q,)
    strict = xp.expand_dims(idx, axis=1) > xp.expand_dims(idx, axis=0)  # (Q, Q): k > s
    col = xp.expand_dims(a, axis=-1)  # (..., Q, 1): a_k in row k
    terms = xp.where(strict, col, xp.zeros_like(col))  # (..., Q, Q)
    return xp.cumulative_sum(terms, axis=-2)  # (..., Q, Q): sum over s < k <= l


def _chunks(xp: Any, v: Any, nc: int, q: int) -> Any:
    """(B, T, ...) zero-padded to ``nc * q`` steps and split: (B, NC, Q, ...)."""
    b, t, rest = v.shape[0], v.shape[1], tuple(v.shape[2:])
    if nc * q > t:
        v = xp.concat([v, xp.zeros((b, nc * q - t, *rest), dtype=v.dtype)], axis=1)  # (B, NC*Q, ..)
    return xp.reshape(v, (b, nc, q, *rest))  # (B, NC, Q, ...)


def ssd_chunked(
    x: Any, dt: Any, a: Any, bm: Any, cm: Any, h0: Any, chunk: int, skip: Any = None
) -> tuple[Any, Any]:
    """Chunked SSD scan of ``h_t = exp(dt_t a) h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t``.

    ``x`` (B, T, H, P), ``dt`` (B, T, H), ``a`` (H,), ``bm`` and ``cm`` (B, T, G, N), ``h0``
    (B, H, P, N), ``skip`` None or ``D`` (H,). Returns ``y`` (B, T, H, P), with ``D x`` added
    when ``skip`` is given, and the final state.
    Padded steps have ``dt = 0``: decay 1 and no input, so they leave the state unchanged.
    Every decay is ``exp`` of a segment sum (:func:`_segment_sums`). ``dt`` scales the inputs
    through the small factors (the columns of the Q x Q scores, the decays to each chunk's
    end) rather than ``x``, and ``D`` joins the scores' diagonal: no pass over ``x`` for either.
    States are kept as (G, N, R*P), so the heads of a group share one matmul with their ``B``
    or ``C``.
    """
    xp = namespace(x)
    bsz, t, h, p = x.shape
    g = bm.shape[2]
    r, q = h // g, chunk
    nc = -(-t // q)
    xc = _chunks(xp, x, nc, q)  # (B, NC, Q, H, P)
    dtc = xp.permute_dims(_chunks(xp, dt, nc, q), (0, 1, 3, 2))  # (B, NC, H, Q)
    adt = dtc * xp.reshape(a, (h, 1))  # (B, NC, H, Q)
    bc = xp.permute_dims(_chunks(xp, bm, nc, q), (0, 1, 3, 2, 4))  # (B, NC, G, Q, N)
    cc = xp.permute_dims(_chunks(xp, cm, nc, q), (0, 1, 3, 2, 4))  # (B, NC, G, Q, N)
    sums = _segment_sums(adt)  # (B, NC, H, Q, Q): decay from step s to step l, as a log
    from_start = xp.exp(adt[..., :1] + sums[..., 0])  # (B, NC, H, Q): over steps 0..l
    to_end = xp.exp(sums[..., -1, :])  # (B, NC, H, Q): over steps s+1..Q-1

    # 1. inside each chunk: y = (C B^T o L diag(dt) + D I) X, the "attention-like" form
    idx = xp.arange(q)
    causal = xp.expand_dims(idx, axis=1) >= xp.expand_dims(idx, axis=0)  # (Q, Q): l >= s
    cb = xp.matmul(cc, xp.matrix_transpose(bc))  # (B, NC, G, Q, Q)
    cb = xp.expand_dims(xp.where(causal, cb, xp.zeros_like(cb)), axis=3)  # (B, NC, G, 1, Q, Q)
    cb = cb * xp.reshape(dtc, (bsz, nc, g, r, 1, q))  # (B, NC, G, R, Q, Q): column s times dt_s
    if skip is not None:
        cb = cb + xp.reshape(skip, (g, r, 1, 1)) * xp.eye(q, dtype=x.dtype)  # (B,NC,G,R,Q,Q)
    lmat = xp.reshape(xp.exp(sums), (bsz, nc, g, r, q, q))  # (B, NC, G, R, Q, Q)
    scores = xp.reshape(lmat * cb, (bsz, nc, h, q, q))  # (B, NC, H, Q, Q)
    y_diag = xp.matmul(scores, xp.permute_dims(xc, (0, 1, 3, 2, 4)))  # (B, NC, H, Q, P)

    # 2. the state each chunk ends in when it starts from zero, as (G, N, R*P)
    w = xc * xp.expand_dims(xp.permute_dims(to_end * dtc, (0, 1, 3, 2)), axis=-1)  # (B,NC,Q,H,P)
    w = xp.permute_dims(xp.reshape(w, (bsz, nc, q, g, r * p)), (0, 1, 3, 2, 4))  # (B,NC,G,Q,RP)
    states = xp.matmul(xp.matrix_transpose(bc), w)  # (B, NC, G, N, R*P)

    # 3. across chunks: S_c = exp(sum of chunk c's decays) S_{c-1} + states_c
    decay = xp.broadcast_to(xp.expand_dims(from_start[..., -1], axis=-1), (bsz, nc, h, p))
    decay = xp.reshape(decay, (bsz, nc, g, 1, r * p))  # (B, NC, G, 1, R*P)
    rows0 = _to_rows(xp, h0, g)  # (B, G, N, R*P)
    starts, h_last = _chunk_starts(decay, states, rows0)  # (B, NC, G, N, R*P), (B, G, N, R*P)

    # 4. the carried-in state's contribution: y = exp(a_cum) C S_start
    y_off = xp.permute_dims(xp.matmul(cc, starts), (0, 1, 3, 2, 4))  # (B, NC, Q, G, R*P)
    y_off = xp.reshape(y_off, (bsz, nc, q, h, p))  # (B, NC, Q, H, P)
    y_off = y_off * xp.expand_dims(xp.permute_dims(from_start, (0, 1, 3, 2)), axis=-1)
    y = y_off + xp.permute_dims(y_diag, (0, 1, 3, 2, 4))  # (B, NC, Q, H, P)
    y = xp.reshape(y, (bsz, nc * q, h, p))[:, :t, ...]  # (B, T, H, P)
    return y, _from_rows(xp, h_last, h)


# Chunk length of :func:`ssd_factored` (NumPy inference), and the largest factor it allows,
# as a log. Within exp(+-60) ~ 1e26^(+-1), the float32 scaled inputs dt x exp(m - c_s) stay
# finite for |dt x| below ~1e11 / (Q |C B|), and where they fall below float32's normal range
# the absolute error stays below its spacing there (1.4e-45) times exp(60): ~2e-19.
_FACTORED_CHUNK = 32
_FACTORED_SPAN = 60.0
# Largest log-decay of a strong head inside a chunk (from the chunk's start) for which its decays
# come from the ratios of exp(c_l) in float64: exp(600) times the largest float32 dt is finite
_FLOAT64_SPAN = 600.0


@functools.cache
def _lower_ones(xp: Any, dtype: Any, q: int) -> Any:
    """``L[l, s] = 1`` where ``s <= l``, else 0: (Q, Q), so that ``L @ v`` is ``v``'s running
    sum over its first axis (made once per namespace, dtype and ``q``)."""
    idx = xp.arange(q)
    return xp.astype(xp.expand_dims(idx, axis=1) >= xp.expand_dims(idx, axis=0), dtype)


def ssd_factored(
    x: Any, dt: Any, a: Any, bm: Any, cm: Any, h0: Any, chunk: int, skip: Any = None
) -> tuple[Any, Any]:
    """:func:`ssd_chunked`'s result with each chunk's decay mask factored, for inference on
    NumPy-backed arrays (a Python loop over chunks). Same arguments and result.

    With ``c_l = dt_0 a + ... + dt_l a`` a head's running log-decay inside a chunk, the decay
    from step ``s`` to step ``l`` is ``exp(c_l - c_s) = exp(c_l - m) exp(m - c_s)`` for any
    ``m``: the mask is rank one. So the inputs are scaled by ``exp(m - c_s) dt_s`` and the
    outputs by ``exp(c_l - m)``, and the R heads of a group share one masked ``C B^T`` (Q, Q):
    per chunk, one matmul ``[C B^T o causal, C] @ [X'; S']`` of (Q, Q+N) by (Q+N, R*P) gives the
    outputs from inside the chunk and from the state ``S'`` it starts from (scaled by
    ``exp(m)``), and no (Q, Q) array is made per head.

    ``m`` is half the chunk's total log-decay, so every factor lies within ``exp(+-span)``, the
    span half the chunk's total decay. The factors are computed in float64 and rounded once, so
    float32 keeps the recurrence's precision. A head whose span exceeds ``_FACTORED_SPAN`` in
    some chunk (strong decays: ``dt a`` below ``-2 * 60 / Q`` a step on average over the chunk)
    could overflow float32 there. Such a "strong" head takes ``m`` at its chunks' ends instead:
    every factor of its states is then a decay (at most 1) and the shared matmul gives its
    outputs from the carried-in state, while the outputs from inside each chunk come from its
    own (Q, Q) decays ``exp(c_l - c_s)``: while its chunk's log-decay stays above
    ``-_FLOAT64_SPAN``, as the ratios ``exp(c_l) / exp(c_s)`` in float64 (a product per pair,
    its ``Q`` exps shared with its output factors), else from segment sums, exact for any
    ``dt``, as in :func:`ssd_chunked`.
    """
    check_numpy_backed("ssd_factored", x, dt, a, bm, cm, h0)
    xp = namespace(x)
    bsz, t, h, p = x.shape
    if t == 0 or bsz == 0:  # nothing to scan (and no maximum of an empty batch's decays)
        return ssd_chunked(x, dt, a, bm, cm, h0, chunk, skip)
    g, n = bm.shape[2], bm.shape[3]
    r, rp, q, nc = h // g, h // g * p, chunk, -(-t // chunk)
    dtc = _chunks(xp, xp.astype(dt, xp.float64), nc, q)  # (B, NC, Q, H)
    adt = dtc * xp.astype(a, xp.float64)  # (B, NC, Q, H)
    cum = xp.matmul(_lower_ones(xp, xp.float64, q), adt)  # (B, NC, Q, H): c_l
    end = cum[:, :, -1:, :]  # (B, NC, 1, H): each chunk's total log-decay
    strong = xp.max(xp.abs(cum - end * 0.5), axis=(0, 1, 2)) > _FACTORED_SPAN  # (H,)
    m = xp.where(strong, end, end * 0.5)  # (B, NC, 1, H): the reference
    heads = [int(k) for k in xp.nonzero(strong)[0]] if xp.any(strong) else []

    def spread(v: Any) -> Any:  # (..., H) -> (..., G, R*P): each head's value over its P
        return xp.reshape(xp.repeat(v, p, axis=-1), (*v.shape[:-1], g, rp))

    def exp(v: Any) -> Any:  # a float64 factor's exp, rounded once to x's dtype
        return xp.astype(xp.exp(v), x.dtype)

    xc = _chunks(xp, xp.reshape(x, (bsz, t, h * p)), nc, q)  # (B, NC, Q, H*P)
    e_in = xp.exp(m - cum)  # (B, NC, Q, H): exp(m - c_s), float64
    scaled = xp.astype(e_in * dtc, x.dtype)  # (B, NC, Q, H): exp(m - c_s) dt_s
    z = xp.empty((bsz, nc, g, q + n, rp), dtype=x.dtype)  # per chunk: [X'; S']
    into = plain_numpy(z)  # NumPy writes products in place, with no temporaries
    xs = (xp.reshape(xc, (bsz, nc, q, g, rp)), spread(scaled))  # (B, NC, Q, G, R*P), X' = x s
    if into:
        xp.multiply(*xs, out=xp.permute_dims(z[:, :, :, :q, :], (0, 1, 3, 2, 4)))
    else:
        z[:, :, :, :q, :] = xp.permute_dims(xs[0] * xs[1], (0, 1, 3, 2, 4))
    bc = xp.permute_dims(_chunks(xp, bm, nc, q), (0, 1, 3, 2, 4))  # (B, NC, G, Q, N)
    cc = xp.permute_dims(_chunks(xp, cm, nc, q), (0, 1, 3, 2, 4))  # (B, NC, G, Q, N)
    u = xp.matmul(xp.matrix_transpose(bc), z[:, :, :, :q, :])  # (B, NC, G, N, R*P)

    # across chunks: chunk c reads S'_c = exp(r_c) S_c, S_c the state it starts from, with
    # r_c = m_c, or 0 for a strong head (it reads S'_c = S_c; its inside outputs come apart,
    # below); S_c ends in S_{c+1} = exp(c_end - m_c) (exp(m_c - r_c) S'_c + U_c): every factor
    # within exp(+-span) (a product of two may not be), each made in float64 and rounded once
    m0 = m[:, :, 0, :]  # (B, NC, H)
    lift = xp.where(strong, xp.zeros_like(m0), m0) if heads else m0  # r_c
    read = xp.expand_dims(spread(exp(lift)), axis=-2)  # (B, NC, G, 1, R*P): exp(r_c)
    out_of = xp.expand_dims(spread(exp(end[:, :, 0, :] - m0)), axis=-2)  # exp(c_end - m_c)
    keep = xp.expand_dims(spread(exp(m0 - lift)), axis=-2) if heads else None  # a strong decay
    zs = z[:, :, :, q:, :]  # (B, NC, G, N, R*P): the states read, S'_c
    zs[:, 0, ...] = _to_rows(xp, h0, g) * read[:, 0, ...]
    s = xp.empty_like(zs[:, 0, ...])  # the state after the last chunk
    for c in range(nc):
        nxt = zs[:, c + 1, ...] if c + 1 < nc else s
        src = zs[:, c, ...]
        if not into:
            src = src * keep[:, c, ...] if heads else src
            nxt[...] = (src + u[:, c, ...]) * out_of[:, c, ...]
        else:
            if heads:
                src = xp.multiply(src, keep[:, c, ...], out=nxt)
            xp.add(src, u[:, c, ...], out=nxt)
            xp.multiply(nxt, out_of[:, c, ...], out=nxt)
        if c + 1 < nc:
            nxt *= read[:, c + 1, ...]
    for k in heads:  # a strong head's X' out of the shared matmul
        z[:, :, k // r, :q, k % r * p : (k % r + 1) * p] = 0.0

    cb = xp.matmul(cc, xp.matrix_transpose(bc)) * _lower_ones(xp, x.dtype, q)  # causal C B^T
    y = xp.matmul(xp.concat([cb, cc], axis=-1), z)  # (B, NC, G, Q, R*P)
    y = xp.reshape(xp.permute_dims(y, (0, 1, 3, 2, 4)), (bsz, nc, q, h * p))  # (B,NC,Q,H*P)
    # the outputs' factors exp(c_l - m), with no second exp; a strong head's exp(m - c) may
    # underflow to 0, so it is not divided: it reads its state unscaled (S'_c = S_c), exp(c_l)
    e_out = 1.0 / xp.where(strong, 1.0, e_in)  # (B, NC, Q, H)
    if heads:
        ks = xp.asarray(heads)

        def rows(v: Any) -> Any:  # (B, NC, Q, H) -> the strong heads' contiguous (B, NC, K, Q)
            return xp.take(xp.permute_dims(v, (0, 1, 3, 2)), ks, axis=2)

        c_k = rows(cum)  # (B, NC, K, Q): <= 0
        e_k = xp.exp(c_k)  # (B, NC, K, Q): exp(c_l), float64
        for j, k in enumerate(heads):
            e_out[..., k] = e_k[:, :, j, :]
    y *= xp.repeat(xp.astype(e_out, x.dtype), p, axis=-1)  # the outputs' factors (y is new)
    if skip is not None:
        y += xc * xp.repeat(skip, p)  # D x
    if heads:  # the strong heads' outputs from inside each chunk, from their own decays
        dt_k = rows(dtc)  # (B, NC, K, Q)
        cb_k = cb[:, :, :1, ...] if g == 1 else xp.take(cb, ks // r, axis=2)  # causal C B^T
        if xp.min(c_k) > -_FLOAT64_SPAN:  # exp(c_l) and its reciprocal within float64
            # the decay from s to l, exp(c_l - c_s), is exp(c_l) / exp(c_s): a product, not an
            # exp per pair. Above the diagonal these are growths, finite in float64 only: the
            # causal C B^T zeroes them before the rounding to x's dtype
            ratios = outer(e_k, dt_k / e_k)  # (B, NC, K, Q, Q), from contiguous rows
            scores = xp.astype(ratios * cb_k, x.dtype)  # column s times dt_s
        else:  # exp(c_l) may underflow: each decay from its own segment sum, as ssd_chunked
            adt_k = xp.astype(rows(adt), x.dtype)  # (B, NC, K, Q)
            decays = xp.exp(_segment_sums(adt_k))  # (B, NC, K, Q, Q): <= 1
            scores = decays * xp.astype(dt_k, x.dtype)[..., None, :] * cb_k  # column s times dt_s
        x_k = xp.take(xp.reshape(xc, (bsz, nc, q, h, p)), ks, axis=3)  # (B, NC, Q, K, P)
        y_k = xp.matmul(scores, xp.permute_dims(x_k, (0, 1, 3, 2, 4)))  # (B, NC, K, Q, P)
        for j, k in enumerate(heads):
            y[..., k * p : (k + 1) * p] = y[..., k * p : (k + 1) * p] + y_k[:, :, j, ...]
    return xp.reshape(y, (bsz, nc * q, h, p))[:, :t, ...], _from_rows(xp, s, h)


def _chunk_starts(decay: Any, states: Any, h0: Any) -> tuple[Any, Any]:
    """The state each chunk starts from, ``S_{c-1}`` of ``S_c = decay_c S_{c-1} + states_c``
    from ``S_{-1} = h0``, and the last state: ``decay`` (B, NC, ..., 1, R*P), ``states``
    (B, NC, ..., N, R*P), ``h0`` (B, ..., N, R*P). NumPy-backed arrays take a plain loop that
    keeps each start as it goes; the device backends a parallel scan."""
    xp = namespace(states)
    if not loops_are_cheap(decay, states, h0) or states.shape[1] == 0:
        ends, h_last = scan_parallel(decay, states, h0)  # (B, NC, ..., N, R*P)
        return xp.concat([xp.expand_dims(h0, axis=1), ends[:, :-1, ...]], axis=1), h_last
    starts, h = [], h0
    for c in range(states.shape[1]):
        starts.append(h)
        h = decay[:, c, ...] * h + states[:, c, ...]  # (B, ..., N, R*P)
    return xp.stack(starts, axis=1), h


def _ssd_block(xp: Any, x: Any, dt: Any, a: Any, bm: Any, state: Any) -> tuple[Any, Any, Any]:
    """One block of the recurrence in the (B, G, N, R*P) layout: ``x`` (B, L, H, P), ``dt``
    (B, L, H), ``a`` (H,), ``bm`` (B, L, G, N), ``state`` (B, G, N, R*P) before the block.
    Returns the states after each step (B, L, G, N, R*P), written in place over the inputs
    ``dt x B`` (NumPy-backed arrays only), the decays and ``dt x``, both (B, L, G, 1, R*P)."""
    bsz, steps, h, p = x.shape
    g = bm.shape[2]
    rp = h // g * p
    decay = xp.broadcast_to(xp.exp(dt * a)[..., None], (bsz, steps, h, p))  # (B, L, H, P)
    decay = xp.reshape(decay, (bsz, steps, g, 1, rp))  # (B, L, G, 1, R*P)
    xdt = xp.reshape(x * dt[..., None], (bsz, steps, g, 1, rp))  # (B, L, G, 1, R*P)
    states = outer(bm, xdt[..., 0, :])  # (B, L, G, N, R*P): the inputs
    for j in range(steps):  # in place: row j becomes the state after step j
        row = states[:, j, ...]  # (B, G, N, R*P), a view
        row += decay[:, j, ...] * state
        state = row
    return states, decay, xdt


def _to_rows(xp: Any, h: Any, g: int) -> Any:
    """A state (B, H, P, N) in the (B, G, N, R*P) layout (a transposed view)."""
    bsz, nh, p, n = h.shape
    return xp.permute_dims(xp.reshape(h, (bsz, g, nh // g * p, n)), (0, 1, 3, 2))


def _from_rows(xp: Any, s: Any, h: int, copy: bool = True) -> Any:
    """A state (B, G, N, R*P) back in the (B, H, P, N) layout, as a new array (a view with
    ``copy=False`` where one exists)."""
    bsz, g, n, rp = s.shape
    out = xp.reshape(xp.permute_dims(s, (0, 1, 3, 2)), (bsz, h, rp * g // h, n))
    return xp.asarray(out, copy=True) if copy else out  # (B, H, P, N)


def ssd_blocked(
    x: Any, dt: Any, a: Any, bm: Any, cm: Any, h0: Any, block: int, starts: list | None = None
) -> tuple[Any, Any]:
    """:func:`ssd_chunked`'s result by the recurrence, over blocks of ``block`` steps: the forward
    of training's :func:`_ssd_recomputed` on NumPy-backed arrays.

    Same arguments and result. Each block computes its decays and inputs at once, runs the
    recurrence one step at a time (two array ops per step: no ``Q x Q`` masks, no ``exp`` of a
    segment sum) and reads its states out with one matmul. The running state is kept as
    (B, G, N, R*P), a transposed view of (B, H, P, N), so that every elementwise op runs along
    R*P contiguous numbers rather than N. Each block's states are written in place over its
    inputs, so it takes NumPy-backed arrays only (``loops_are_cheap``; else InputError), and it is
    not for autodiff itself. A ``starts`` list receives the state before each block, (B, G, N, R*P).
    """
    check_numpy_backed("ssd_blocked", x, dt, a, bm, cm, h0)
    xp = namespace(x)
    bsz, t, h, p = x.shape
    state, ys = _to_rows(xp, h0, bm.shape[2]), []  # (B, G, N, R*P)
    for t0 in range(0, t, block):
        sl = slice(t0, min(t0 + block, t))
        if starts is not None:
            starts.append(state)
        states, _, _ = _ssd_block(xp, x[:, sl, ...], dt[:, sl, ...], a, bm[:, sl, ...], state)
        y = cm[:, sl, :, None, :] @ states  # (B, L, G, 1, R*P)
        ys.append(xp.reshape(y, (bsz, y.shape[1], h, p)))  # (B, L, H, P)
        state = xp.asarray(states[:, -1, ...], copy=True)  # (B, G, N, R*P), not a view
    if not ys:
        return x, h0
    return xp.concat(ys, axis=1), _from_rows(xp, state, h)  # (B, T, H, P), (B, H, P, N)


# Numbers per (B, L, G, N, R*P) array of a block in :func:`_ssd_recomputed` (4 MiB of float32).
_GRAD_BLOCK_NUMBERS = 1 << 20


def _ssd_recomputed(x: Any, dt: Any, a: Any, bm: Any, cm: Any, h0: Any) -> tuple[Any, Any]:
    """:func:`ssd_chunked` as one differentiable operation, for training on NumPy-backed arrays.

    The forward is :func:`ssd_blocked` in cache-sized blocks, keeping only the state at the
    start of each; the backward recomputes a block's states from it and runs the adjoint
    recurrence backwards, ``lambda_t = gy_t C_t + exp(dt_{t+1} a) lambda_{t+1}``
    (``lambda`` = dL/dh_t), from which every input's gradient is a product per block. Through
    the tape the SSD would keep every chunk's Q x Q masks and states instead. Same arguments
    and results as :func:`ssd_chunked` (tested equal, with its gradients).
    """
    v = [plain(u) for u in (x, dt, a, bm, cm, h0)]
    bsz, _, h, p = v[0].shape
    block = max(1, _GRAD_BLOCK_NUMBERS // max(1, bsz * h * p * v[3].shape[3]))
    starts: list = []
    y, h_last = ssd_blocked(*v, block, starts)
    inputs = {"x": x, "dt": dt, "a": a, "bm": bm, "cm": cm, "h0": h0}
    return scan_operation((y, h_last), inputs, partial(_ssd_backward, v, starts, block))


def _ssd_backward(v: list, starts: list, block: int, gy: Any, gh: Any) -> dict[str, Any]:
    """Gradients of :func:`_ssd_recomputed`'s inputs given ``gy`` (B, T, H, P) of ``y`` and ``gh``
    (B, H, P, N) of the last state (either may be None: zero)."""
    x, dt, a, bm, cm, _ = v
    xp = namespace(x)
    bsz, t, h, p = x.shape
    g = bm.shape[2]
    rp = h // g * p
    if gy is None:
        gy = xp.zeros_like(x)
    lam_in = xp.zeros_like(starts[0]) if gh is None else _to_rows(xp, gh, g)  # (B, G, N, R*P)
    g_a = xp.zeros_like(a)  # (H,)
    parts: dict[str, list] = {"x": [], "dt": [], "bm": [], "cm": []}
    for k in range(len(starts) - 1, -1, -1):
        sl = slice(k * block, min((k + 1) * block, t))
        xb, dtb, bmb, cmb = x[:, sl, ...], dt[:, sl, ...], bm[:, sl, ...], cm[:, sl, ...]
        hs, decay, xdt = _ssd_block(xp, xb, dtb, a, bmb, starts[k])  # (B, L, G, N|1, R*P)
        steps = hs.shape[1]
        gyb = xp.reshape(gy[:, sl, ...], (bsz, steps, g, 1, rp))  # (B, L, G, 1, R*P)
        lam = outer(cmb, gyb[..., 0, :])  # (B, L, G, N, R*P): gy_t C_t, then lambda (in place)
        last = lam[:, -1, ...]
        last += lam_in  # lambda of the step after the block, already through its decay
        for j in range(steps - 2, -1, -1):
            row = lam[:, j, ...]
            row += decay[:, j + 1, ...] * lam[:, j + 1, ...]
        lam_in = decay[:, 0, ...] * lam[:, 0, ...]  # (B, G, N, R*P): dL/dh before the block
        h_prev = xp.concat([starts[k][:, None, ...], hs[:, :-1, ...]], axis=1)  # (B,L,G,N,RP)
        g_xdt = bmb[:, :, :, None, :] @ lam  # (B, L, G, 1, R*P): sum_n B_n lambda_n
        g_xdt = xp.reshape(g_xdt, (bsz, steps, h, p))  # (B, L, H, P)
        parts["cm"].append((hs @ xp.matrix_transpose(gyb))[..., 0])  # (B, L, G, N)
        parts["bm"].append((lam @ xp.matrix_transpose(xdt))[..., 0])  # (B, L, G, N)
        per_head = xp.reshape(xp.sum(lam * h_prev, axis=3), (bsz, steps, h, p))  # (B, L, H, P)
        g_dta = xp.sum(per_head, axis=-1) * xp.exp(dtb * a)  # (B, L, H): dL/d(dt a)
        parts["dt"].append(g_dta * a + xp.sum(g_xdt * xb, axis=-1))  # (B, L, H)
        parts["x"].append(g_xdt * dtb[..., None])  # (B, L, H, P)
        g_a = g_a + xp.sum(g_dta * dtb, axis=(0, 1))  # (H,)
    out = {key: xp.concat(p[::-1], axis=1) for key, p in parts.items()}
    out["a"] = g_a
    out["h0"] = _from_rows(xp, lam_in, h)  # (B, H, P, N)
    return out


def _ssd_step(x: Any, dt: Any, a: Any, bm: Any, cm: Any, h0: Any) -> tuple[Any, Any]:
    """One step of the recurrence: ``x`` (B, H, P), ``dt`` (B, H), ``bm``/``cm`` (B, G, N).

    Computed per group of heads that share ``B`` and ``C`` (R = H / G heads each), so ``B`` and
    ``C`` broadcast instead of being copied per head, and ``y = h C`` is one matrix-vector
    product per stream and group.
    """
    xp = namespace(x)
    bsz, h, p = x.shape
    g, n = bm.shape[1], bm.shape[2]
    r = h // g
    da = xp.reshape(xp.exp(dt * a), (bsz, g, r, 1, 1))  # (B, G, R, 1, 1)
    xdt = xp.reshape(x * dt[..., None], (bsz, g, r, p, 1))  # (B, G, R, P, 1)
    h1 = da * xp.reshape(h0, (bsz, g, r, p, n)) + xdt * bm[:, :, None, None, :]  # (B,G,R,P,N)
    y = xp.matmul(xp.reshape(h1, (bsz, g, r * p, n)), cm[..., None])  # (B, G, R*P, 1)
    return xp.reshape(y, (bsz, h, p)), xp.reshape(h1, (bsz, h, p, n))


# ---------------------------------------------------------------------------------------------
# the mixer: one function for both paths, which differ in the conv and the SSM kernel


def _time_step(cfg: Config, dt_raw: Any, dt_bias: Any) -> Any:
    """``clamp(softplus(dt + dt_bias), *time_step_limit)``: (..., H)."""
    xp = namespace(dt_raw)
    dt = softplus(dt_raw + dt_bias)  # (..., H)
    lo, hi = cfg.time_step_limit
    if lo > 0.0 or hi < math.inf:
        dt = xp.clip(dt, min=lo, max=hi)
    return dt


def _gated_norm(cfg: Config, y: Any, z: Any, weight: Any) -> Any:
    """MambaRMSNormGated: ``norm(y * silu(z))``, or ``norm(y) * silu(z)`` if norm_before_gate."""
    group = cfg.d_ssm // cfg.n_groups
    eps = cfg.layer_norm_epsilon
    if not cfg.norm_before_gate:
        return gated_rms_norm(y, z, weight, eps, group)
    xp = namespace(y)
    grouped = xp.reshape(y, (*y.shape[:-1], cfg.n_groups, group))  # (..., G, d_ssm/G)
    normed = rms_norm(grouped, xp.ones((group,), dtype=y.dtype), eps)  # (..., G, d_ssm/G)
    return xp.reshape(normed, y.shape) * weight * silu(z)  # (..., d_ssm)


def _mixer(
    cfg: Config, params: dict[str, Any], i: int, u: Any, conv: Any, ssm: Any, sequence: bool
) -> tuple[Any, Any, Any]:
    """The Mamba-2 mixer: ``u`` (B, T, D) if ``sequence`` else (B, D); states in and out."""
    xp = namespace(u)
    pre = f"layers.{i}.mixer."
    m, ds, gn, h = cfg.d_mlp, cfg.d_ssm, cfg.n_groups * cfg.state_size, cfg.num_heads
    lead = tuple(u.shape[:-1])  # (B, T) or (B,)
    zxbcdt = linear(u, params[pre + "in_proj.weight"], params.get(pre + "in_proj.bias"))  # (.., F)
    z = zxbcdt[..., 2 * m : 2 * m + ds]  # (*lead, d_ssm)
    xbc = zxbcdt[..., 2 * m + ds : 2 * m + ds + cfg.conv_dim]  # (*lead, conv_dim)
    dt_raw = zxbcdt[..., 2 * m + ds + cfg.conv_dim :]  # (*lead, H)

    conv_fn = causal_conv1d if sequence else causal_conv1d_step
    w, b = params[pre + "conv1d.weight"], params.get(pre + "conv1d.bias")
    xbc, conv = conv_fn(xbc, w, b, conv)  # (*lead, conv_dim), (B, K-1, conv_dim)
    xbc = silu(xbc)  # (*lead, conv_dim)
    xs = xp.reshape(xbc[..., :ds], (*lead, h, cfg.head_dim))  # (*lead, H, P)
    bm = xp.reshape(xbc[..., ds : ds + gn], (*lead, cfg.n_groups, cfg.state_size))  # (.., G, N)
    cm = xp.reshape(xbc[..., ds + gn :], (*lead, cfg.n_groups, cfg.state_size))  # (.., G, N)
    dt = _time_step(cfg, dt_raw, params[pre + "dt_bias"])  # (*lead, H)
    a = -xp.exp(params[pre + "A_log"])  # (H,)
    skip = params[pre + "D"]  # (H,)

    if sequence:  # the chunked SSD, except for training on NumPy
        path = scan_path(xs, dt, a, bm, cm, ssm) if xs.shape[1] else "chunked"
        if path == "recomputed":  # one operation whose backward recomputes the states
            y, ssm = _ssd_recomputed(xs, dt, a, bm, cm, ssm)  # (B, T, H, P)
        elif path == "blocked":  # inference on NumPy
            chunk = min(cfg.chunk_size, _FACTORED_CHUNK)
            y, ssm = ssd_factored(xs, dt, a, bm, cm, ssm, chunk, skip)  # (B, T, H, P)
        else:  # long chunks only for inference on the device backends
            training = any(map(traced, (xs, dt, a, bm, cm, ssm)))
            chunk = min(cfg.chunk_size, _SHORT_CHUNK) if training else cfg.chunk_size
            y, ssm = ssd_chunked(xs, dt, a, bm, cm, ssm, chunk, skip)  # (B, T, H, P)
    else:
        y, ssm = _ssd_step(xs, dt, a, bm, cm, ssm)  # (B, H, P)
    if not sequence or path == "recomputed":  # ssd_chunked and ssd_factored add the skip
        y = y + xs * skip[:, None]  # (*lead, H, P)
    y = _gated_norm(cfg, xp.reshape(y, (*lead, ds)), z, params[pre + "norm.weight"])  # (.., ds)
    if m:
        y = xp.concat([silu(zxbcdt[..., :m]) * zxbcdt[..., m : 2 * m], y], axis=-1)  # (.., d_in)
    out = linear(y, params[pre + "out_proj.weight"], params.get(pre + "out_proj.bias"))  # (.., D)
    return out, conv, ssm


# ---------------------------------------------------------------------------------------------
# the single step at inference: _mixer's math in fewer array calls, on arrays prepared once


# Streams up to which a step's state update is _ssd_step's, in the state's (B, H, P, N) layout:
# at one stream it took ~0.9x the time of the (G, N, R*P) layout's (no transposes in and out), at
# 4 streams alike, at 16 streams 1.1x (its inner loops run along N numbers, not R*P).
_FEW_STREAMS = 4
# the names a step's layer reads, after its prefix (a prefix ending in "." takes weight or bias)
_STEP_KEYS = ("in_proj.", "out_proj.", "dt_bias")


def _prepare_step(cfg: Config, params: dict[str, Any]) -> tuple[list[dict], tuple, dict]:
    """Per layer, what a step derives from the config and weights alone (cached by
    ``prepared``): ``xp``, the namespace; ``sizes``, the widths and offsets of ``in_proj``'s
    output; ``keys``, the names of the layer's parameters; ``norm`` and ``gated_norm`` (the
    norms for :func:`normed`); ``taps`` (K, conv_dim) the conv weights, time first, and
    ``conv_bias``, both halved (SiLU's input comes out halved, for :func:`silu_of_half`);
    ``a_heads`` (H,) = -exp(A_log) and ``a``, its (G, 1, R, 1) view; ``d`` (H * P,) the skip
    ``D`` repeated over each head's channels; ``half``, a 0-d array of the weights' dtype (at a
    step's sizes an op with a 0-d array costs half one with a Python float); then the final
    norm's :func:`step_norm`, and the projections laid out (in, out) (:func:`step_layouts`).
    At one stream a step's Python work costs as much as its array calls, so the layer reads
    all of this rather than recomputing it (the config's derived sizes are properties,
    ``namespace`` a lookup per call).

    Where both projections of a layer are copies (:func:`step_layouts`), the copies also take
    in what the layer would multiply by around them: ``in_proj`` the pre-norm's weight and the
    gate's halving (:func:`fold_into_in_proj`), ``out_proj`` the gated norm's weight; that
    layer's ``norm`` and ``gated_norm`` then carry no weight, and ``half`` is None. Three array
    calls fewer a layer."""
    xp = namespace(*params.values())
    m, ds, h, g, eps = cfg.d_mlp, cfg.d_ssm, cfg.num_heads, cfg.n_groups, cfg.layer_norm_epsilon
    x0 = 2 * m + ds  # where xBC starts in in_proj's output, after [z_mlp, x_mlp, z]
    sizes = (m, ds, h, cfg.head_dim, g, cfg.state_size, x0, x0 + cfg.conv_dim)
    dtype = params["layers.0.mixer.D"].dtype
    half = xp.asarray(0.5, dtype=dtype)
    layouts = step_layouts(("in_proj.weight", "out_proj.weight"), cfg, params)
    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}.mixer."
        gated = xp.reshape(params[p + "norm.weight"], (g, ds // g))  # (G, d_ssm/G)
        conv_bias = params.get(p + "conv1d.bias")
        skip = xp.broadcast_to(params[p + "D"][:, None], (h, cfg.head_dim))  # (H, P)
        a = -xp.exp(params[p + "A_log"])  # (H,)
        norm = step_norm(params[f"layers.{i}.norm.weight"], eps)  # (D,), 0-d
        gated_norm = step_norm(gated, eps)  # (G, d_ssm/G), 0-d
        folded = p + "in_proj.weight" in layouts and p + "out_proj.weight" in layouts
        if folded:  # the copies take in the norms' weights and the gate's halving
            norm = fold_into_in_proj(layouts, params, p, norm, slice(2 * m, x0))
            layouts[p + "out_proj.weight"][:, m:] *= xp.reshape(gated_norm[0], (ds,))
            gated_norm = (None, *gated_norm[1:])
        layers.append(
            {
                "xp": xp,
                "sizes": sizes,
                "keys": tuple(p + k for k in _STEP_KEYS),
                "norm": norm,
                "gated_norm": gated_norm,
                "taps": halved_taps(params[p + "conv1d.weight"]),  # (K, conv_dim)
                "conv_bias": None if conv_bias is None else conv_bias * 0.5,  # (conv_dim,)
                "a_heads": a,  # (H,)
                "a": xp.reshape(a, (g, 1, h // g, 1)),  # (G, 1, R, 1), a view of a_heads
                "d": xp.reshape(skip, (ds,)) * 1.0,  # (H * P,), a new array
                "half": None if folded else half,
            }
        )
    return layers, step_norm(params["norm_f.weight"], eps), layouts


def _layer_step_prepared(
    cfg: Config, params: dict[str, Any], w: dict[str, Any], x: Any, conv: Any, ssm: Any
) -> tuple[Any, Any, Any]:
    """A layer of :func:`_step_plain`, ``x + out_proj(mixer(RMSNorm(x)))``, on its prepared
    arrays ``w``: ``x`` (B, D), ``conv`` (B, K-1, conv_dim), ``ssm`` (B, H, P, N).

    Up to ``_FEW_STREAMS`` streams, the state update is :func:`_ssd_step`'s, in the state's own
    layout. More streams go in the (G, N, R*P) layout, each operand shaped straight into its
    broadcast shape, in blocks of streams (:func:`in_stream_blocks`); the skip ``D x`` runs over
    (B, H*P) rows.
    """
    xp, (m, ds, h, p, g, n, x0, dt0), (inp, outp, dt_bias) = w["xp"], w["sizes"], w["keys"]
    bsz, r = x.shape[0], h // g
    u = normed(x, w["norm"])  # (B, D)
    zx = linear(u, params[inp + "weight"], params.get(inp + "bias"))  # (B, F)

    xbc, conv = conv_step(zx[:, x0:dt0], w["taps"], conv)  # (B, conv_dim), halved
    xbc = silu_of_half(xbc if w["conv_bias"] is None else xbc + w["conv_bias"])  # (B, conv_dim)
    dt = softplus(zx[:, dt0:] + params[dt_bias])  # (B, H)
    lo, hi = cfg.time_step_limit
    if lo > 0.0 or hi < math.inf:
        dt = xp.clip(dt, min=lo, max=hi)

    xs = xbc[:, :ds]  # (B, H*P)
    if bsz <= _FEW_STREAMS:
        bm = xp.reshape(xbc[:, ds : ds + g * n], (bsz, g, n))  # (B, G, N)
        cm = xp.reshape(xbc[:, ds + g * n :], (bsz, g, n))  # (B, G, N)
        y, ssm = _ssd_step(xp.reshape(xs, (bsz, h, p)), dt, w["a_heads"], bm, cm, ssm)
    else:
        dtg = xp.reshape(dt, (bsz, g, 1, r, 1))  # (B, G, 1, R, 1)
        xdt = xp.reshape(xp.reshape(xs, (bsz, g, 1, r, p)) * dtg, (bsz, g, 1, r * p))
        bm = xp.reshape(xbc[:, ds : ds + g * n], (bsz, g, n, 1))  # (B, G, N, 1)
        cm = xp.reshape(xbc[:, ds + g * n :], (bsz, g, 1, n))  # (B, G, 1, N)
        # spread over P: the decay's product runs along R*P numbers
        decay = xp.asarray(xp.broadcast_to(xp.exp(dtg * w["a"]), (bsz, g, 1, r, p)), copy=True)
        rows = xp.reshape(_to_rows(xp, ssm, g), (bsz, g, n, r, p))  # (B, G, N, R, P)
        rows, y = in_stream_blocks(_state_update, rows, decay, xdt, bm, cm)  # (B,G,N,RP), ..
        ssm = _from_rows(xp, rows, h, copy=False)  # (B, H, P, N)
    y = xp.reshape(y, (bsz, ds)) + xs * w["d"]  # (B, d_ssm): y = h C + D x

    z = zx[:, 2 * m : x0]  # (B, d_ssm), halved already where in_proj's copy folds it in
    gate = silu_of_half(z if w["half"] is None else z * w["half"])  # (B, d_ssm)
    y = y if cfg.norm_before_gate else y * gate
    y = xp.reshape(normed(xp.reshape(y, (bsz, g, ds // g)), w["gated_norm"]), (bsz, ds))
    y = y * gate if cfg.norm_before_gate else y
    if m:
        y = xp.concat([silu(zx[:, :m]) * zx[:, m : 2 * m], y], axis=-1)  # (B, d_inner)
    out = linear(y, params[outp + "weight"], params.get(outp + "bias"))  # (B, D)
    return x + out, conv, ssm  # (B, D), (B, K-1, conv_dim), (B, H, P, N)


def _state_update(
    ssm: Any, decay: Any, xdt: Any, bm: Any, cm: Any, out: tuple | None = None
) -> tuple[Any, Any] | None:
    """``h = decay h + (dt x) B`` and ``y = C^T h`` for a step, in the (G, N, R*P) layout:
    ``ssm`` (B, G, N, R, P), ``decay`` (B, G, 1, R, 1) per head or (B, G, 1, R, P) spread over
    each head's P numbers (its product then runs along R*P contiguous numbers), ``xdt``
    (B, G, 1, R*P), ``bm`` (B, G, N, 1), ``cm`` (B, G, 1, N). Returns the new state
    (B, G, N, R*P) and ``y`` (B, G, 1, R*P): every other elementwise op runs along R*P numbers.

    With ``out`` (NumPy arrays of those shapes, :func:`in_stream_blocks`) it writes them instead:
    the outer product ``B (dt x)`` by ``einsum`` straight into the new state, then the decayed
    state added to it."""
    xp, (bsz, g, n, r, p) = namespace(ssm), ssm.shape
    if out is None:
        new = xp.reshape(decay * ssm, (bsz, g, n, r * p)) + bm * xdt
        return new, cm @ new  # (B, G, N, R*P), (B, G, 1, R*P)
    new, y = out
    xp.einsum("bgn,bgk->bgnk", bm[..., 0], xdt[:, :, 0], out=new)
    new += xp.reshape(decay * ssm, new.shape)
    y[...] = cm @ new
    return None


def step(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """One time step, O(1) in time: ``x`` (B, D) -> ``y`` (B, D) after ``norm_f``, new state.

    At inference it runs on arrays derived from the weights once (``_prepare_step``, cached per
    set of weights); under autodiff it is the plain ``_mixer`` (tested equal).
    """
    return run_mamba_step(
        cfg, params, x, state,
        prepare=_prepare_step, fast_layer=_layer_step_prepared, plain=_step_plain,
    )  # fmt: skip


def _step_plain(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """:func:`step` without the prepared arrays (the path gradients go through)."""
    return run_mamba_stack(cfg, params, x, state, partial(_mixer, sequence=False))


def forward(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """A sequence by chunked SSD: ``x`` (B, T, D) -> ``y`` (B, T, D), final state.

    ``state`` (default zeros) is the state before ``x``; the returned one is the state after it,
    so ``forward(x[:, :k])`` then ``forward(x[:, k:], state)`` equals ``forward(x)``.
    """
    if state is None:
        state = init_state(cfg, x.shape[0], xp=namespace(x), dtype=x.dtype)
    return run_mamba_sequence(cfg, params, x, state, partial(_mixer, sequence=True))


# ---------------------------------------------------------------------------------------------
# reference checkpoints (transformers Mamba2Model / Mamba2ForCausalLM, mamba_ssm)


def config_from_checkpoint(tensors: dict[str, Any], config_json: dict | None = None) -> Config:
    """The Config of a checkpoint: sizes from the tensor shapes, the rest from ``config_json``.

    The tensors fix ``G * N`` but not ``G`` and ``N`` apart: those come from config.json's
    ``state_size`` or ``n_groups`` (mamba_ssm's ``d_state`` / ``ngroups`` also work), else
    ``state_size = 128`` (the default of both references) is assumed.
    """
    t = strip_prefix(tensors)
    in_proj = need(t, "layers.0.mixer.in_proj.weight", 2)
    hidden, d_proj = int(in_proj.shape[1]), int(in_proj.shape[0])
    heads = int(need(t, "layers.0.mixer.A_log", 1).shape[0])
    d_ssm = int(need(t, "layers.0.mixer.norm.weight", 1).shape[0])
    conv_w = need(t, "layers.0.mixer.conv1d.weight", 3)
    gn = (int(conv_w.shape[0]) - d_ssm) // 2
    d_inner = (d_proj - 2 * gn - heads) // 2
    if d_ssm % heads or d_inner % hidden:
        raise WeightsError(
            f"tensor shapes are inconsistent: d_ssm={d_ssm}, heads={heads}, "
            f"d_inner={d_inner}, hidden_size={hidden}"
        )
    declared = hf_names(config_json)
    for name in ("state_size", "n_groups"):
        if name in declared and not is_positive_int(declared[name]):
            raise WeightsError(
                f"config.json: {name} must be a positive integer, got {declared[name]!r}"
            )
    name = "n_groups" if "n_groups" in declared and "state_size" not in declared else "state_size"
    value = declared.get(name, _DEFAULT_STATE_SIZE)  # the other one is gn // value
    if not gn or gn % value:
        source = "config.json's" if name in declared else "the default"
        raise WeightsError(
            f"the weights have n_groups * state_size = {gn} (conv1d's channels less d_ssm, "
            f"halved), which {source} {name}={value} does not divide"
        )
    n = value if name == "state_size" else gn // value
    inferred = {
        "hidden_size": hidden,
        "expand": d_inner // hidden,
        "num_heads": heads,
        "head_dim": d_ssm // heads,
        "state_size": n,
        "n_groups": gn // n,
        "num_hidden_layers": count_layers(t),
        "conv_kernel": int(conv_w.shape[-1]),
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
    "ssd_blocked",
    "ssd_chunked",
    "state_numel",
    "step",
]
