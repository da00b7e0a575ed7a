"""RWKV-6 "Finch": data-dependent token shift and decay, matrix-valued state per head.

Glossary (paper symbol -> code name), per layer and head ``h``:

- ``x_t`` -> ``xx``: the block input after ``ln1`` (``ln2`` in the channel mix); ``x_{t-1}`` is
  carried in the state as ``blocks.{i}.att.shift`` (``blocks.{i}.ffn.shift``).
- ``mu_x, mu_w, mu_k, mu_v, mu_r, mu_g`` -> ``time_maa_x/w/k/v/r/g``; the data-dependent lerp
  LoRA ``A, B`` -> ``time_maa_w1`` (C, 5 * D_mix), ``time_maa_w2`` (5, D_mix, C).
- ``d`` (decay base) -> ``time_decay``; decay LoRA -> ``time_decay_w1``, ``time_decay_w2``;
  ``w_t = exp(-exp(d_t))`` per channel, kept as ``logw = -exp(d_t)``.
- ``u`` (bonus) -> ``time_faaaa`` (H, N); ``r, k, v, g`` -> ``receptance/key/value/gate``.
- ``S_t`` (N x N, key index x value index) -> ``wkv`` state ``blocks.{i}.att.wkv`` (B, H, N, N):
  ``S_t = diag(w_t) S_{t-1} + k_t^T v_t``, ``o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)``.
- ``GroupNorm`` over heads -> ``ln_x`` (eps ``1e-5 * head_size_divisor**2`` = 64e-5).
- Channel mix: ``sigmoid(W_r x_r) * W_v relu(W_k x_k)^2`` -> ``ffn.receptance/key/value``.

Shapes: B batch, T time, C = ``n_embd``, A = ``dim_att`` = H * N, N = ``head_size``,
F = ``dim_ffn``. Parameter names and layouts are those of BlinkDL's x060 checkpoints
(``blocks.{i}.att.time_maa_x`` is (1, 1, C), ``time_decay`` (1, 1, A), ...): the ``rwkv``
package reshapes/exponentiates some of them at load time; we keep the raw tensors and do that
math at run time. Layer 0 applies ``blocks.0.ln0`` to the input (the role of the embedding).

Sequence path. On NumPy-backed arrays ``forward`` runs :func:`wkv_step` over the steps
(:func:`wkv_recurrent`: on a CPU that is faster than chunks), and under autodiff that loop is one
operation whose backward recomputes blocks of states and runs the adjoint recurrence. The device
backends take chunks of ``chunk_size`` steps. Inside a chunk all outputs
come from one masked (c, c) "attention" whose decay factors ``prod_{i<l<j} w_l`` are segment sums
of ``logw`` built with one ``cumulative_sum`` over a masked (c+1, c+1) copy (as ``segsum`` in
state-spaces ``ssd_minimal.py``): every exponent is <= 0, and no large prefix sums are subtracted
from each other, so it is exact and stable for any decay (w -> 0 included). The state is carried
from chunk to chunk with one matrix product; only that loop over chunks is in Python.

References:
- B. Peng et al., "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence",
  arXiv:2404.05892 (2024).
- BlinkDL/RWKV-LM ``RWKV-v5/src/model.py`` (``RWKV_Tmix_x060``, ``RWKV_CMix_x060``, init) and
  the ``rwkv`` pip package ``rwkv/model.py`` (``att_one_v6_0`` / ``att_seq_v6_0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from kizzasi_lite.autodiff import plain
from kizzasi_lite.backends import namespace
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models._common import (
    DictConfig,
    check_sizes,
    find_prefix,
    known_fields,
    resolve_dtype,
    scan_operation,
    scan_path,
    select_params,
    step_layouts,
    traced,
    with_step_layouts,
)
from kizzasi_lite.nn import group_norm, layer_norm, linear, previous_tokens, sigmoid, silu
from kizzasi_lite.nn.init import orthogonal

# other spellings of our config fields (transformers' remote-code Rwkv6Config, RWKV-LM args)
_ALIASES = {
    "hidden_size": "n_embd",
    "num_hidden_layers": "n_layer",
    "attention_hidden_size": "dim_att",
    "intermediate_size": "dim_ffn",
    "head_size_a": "head_size",
}
_MAA = ("w", "k", "v", "r", "g")  # order of the five LoRA outputs of time_maa_w2


@dataclass(frozen=True)
class Config(DictConfig):
    """RWKV-6 sizes, named as in BlinkDL's RWKV-LM (``from_dict`` also takes HF names)."""

    n_embd: int = 256  # C
    n_layer: int = 4
    head_size: int = 64  # N
    dim_att: int | None = None  # A = H * N; None -> n_embd
    dim_ffn: int | None = None  # F; None -> int(3.5 * n_embd) // 32 * 32
    time_mix_extra_dim: int | None = None  # D_mix; None -> 32 (64 when n_embd == 4096)
    time_decay_extra_dim: int | None = None  # D_decay; None -> 64 (128 when n_embd == 4096)
    head_size_divisor: int = 8  # ln_x eps = 1e-5 * head_size_divisor**2
    layer_norm_epsilon: float = 1e-5  # ln0/ln1/ln2/ln_out (torch's LayerNorm default)
    chunk_size: int = 32  # time steps per chunk in forward() on device backends

    def __post_init__(self) -> None:
        big = self.n_embd == 4096
        derived = {
            "dim_att": self.n_embd,
            "dim_ffn": int(self.n_embd * 3.5) // 32 * 32 or int(self.n_embd * 3.5),
            "time_mix_extra_dim": 64 if big else 32,
            "time_decay_extra_dim": 128 if big else 64,
        }
        for name, value in derived.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        check_sizes(self, numbers=("layer_norm_epsilon",))
        if self.dim_att % self.head_size:
            raise ConfigError(
                f"dim_att ({self.dim_att}) must be a multiple of head_size ({self.head_size})"
            )

    @property
    def num_heads(self) -> int:
        return self.dim_att // self.head_size

    @property
    def ln_x_eps(self) -> float:
        return 1e-5 * self.head_size_divisor**2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a dict; HF/RWKV-LM spellings are accepted, unknown keys ignored."""
        renamed = {_ALIASES.get(k, k): v for k, v in d.items() if v is not None}
        return cls(**known_fields(cls, renamed))


# ---------------------------------------------------------------------------- parameters
def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter name -> shape (x060 checkpoint layout, no prefix)."""
    C, A, F, H, N = cfg.n_embd, cfg.dim_att, cfg.dim_ffn, cfg.num_heads, cfg.head_size
    Dm, Dd = cfg.time_mix_extra_dim, cfg.time_decay_extra_dim
    shapes: dict[str, tuple[int, ...]] = {"blocks.0.ln0.weight": (C,), "blocks.0.ln0.bias": (C,)}
    for i in range(cfg.n_layer):
        b = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            shapes[f"{b}{ln}.weight"] = (C,)
            shapes[f"{b}{ln}.bias"] = (C,)
        for m in ("x", *_MAA):
            shapes[f"{b}att.time_maa_{m}"] = (1, 1, C)
        shapes[f"{b}att.time_maa_w1"] = (C, 5 * Dm)
        shapes[f"{b}att.time_maa_w2"] = (5, Dm, C)
        shapes[f"{b}att.time_decay"] = (1, 1, A)
        shapes[f"{b}att.time_decay_w1"] = (C, Dd)
        shapes[f"{b}att.time_decay_w2"] = (Dd, A)
        shapes[f"{b}att.time_faaaa"] = (H, N)
        for name in ("receptance", "key", "value", "gate"):
            shapes[f"{b}att.{name}.weight"] = (A, C)
        shapes[f"{b}att.output.weight"] = (C, A)
        shapes[f"{b}att.ln_x.weight"] = (A,)
        shapes[f"{b}att.ln_x.bias"] = (A,)
        shapes[f"{b}ffn.time_maa_k"] = (1, 1, C)
        shapes[f"{b}ffn.time_maa_r"] = (1, 1, C)
        shapes[f"{b}ffn.key.weight"] = (F, C)
        shapes[f"{b}ffn.receptance.weight"] = (C, C)
        shapes[f"{b}ffn.value.weight"] = (C, F)
    shapes["ln_out.weight"] = (C,)
    shapes["ln_out.bias"] = (C,)
    return shapes


def init_params(cfg: Config, rng: Any, dtype: Any = None) -> dict[str, Any]:
    """Fresh weights as RWKV-LM's x060 initialises them (``__init__`` + ``generate_init_weight``).

    Linear layers are orthogonal (gain 1; 0.1 for ``att.key``/``att.gate``; zero for
    ``att.output``, ``ffn.value`` and ``ffn.receptance``), ``ln_x.weight = ((1+i)/L)**0.7``.
    """
    xp = rng.xp
    dtype = resolve_dtype(xp, dtype)
    C, A, F, H, N, L = (
        cfg.n_embd,
        cfg.dim_att,
        cfg.dim_ffn,
        cfg.num_heads,
        cfg.head_size,
        cfg.n_layer,
    )
    Dm, Dd = cfg.time_mix_extra_dim, cfg.time_decay_extra_dim

    def vec(values: list[float], shape: tuple[int, ...]) -> Any:
        return xp.reshape(xp.asarray(values, dtype=dtype), shape)

    ones, zeros = xp.ones((C,), dtype=dtype), xp.zeros((C,), dtype=dtype)
    p: dict[str, Any] = {"blocks.0.ln0.weight": ones, "blocks.0.ln0.bias": zeros}
    ddd = [c / C for c in range(C)]
    for i in range(L):
        b = f"blocks.{i}."
        r01 = i / (L - 1) if L > 1 else 0.0  # 0 -> 1 over the layers
        r10 = 1.0 - i / L  # 1 -> ~0
        for ln in ("ln1", "ln2"):
            p[f"{b}{ln}.weight"], p[f"{b}{ln}.bias"] = ones, zeros
        maa = {
            "x": [1.0 - d**r10 for d in ddd],
            "w": [1.0 - d**r10 for d in ddd],
            "k": [1.0 - d**r10 for d in ddd],
            "v": [1.0 - (d**r10 + 0.3 * r01) for d in ddd],
            "r": [1.0 - d ** (0.5 * r10) for d in ddd],
            "g": [1.0 - d ** (0.5 * r10) for d in ddd],
        }
        for m, values in maa.items():
            p[f"{b}att.time_maa_{m}"] = vec(values, (1, 1, C))  # (1, 1, C)
        p[f"{b}att.time_maa_w1"] = xp.zeros((C, 5 * Dm), dtype=dtype)
        p[f"{b}att.time_maa_w2"] = rng.uniform((5, Dm, C), -0.01, 0.01, dtype=dtype)
        den = max(A - 1, 1)
        decay = [-6.0 + 5.0 * (n / den) ** (0.7 + 1.3 * r01) for n in range(A)]
        p[f"{b}att.time_decay"] = vec(decay, (1, 1, A))  # (1, 1, A)
        p[f"{b}att.time_decay_w1"] = xp.zeros((C, Dd), dtype=dtype)
        p[f"{b}att.time_decay_w2"] = rng.uniform((Dd, A), -0.01, 0.01, dtype=dtype)
        bonus = [r01 * (1.0 - n / den) + ((n + 1) % 3 - 1) * 0.1 for n in range(A)]
        p[f"{b}att.time_faaaa"] = vec(bonus, (H, N))  # (H, N)
        for name, gain in (("receptance", 1.0), ("key", 0.1), ("value", 1.0), ("gate", 0.1)):
            p[f"{b}att.{name}.weight"] = orthogonal(rng, A, C, gain, dtype)  # (A, C)
        p[f"{b}att.output.weight"] = xp.zeros((C, A), dtype=dtype)
        p[f"{b}att.ln_x.weight"] = xp.full((A,), ((1 + i) / L) ** 0.7, dtype=dtype)
        p[f"{b}att.ln_x.bias"] = xp.zeros((A,), dtype=dtype)
        p[f"{b}ffn.time_maa_k"] = vec([1.0 - d**r10 for d in ddd], (1, 1, C))
        p[f"{b}ffn.time_maa_r"] = vec([1.0 - d**r10 for d in ddd], (1, 1, C))
        p[f"{b}ffn.key.weight"] = orthogonal(rng, F, C, 1.0, dtype)  # (F, C)
        p[f"{b}ffn.receptance.weight"] = xp.zeros((C, C), dtype=dtype)
        p[f"{b}ffn.value.weight"] = xp.zeros((C, F), dtype=dtype)
    p["ln_out.weight"], p["ln_out.bias"] = ones, zeros
    return p


# ---------------------------------------------------------------------------- state
def init_state(cfg: Config, batch: int, *, xp: Any, dtype: Any = None) -> dict[str, Any]:
    """Zero state of ``batch`` streams: per layer the two token shifts (B, C) and S (B, H, N, N)."""
    dtype = resolve_dtype(xp, dtype)
    C, H, N = cfg.n_embd, cfg.num_heads, cfg.head_size
    state = {}
    for i in range(cfg.n_layer):
        state[f"blocks.{i}.att.shift"] = xp.zeros((batch, C), dtype=dtype)  # (B, C)
        state[f"blocks.{i}.att.wkv"] = xp.zeros((batch, H, N, N), dtype=dtype)  # (B, H, N, N)
        state[f"blocks.{i}.ffn.shift"] = xp.zeros((batch, C), dtype=dtype)  # (B, C)
    return state


def state_numel(cfg: Config) -> int:
    """Numbers in one stream's state: ``n_layer * (2 * C + H * N * N)``."""
    return cfg.n_layer * (2 * cfg.n_embd + cfg.num_heads * cfg.head_size**2)


# ---------------------------------------------------------------------------- blocks
def _time_mix_inputs(cfg: Config, p: dict, b: str, xx: Any, prev: Any) -> tuple:
    """Data-dependent lerps and projections of ``xx`` (B, T, C) with last token ``prev`` (B, C).

    Returns ``r, k, v`` (B, T, H, N), ``g`` (B, T, A) after SiLU, ``logw`` (B, T, H, N) <= 0.
    """
    xp = namespace(xx)
    B, T, _ = xx.shape
    H, N, Dm = cfg.num_heads, cfg.head_size, cfg.time_mix_extra_dim
    dx = previous_tokens(xx, prev) - xx  # (B, T, C)
    xxx = xx + dx * p[f"{b}time_maa_x"]  # (B, T, C)
    lora = xp.tanh(xp.matmul(xxx, p[f"{b}time_maa_w1"]))  # (B, T, 5 * Dm)
    lora = xp.permute_dims(xp.reshape(lora, (B, T, 5, Dm)), (2, 0, 1, 3))  # (5, B, T, Dm)
    mix = xp.matmul(lora, xp.expand_dims(p[f"{b}time_maa_w2"], axis=1))  # (5, B, T, C)
    lerp = {m: xx + dx * (p[f"{b}time_maa_{m}"] + mix[j, ...]) for j, m in enumerate(_MAA)}
    r = linear(lerp["r"], p[f"{b}receptance.weight"])  # (B, T, A)
    k = linear(lerp["k"], p[f"{b}key.weight"])  # (B, T, A)
    v = linear(lerp["v"], p[f"{b}value.weight"])  # (B, T, A)
    g = silu(linear(lerp["g"], p[f"{b}gate.weight"]))  # (B, T, A)
    ww = xp.tanh(xp.matmul(lerp["w"], p[f"{b}time_decay_w1"]))  # (B, T, D_decay)
    ww = xp.matmul(ww, p[f"{b}time_decay_w2"])  # (B, T, A)
    logw = -xp.exp(p[f"{b}time_decay"] + ww)  # (B, T, A): log of w_t = exp(-exp(d_t))
    heads = (B, T, H, N)
    return (
        xp.reshape(r, heads),
        xp.reshape(k, heads),
        xp.reshape(v, heads),
        g,
        xp.reshape(logw, heads),
    )


def _time_mix_out(cfg: Config, p: dict, b: str, o: Any, g: Any) -> Any:
    """``W_o (GroupNorm(o) * g)``: ``o`` (B, T, H, N), ``g`` (B, T, A) -> (B, T, C)."""
    xp = namespace(o)
    B, T = o.shape[0], o.shape[1]
    o = xp.reshape(o, (B, T, cfg.dim_att))  # (B, T, A)
    o = group_norm(o, p[f"{b}ln_x.weight"], p[f"{b}ln_x.bias"], cfg.num_heads, cfg.ln_x_eps)
    return linear(o * g, p[f"{b}output.weight"])  # (B, T, C)


def _channel_mix(p: dict, b: str, xx: Any, prev: Any) -> Any:
    """``sigmoid(W_r x_r) * W_v relu(W_k x_k)^2`` of ``xx`` (B, T, C) -> (B, T, C)."""
    xp = namespace(xx)
    dx = previous_tokens(xx, prev) - xx  # (B, T, C)
    kx = xx + dx * p[f"{b}time_maa_k"]  # (B, T, C)
    rx = xx + dx * p[f"{b}time_maa_r"]  # (B, T, C)
    k = linear(kx, p[f"{b}key.weight"])  # (B, T, F)
    k = xp.maximum(k, xp.zeros_like(k))  # (B, T, F)
    return sigmoid(linear(rx, p[f"{b}receptance.weight"])) * linear(k * k, p[f"{b}value.weight"])


# ---------------------------------------------------------------------------- WKV
def wkv_step(r: Any, k: Any, v: Any, logw: Any, u: Any, s: Any) -> tuple[Any, Any]:
    """One step: ``r, k, v, logw`` (B, H, N), ``u`` (H, N), ``s`` (B, H, N, N) -> o (B, H, N), s."""
    xp = namespace(r, s)
    kv = xp.expand_dims(k, axis=-1) * xp.expand_dims(v, axis=-2)  # (B, H, N, N)
    y = xp.expand_dims(u, axis=-1) * kv + s  # (B, H, N, N)
    o = xp.matmul(xp.expand_dims(r, axis=-2), y)[..., 0, :]  # (B, H, N)
    s = kv + xp.expand_dims(xp.exp(logw), axis=-1) * s  # (B, H, N, N)
    return o, s


def wkv_chunk(r: Any, k: Any, v: Any, logw: Any, u: Any, s: Any) -> tuple[Any, Any]:
    """One chunk of c steps at once: ``r, k, v, logw`` (B, H, c, N), ``s`` (B, H, N, N).

    Returns the outputs (B, H, c, N) and the state after the chunk. With
    ``seg[q, p] = sum_{p <= l < q} logw_l`` (one cumulative sum over a masked copy):
    ``o_j = (r_j e^{seg[j,0]}) S + sum_{i<j} (r_j e^{seg[j,i+1]} k_i) v_i + (r_j u k_j) v_j`` and
    ``S' = e^{seg[c,0]} S + sum_i (k_i e^{seg[c,i+1]})^T v_i``.
    """
    xp = namespace(r, s)
    B, H, c, N = r.shape
    dt = r.dtype
    lw = xp.concat([xp.zeros((B, H, 1, N), dtype=dt), logw], axis=2)  # (B, H, c+1, N)
    pos = xp.arange(c + 1)
    below = xp.reshape(pos, (c + 1, 1, 1)) > xp.reshape(pos, (1, c + 1, 1))  # (c+1, c+1, 1)
    zero = xp.zeros((), dtype=dt)
    masked = xp.where(below, xp.expand_dims(lw, axis=3), zero)  # (B, H, c+1, c+1, N)
    seg = xp.cumulative_sum(masked, axis=2)  # (B, H, c+1, c+1, N): seg[q, p], 0 where q <= p
    j = xp.reshape(pos[:c], (c, 1, 1))  # (c, 1, 1) output step
    i = xp.reshape(pos[:c], (1, c, 1))  # (1, c, 1) input step
    u5 = xp.reshape(u, (1, H, 1, 1, N))  # (1, H, 1, 1, N)
    past = xp.exp(seg[:, :, :c, 1:, :])  # (B, H, c, c, N): [j, i] = prod_{i<l<j} w_l
    decay = xp.where(i < j, past, xp.where(i == j, u5, zero))  # (B, H, c, c, N)
    att = xp.sum(
        xp.expand_dims(r, axis=3) * xp.expand_dims(k, axis=2) * decay, axis=-1
    )  # (B,H,c,c)
    o = xp.matmul(att, v) + xp.matmul(r * xp.exp(seg[:, :, :c, 0, :]), s)  # (B, H, c, N)
    k_end = k * xp.exp(seg[:, :, c, 1:, :])  # (B, H, c, N)
    s = xp.expand_dims(xp.exp(seg[:, :, c, 0, :]), axis=-1) * s  # (B, H, N, N)
    s = s + xp.matmul(xp.matrix_transpose(k_end), v)  # (B, H, N, N)
    return o, s


def wkv_sequence(r: Any, k: Any, v: Any, logw: Any, u: Any, s: Any, chunk: int) -> tuple:
    """All T steps, ``chunk`` at a time: ``r, k, v, logw`` (B, T, H, N) -> o (B, T, H, N), s."""
    xp = namespace(r, s)
    T = r.shape[1]
    r, k, v, logw = (xp.permute_dims(a, (0, 2, 1, 3)) for a in (r, k, v, logw))  # (B, H, T, N)
    outs = []
    for t0 in range(0, T, chunk):
        part = (slice(None), slice(None), slice(t0, min(t0 + chunk, T)), slice(None))
        o, s = wkv_chunk(r[part], k[part], v[part], logw[part], u, s)
        outs.append(o)
    o = xp.concat(outs, axis=2)  # (B, H, T, N)
    return xp.permute_dims(o, (0, 2, 1, 3)), s  # (B, T, H, N), (B, H, N, N)


# Numbers of the states a block of :func:`wkv_recurrent`'s backward recomputes and keeps
# (16 MiB of float32): the forward keeps only each block's first state.
_GRAD_BLOCK_NUMBERS = 1 << 22


def wkv_recurrent(r: Any, k: Any, v: Any, logw: Any, u: Any, s: Any) -> tuple[Any, Any]:
    """:func:`wkv_sequence` by :func:`wkv_step` over the steps: the NumPy path, inference and
    training. Same arguments (no chunk) and results.

    On a CPU the (B, H, c, c, N) decays of a chunk cost more than the c steps they replace
    (2x at one stream, 4x at 32). Under autodiff it is one differentiable operation: the forward
    keeps the state at the start of each block of steps; the backward recomputes a block's
    states from it and runs the adjoint recurrence ``lambda_{t-1} = diag(w_t) lambda_t + r_t^T
    go_t`` (``lambda_t`` = dL/dS_t) backwards, from which each step's gradients are a few
    products of (N, N) matrices with vectors. Through the tape every chunk's (c, c, N) decays
    would be kept instead (tested equal to :func:`wkv_sequence`'s gradients).
    """
    if r.shape[1] == 0:
        return r, s
    inputs = {"r": r, "k": k, "v": v, "logw": logw, "u": u, "s": s}
    pr, pk, pv, plw, pu, state = (plain(a) for a in inputs.values())
    xp = namespace(pr, state)
    bsz, t, h, n = pr.shape
    keep = any(map(traced, inputs.values()))
    block = max(1, _GRAD_BLOCK_NUMBERS // max(1, bsz * h * n * n))
    outs, starts = [], []
    for i in range(t):
        if keep and i % block == 0:
            starts.append(state)
        o, state = wkv_step(pr[:, i, ...], pk[:, i, ...], pv[:, i, ...], plw[:, i, ...], pu, state)
        outs.append(o)
    y = xp.stack(outs, axis=1)  # (B, T, H, N)
    if not keep:
        return y, state
    backward = partial(_wkv_backward, (pr, pk, pv, plw, pu), starts, block)
    return scan_operation((y, state), inputs, backward)


def _wkv_backward(args: tuple, starts: list, block: int, gy: Any, gs: Any) -> dict[str, Any]:
    """Gradients of :func:`wkv_recurrent`'s inputs given ``gy`` (B, T, H, N) of the outputs and
    ``gs`` (B, H, N, N) of the last state (either may be None: zero)."""
    r, k, v, logw, u = args
    xp = namespace(r)
    t = r.shape[1]
    gy = xp.zeros_like(r) if gy is None else gy
    lam = xp.zeros_like(starts[0]) if gs is None else gs  # dL/dS after the last step
    g_u, rows = xp.zeros_like(u), {"r": [], "k": [], "v": [], "logw": []}
    for b in range(len(starts) - 1, -1, -1):
        t0, t1 = b * block, min((b + 1) * block, t)
        before = [starts[b]]  # the state before each step of the block
        for i in range(t0, t1 - 1):
            parts = (a[:, i, ...] for a in (r, k, v, logw))
            before.append(wkv_step(*parts, u, before[-1])[1])
        for i in range(t1 - 1, t0 - 1, -1):  # lam = dL/dS_i here
            s0, go = before[i - t0], gy[:, i, ...]  # (B, H, N, N), (B, H, N)
            ri, ki, vi, wi = r[:, i, ...], k[:, i, ...], v[:, i, ...], xp.exp(logw[:, i, ...])
            c = xp.sum(vi * go, axis=-1, keepdims=True)  # (B, H, 1): v_t . go_t (the bonus)
            uk = u * ki  # (B, H, N)
            rows["r"].append((s0 @ go[..., None])[..., 0] + uk * c)
            rows["k"].append(u * ri * c + (lam @ vi[..., None])[..., 0])
            rows["v"].append(
                xp.sum(ri * uk, axis=-1, keepdims=True) * go + (ki[..., None, :] @ lam)[..., 0, :]
            )
            rows["logw"].append(wi * xp.sum(lam * s0, axis=-1))
            g_u = g_u + xp.sum(ri * ki * c, axis=0)  # (H, N)
            lam = wi[..., None] * lam + ri[..., None] * go[..., None, :]  # dL/dS_{i-1}
    out = {key: xp.stack(rows[key][::-1], axis=1) for key in rows}  # (B, T, H, N) each
    out["u"], out["s"] = g_u, lam
    return out


# ---------------------------------------------------------------------------- model
def _run(cfg: Config, params: dict, x: Any, state: dict | None, single: bool) -> tuple:
    """Shared body of :func:`step` (``single``: T == 1, recurrent WKV) and :func:`forward`."""
    xp = namespace(x)
    if state is None:
        state = init_state(cfg, x.shape[0], xp=xp, dtype=x.dtype)
    eps = cfg.layer_norm_epsilon
    h = layer_norm(x, params["blocks.0.ln0.weight"], params["blocks.0.ln0.bias"], eps)
    xp = namespace(h)  # the params' namespace when they carry gradients (autodiff)
    new = {}
    for i in range(cfg.n_layer):
        b = f"blocks.{i}."
        xx = layer_norm(h, params[f"{b}ln1.weight"], params[f"{b}ln1.bias"], eps)  # (B, T, C)
        att, s0 = f"{b}att.", state[f"{b}att.wkv"]
        r, k, v, g, logw = _time_mix_inputs(cfg, params, att, xx, state[f"{b}att.shift"])
        u = params[f"{att}time_faaaa"]
        if single:
            o, s = wkv_step(r[:, 0, ...], k[:, 0, ...], v[:, 0, ...], logw[:, 0, ...], u, s0)
            o = xp.expand_dims(o, axis=1)  # (B, 1, H, N)
        elif scan_path(r, k, v, logw, u, s0) != "chunked":  # NumPy: step by step
            o, s = wkv_recurrent(r, k, v, logw, u, s0)
        else:
            o, s = wkv_sequence(r, k, v, logw, u, s0, cfg.chunk_size)
        h = h + _time_mix_out(cfg, params, att, o, g)
        new[f"{b}att.shift"], new[f"{b}att.wkv"] = xx[:, -1, :], s
        xx = layer_norm(h, params[f"{b}ln2.weight"], params[f"{b}ln2.bias"], eps)  # (B, T, C)
        h = h + _channel_mix(params, f"{b}ffn.", xx, state[f"{b}ffn.shift"])
        new[f"{b}ffn.shift"] = xx[:, -1, :]
    y = layer_norm(h, params["ln_out.weight"], params["ln_out.bias"], eps)  # (B, T, C)
    return y, new


# the weights a step reads through ``linear``, laid out (in, out) for it (:func:`step_layouts`)
_STEP_LAYOUTS = partial(
    step_layouts,
    (".receptance.weight", ".key.weight", ".value.weight", ".gate.weight", ".output.weight"),
)


def step(cfg: Config, params: dict, x: Any, state: dict) -> tuple[Any, dict]:
    """One time step: ``x`` (B, C) -> ``y`` (B, C) after ``ln_out``, and the next state."""
    xp = namespace(x)
    params = with_step_layouts(_STEP_LAYOUTS, cfg, params, x, state)  # NumPy: (in, out) layouts
    y, state = _run(cfg, params, xp.expand_dims(x, axis=1), state, single=True)
    return y[:, 0, :], state


def forward(cfg: Config, params: dict, x: Any, state: dict | None = None) -> tuple[Any, dict]:
    """A sequence: ``x`` (B, T, C) -> ``y`` (B, T, C) and the final state."""
    if x.shape[1] == 0:
        xp = namespace(x)
        return x, state or init_state(cfg, x.shape[0], xp=xp, dtype=x.dtype)
    return _run(cfg, params, x, state, single=False)


# ---------------------------------------------------------------------------- checkpoints
def _prefix(tensors: dict[str, Any]) -> str:
    error = "not an RWKV-6 checkpoint: no 'blocks.0.ln1.weight' tensor"
    return find_prefix(tensors, "blocks.0.ln1.weight", error)


def config_from_checkpoint(tensors: dict[str, Any], config_json: dict | None = None) -> Config:
    """Infer the sizes from the tensor shapes (as the ``rwkv`` package does)."""
    pre = _prefix(tensors)

    def shape(name: str, ndim: int = 1) -> tuple[int, ...]:  # at least ndim axes
        if pre + name not in tensors:
            raise WeightsError(f"missing tensor {pre + name!r}: cannot infer the RWKV-6 config")
        got = tuple(tensors[pre + name].shape)
        if len(got) < ndim:
            raise WeightsError(f"{pre + name!r} has shape {got}, expected at least {ndim} axes")
        return got

    layers = {int(k[len(pre) :].split(".")[1]) for k in tensors if k.startswith(pre + "blocks.")}
    extra = {k: v for k, v in (config_json or {}).items() if k in ("head_size_divisor",)}
    eps = (config_json or {}).get("layer_norm_epsilon")
    if eps is not None:
        extra["layer_norm_epsilon"] = eps
    if config_json and "chunk_size" in config_json:
        extra["chunk_size"] = config_json["chunk_size"]
    return Config(
        n_embd=shape("blocks.0.ln1.weight")[0],
        n_layer=max(layers) + 1,
        head_size=shape("blocks.0.att.time_faaaa")[-1],
        dim_att=shape("blocks.0.att.key.weight")[0],
        dim_ffn=shape("blocks.0.ffn.key.weight")[0],
        time_mix_extra_dim=shape("blocks.0.att.time_maa_w2", 2)[1],
        time_decay_extra_dim=shape("blocks.0.att.time_decay_w1", 2)[1],
        **extra,
    )


def params_from_checkpoint(tensors: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Our params from x060 checkpoint tensors (any prefix; ``emb``/``head`` are left out).

    A tensor whose shape differs from ours only by axes of size 1 (e.g. ``time_maa_x`` saved as
    (C,)) is reshaped; any other mismatch raises ``WeightsError`` naming the key.
    """
    shapes = param_shapes(cfg)
    return select_params(tensors, shapes, _prefix(tensors), reshape_unit_axes=True)


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
    "wkv_chunk",
    "wkv_sequence",
    "wkv_step",
]
