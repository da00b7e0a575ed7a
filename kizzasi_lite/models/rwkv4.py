"""RWKV-4: time mix with a per-channel exponential decay (WKV) and a squared-ReLU channel mix.

Glossary (paper symbol -> code name), per layer and channel:

- ``x_t`` -> ``xx``: the block input after ``ln1`` (``ln2`` in the channel mix); ``x_{t-1}`` is
  carried in the state as ``blocks.{i}.attention.shift`` (``blocks.{i}.feed_forward.shift``).
- ``mu_k, mu_v, mu_r`` -> ``time_mix_key/value/receptance``: ``x_k = mu_k x_t + (1-mu_k) x_{t-1}``.
- ``w`` (decay) -> ``exp(time_decay)`` (> 0), ``u`` (bonus) -> ``time_first``.
- ``wkv_t = (a_{t-1} + e^{u+k_t} v_t) / (b_{t-1} + e^{u+k_t})`` with
  ``a_t = e^{-w} a_{t-1} + e^{k_t} v_t`` and ``b_t = e^{-w} b_{t-1} + e^{k_t}``.
- state ``(a, b)`` is stored scaled as ``(num, den, max)``: ``a = num e^max``, ``b = den e^max``,
  ``max`` the largest exponent seen (transformers' ``rwkv_linear_attention_cpu``) ->
  ``blocks.{i}.attention.num/den/max`` (B, A).
- output ``W_o (sigmoid(r_t) * wkv_t)``; channel mix ``sigmoid(W_r x_r) * W_v relu(W_k x_k)^2``.

Shapes: B batch, T time, C = ``hidden_size``, A = ``attention_hidden_size``, F =
``intermediate_size``. Parameter names are those of transformers' ``RwkvModel`` without its
``rwkv.`` prefix (``blocks.0.pre_ln`` normalises the input, ``ln_out`` the output).

Sequence path. On NumPy-backed arrays ``forward`` runs :func:`wkv_step` over the steps
(:func:`wkv_recurrent`: on a CPU that is faster than chunks), and under autodiff that loop is one
operation whose backward runs the adjoint recurrence. The device backends take chunks (why they
are built this way): the WKV is a ratio of two decayed sums of ``e^{k}``,
whose exponents grow without bound, so the plain linear form overflows. Inside a chunk of c steps
we write every output as one masked (c, c) weighted average with log-weights
``k_i - (j-1-i) w`` (tokens before ``j``), ``u + k_j`` (the token itself) and
``max - j w`` (the carried state), and subtract the row maximum before exponentiating, as a
softmax does: exact, and nothing overflows. The state after the chunk is the same construction
for one more row, and its maximum equals the running maximum transformers keeps, step by step.
Only the loop over chunks runs in Python.

References:
- B. Peng et al., "RWKV: Reinventing RNNs for the Transformer Era", EMNLP Findings 2023,
  arXiv:2305.13048.
- transformers ``models/rwkv/modeling_rwkv.py`` (``RwkvModel``, ``rwkv_linear_attention_cpu``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from kizzasi_lite.autodiff import plain
from kizzasi_lite.backends import namespace
from kizzasi_lite.errors import WeightsError
from kizzasi_lite.models._common import (
    DictConfig,
    check_sizes,
    find_prefix,
    known_fields,
    merge_found,
    resolve_dtype,
    scan_operation,
    scan_path,
    select_params,
    step_layouts,
    traced,
    with_step_layouts,
)
from kizzasi_lite.nn import layer_norm, linear, previous_tokens, sigmoid
from kizzasi_lite.nn.init import orthogonal

# the running maximum of an empty state: "minus infinity", kept finite as transformers does
_EMPTY_MAX = -1e38
# transformers builds ln_out with nn.LayerNorm's default eps, whatever layer_norm_epsilon says
_LN_OUT_EPS = 1e-5


@dataclass(frozen=True)
class Config(DictConfig):
    """RWKV-4 sizes, named as transformers' ``RwkvConfig``."""

    hidden_size: int = 256  # C
    num_hidden_layers: int = 4
    attention_hidden_size: int | None = None  # A; None -> hidden_size
    intermediate_size: int | None = None  # F; None -> 4 * hidden_size
    layer_norm_epsilon: float = 1e-5
    chunk_size: int = 32  # time steps per chunk in forward() on device backends

    def __post_init__(self) -> None:
        if self.attention_hidden_size is None:
            object.__setattr__(self, "attention_hidden_size", self.hidden_size)
        if self.intermediate_size is None and isinstance(self.hidden_size, int):
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
        check_sizes(self, numbers=("layer_norm_epsilon",))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a dict like transformers' config.json; unknown keys and None are ignored."""
        return cls(**known_fields(cls, d, drop_none=True))


# ---------------------------------------------------------------------------- parameters
def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter name -> shape (transformers' layout without the ``rwkv.`` prefix)."""
    C, A, F = cfg.hidden_size, cfg.attention_hidden_size, cfg.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "blocks.0.pre_ln.weight": (C,),
        "blocks.0.pre_ln.bias": (C,),
    }
    for i in range(cfg.num_hidden_layers):
        b = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            shapes[f"{b}{ln}.weight"] = (C,)
            shapes[f"{b}{ln}.bias"] = (C,)
        a = f"{b}attention."
        shapes[f"{a}time_decay"] = (A,)
        shapes[f"{a}time_first"] = (A,)
        for m in ("key", "value", "receptance"):
            shapes[f"{a}time_mix_{m}"] = (1, 1, C)
            shapes[f"{a}{m}.weight"] = (A, C)
        shapes[f"{a}output.weight"] = (C, A)
        f_ = f"{b}feed_forward."
        shapes[f"{f_}time_mix_key"] = (1, 1, C)
        shapes[f"{f_}time_mix_receptance"] = (1, 1, C)
        shapes[f"{f_}key.weight"] = (F, C)
        shapes[f"{f_}receptance.weight"] = (C, C)
        shapes[f"{f_}value.weight"] = (C, F)
    shapes["ln_out.weight"] = (C,)
    shapes["ln_out.bias"] = (C,)
    return shapes


def init_params(cfg: Config, rng: Any, dtype: Any = None) -> dict[str, Any]:
    """Fresh weights as transformers' ``RwkvPreTrainedModel._init_weights`` sets them.

    One deliberate difference: transformers sets ``time_first`` to ones (its expression wraps
    ``log(0.3) + zigzag`` in ``ones_like``); we use the intended RWKV-LM value
    ``log(0.3) + 0.5 * ((i + 1) % 3 - 1)``. Linear layers are orthogonal with gain
    ``sqrt(out / in)`` when ``out > in``, else 1.
    """
    xp = rng.xp
    dtype = resolve_dtype(xp, dtype)
    C, A, F, L = (
        cfg.hidden_size,
        cfg.attention_hidden_size,
        cfg.intermediate_size,
        cfg.num_hidden_layers,
    )

    def vec(values: list[float], shape: tuple[int, ...]) -> Any:
        return xp.reshape(xp.asarray(values, dtype=dtype), shape)

    def lin(rows: int, cols: int) -> Any:
        return orthogonal(rng, rows, cols, math.sqrt(rows / cols) if rows > cols else 1.0, dtype)

    ones, zeros = xp.ones((C,), dtype=dtype), xp.zeros((C,), dtype=dtype)
    p: dict[str, Any] = {"blocks.0.pre_ln.weight": ones, "blocks.0.pre_ln.bias": zeros}
    tw = [c / C for c in range(C)]
    for i in range(L):
        b, a, f_ = f"blocks.{i}.", f"blocks.{i}.attention.", f"blocks.{i}.feed_forward."
        r01 = i / (L - 1) if L > 1 else 0.0  # 0 -> 1 over the layers
        r10 = 1.0 - i / L  # 1 -> ~0
        for ln in ("ln1", "ln2"):
            p[f"{b}{ln}.weight"], p[f"{b}{ln}.bias"] = ones, zeros
        den = max(A - 1, 1)
        decay = [-5.0 + 8.0 * (h / den) ** (0.7 + 1.3 * r01) for h in range(A)]
        p[f"{a}time_decay"] = vec(decay, (A,))  # (A,)
        p[f"{a}time_first"] = vec([math.log(0.3) + 0.5 * ((h + 1) % 3 - 1) for h in range(A)], (A,))
        p[f"{a}time_mix_key"] = vec([t**r10 for t in tw], (1, 1, C))
        p[f"{a}time_mix_value"] = vec([t**r10 + 0.3 * r01 for t in tw], (1, 1, C))
        p[f"{a}time_mix_receptance"] = vec([t ** (0.5 * r10) for t in tw], (1, 1, C))
        for m in ("key", "value", "receptance"):
            p[f"{a}{m}.weight"] = lin(A, C)  # (A, C)
        p[f"{a}output.weight"] = lin(C, A)  # (C, A)
        p[f"{f_}time_mix_key"] = vec([t**r10 for t in tw], (1, 1, C))
        p[f"{f_}time_mix_receptance"] = vec([t**r10 for t in tw], (1, 1, C))
        p[f"{f_}key.weight"] = lin(F, C)  # (F, C)
        p[f"{f_}receptance.weight"] = lin(C, C)  # (C, C)
        p[f"{f_}value.weight"] = lin(C, F)  # (C, F)
    p["ln_out.weight"], p["ln_out.bias"] = ones, zeros
    return p


# ---------------------------------------------------------------------------- state
def init_state(cfg: Config, batch: int, *, xp: Any, dtype: Any = None) -> dict[str, Any]:
    """Empty state of ``batch`` streams: zeros, except ``max`` = -1e38 (no exponent seen yet).

    Per layer: ``attention.shift`` and ``feed_forward.shift`` (B, C), ``attention.num``,
    ``attention.den``, ``attention.max`` (B, A).
    """
    dtype = resolve_dtype(xp, dtype)
    C, A = cfg.hidden_size, cfg.attention_hidden_size
    state = {}
    for i in range(cfg.num_hidden_layers):
        a = f"blocks.{i}.attention."
        state[f"{a}shift"] = xp.zeros((batch, C), dtype=dtype)  # (B, C)
        state[f"{a}num"] = xp.zeros((batch, A), dtype=dtype)  # (B, A)
        state[f"{a}den"] = xp.zeros((batch, A), dtype=dtype)  # (B, A)
        state[f"{a}max"] = xp.full((batch, A), _EMPTY_MAX, dtype=dtype)  # (B, A)
        state[f"blocks.{i}.feed_forward.shift"] = xp.zeros((batch, C), dtype=dtype)  # (B, C)
    return state


def state_numel(cfg: Config) -> int:
    """Numbers in one stream's state: ``num_hidden_layers * (2 * C + 3 * A)``."""
    return cfg.num_hidden_layers * (2 * cfg.hidden_size + 3 * cfg.attention_hidden_size)


# ---------------------------------------------------------------------------- blocks
def _mix(xx: Any, shifted: Any, mu: Any) -> Any:
    """``mu * x_t + (1 - mu) * x_{t-1}`` for ``xx`` (B, T, C) and ``shifted`` its x_{t-1}."""
    return xx * mu + shifted * (1.0 - mu)


def _channel_mix(p: dict, b: str, xx: Any, prev: Any) -> Any:
    """``sigmoid(W_r x_r) * W_v relu(W_k x_k)^2`` of ``xx`` (B, T, C) -> (B, T, C)."""
    xp = namespace(xx)
    shifted = previous_tokens(xx, prev)  # (B, T, C)
    k = linear(_mix(xx, shifted, p[f"{b}time_mix_key"]), p[f"{b}key.weight"])  # (B, T, F)
    k = xp.maximum(k, xp.zeros_like(k))  # (B, T, F)
    rx = _mix(xx, shifted, p[f"{b}time_mix_receptance"])  # (B, T, C)
    r = sigmoid(linear(rx, p[f"{b}receptance.weight"]))  # (B, T, C)
    return r * linear(k * k, p[f"{b}value.weight"])  # (B, T, C)


# ---------------------------------------------------------------------------- WKV
def wkv_step(w: Any, u: Any, k: Any, v: Any, num: Any, den: Any, mx: Any) -> tuple:
    """One step (transformers' CPU loop body): ``w = exp(time_decay)``, ``u``: (A,);
    ``k, v, num, den, mx``: (B, A). Returns ``wkv`` (B, A) and the new ``(num, den, mx)``."""
    xp = namespace(k, num)
    top = xp.maximum(mx, u + k)  # (B, A)
    e1, e2 = xp.exp(mx - top), xp.exp(u + k - top)  # (B, A)
    out = (e1 * num + e2 * v) / (e1 * den + e2)  # (B, A)
    top = xp.maximum(mx - w, k)  # (B, A)
    e1, e2 = xp.exp(mx - w - top), xp.exp(k - top)  # (B, A)
    return out, (e1 * num + e2 * v, e1 * den + e2, top)


def wkv_chunk(w: Any, u: Any, k: Any, v: Any, num: Any, den: Any, mx: Any) -> tuple:
    """c steps at once: ``k, v`` (B, c, A), state (B, A) -> ``wkv`` (B, c, A) and the new state.

    Output j is the weighted average of ``v_i`` (i < j, log-weight ``k_i - (j-1-i) w``), of
    ``v_j`` (``u + k_j``) and of the carried ``num/den`` (``max - j w``), each row shifted by
    its largest log-weight before ``exp``.
    """
    xp = namespace(k, num)
    c = k.shape[1]
    pos = xp.arange(c, dtype=k.dtype)  # (c,)
    j = xp.reshape(pos, (c, 1, 1))  # (c, 1, 1) output step
    i = xp.reshape(pos, (1, c, 1))  # (1, c, 1) input step
    before = i < j  # (c, c, 1): token i is in the past of output j
    lw_self = u + k  # (B, c, A)
    lw_state = xp.expand_dims(mx, axis=1) - w * xp.reshape(pos, (c, 1))  # (B, c, A)
    lw_tok = xp.expand_dims(k, axis=1) - w * (j - 1.0 - i)  # (B, c, c, A): [b, j, i, a]
    lw_tok = xp.where(before, lw_tok, xp.expand_dims(lw_self, axis=2))  # (B, c, c, A), no new max
    top = xp.maximum(xp.max(lw_tok, axis=2), xp.maximum(lw_self, lw_state))  # (B, c, A)
    e_tok = xp.exp(lw_tok - xp.expand_dims(top, axis=2))  # (B, c, c, A), all <= 1
    e_tok = xp.where(before, e_tok, xp.zeros((), dtype=k.dtype))  # (B, c, c, A)
    e_self, e_state = xp.exp(lw_self - top), xp.exp(lw_state - top)  # (B, c, A)
    numer = e_state * xp.expand_dims(num, axis=1) + e_self * v  # (B, c, A)
    numer = numer + xp.sum(e_tok * xp.expand_dims(v, axis=1), axis=2)  # (B, c, A)
    denom = e_state * xp.expand_dims(den, axis=1) + e_self + xp.sum(e_tok, axis=2)  # (B, c, A)
    # the state after the chunk: weights k_i - (c-1-i) w and max - c w
    lw_end = k - w * xp.reshape((c - 1.0) - pos, (c, 1))  # (B, c, A)
    lw_carry = mx - c * w  # (B, A)
    new_max = xp.maximum(xp.max(lw_end, axis=1), lw_carry)  # (B, A)
    e_end = xp.exp(lw_end - xp.expand_dims(new_max, axis=1))  # (B, c, A)
    e_carry = xp.exp(lw_carry - new_max)  # (B, A)
    new_num = e_carry * num + xp.sum(e_end * v, axis=1)  # (B, A)
    new_den = e_carry * den + xp.sum(e_end, axis=1)  # (B, A)
    return numer / denom, (new_num, new_den, new_max)


def wkv_sequence(w: Any, u: Any, k: Any, v: Any, state: tuple, chunk: int) -> tuple:
    """All T steps, ``chunk`` at a time: ``k, v`` (B, T, A) -> ``wkv`` (B, T, A), state."""
    xp = namespace(k)
    outs = []
    T = k.shape[1]
    for t0 in range(0, T, chunk):
        part = (slice(None), slice(t0, min(t0 + chunk, T)), slice(None))
        out, state = wkv_chunk(w, u, k[part], v[part], *state)
        outs.append(out)
    return xp.concat(outs, axis=1), state  # (B, T, A)


def wkv_recurrent(w: Any, u: Any, k: Any, v: Any, num: Any, den: Any, mx: Any) -> tuple:
    """:func:`wkv_sequence` by :func:`wkv_step` over the steps: the NumPy path, inference and
    training. Same arguments (the state unpacked) and results.

    On a CPU the (B, c, c, A) weights of a chunk cost more than the c steps they replace (2x
    at one stream, 27x at 64). Under autodiff it is one differentiable operation: the forward
    keeps each step's state, and the backward runs the adjoint recurrence of the unscaled sums
    ``a_t``, ``b_t`` backwards in the same scaled form: with ``alpha_t = dL/da_t e^{max_t}``
    (``beta_t`` likewise), ``alpha_{t-1} = e^{max_{t-1} - w - max_t} alpha_t + gy_t
    e^{max_{t-1} - p_t} / d_t``, where ``p_t`` and ``d_t`` are step t's output shift and scaled
    denominator: every factor is at most 1, so nothing overflows. The gradients of ``k``,
    ``v``, ``u`` and ``w`` are then elementwise products over all steps at once, where the
    tape would keep every chunk's weights (tested equal to :func:`wkv_sequence`'s, with its
    gradients).
    """
    if k.shape[1] == 0:
        return k, (num, den, mx)
    inputs = {"w": w, "u": u, "k": k, "v": v, "num": num, "den": den, "max": mx}
    pw, pu, pk, pv, *state = (plain(a) for a in inputs.values())
    keep = any(map(traced, inputs.values()))  # the states, for the backward
    xp = namespace(pk, *state)
    outs, states = [], [[a] for a in state]
    for t in range(pk.shape[1]):
        out, state = wkv_step(pw, pu, pk[:, t, :], pv[:, t, :], *state)
        outs.append(out)
        for kept, a in zip(states, state, strict=True) if keep else ():
            kept.append(a)
    y = xp.stack(outs, axis=1)  # (B, T, A)
    if not keep:
        return y, tuple(state)
    states = [xp.stack(a, axis=1) for a in states]  # (B, T+1, A) each: before step 0 on
    backward = partial(_wkv_backward, (pw, pu, pk, pv), y, states)
    y, *state = scan_operation((y, *state), inputs, backward)
    return y, tuple(state)


def _wkv_backward(
    args: tuple, y: Any, states: list, gy: Any, g_num: Any, g_den: Any, g_max: Any
) -> dict[str, Any]:
    """Gradients of :func:`wkv_recurrent`'s inputs given those of ``y`` (B, T, A) and of the
    last ``num``, ``den``, ``max`` (B, A) (each may be None: zero)."""
    w, u, k, v = args
    xp = namespace(k)
    nums, dens, mxs = states  # (B, T+1, A)
    m_prev, m_cur = mxs[:, :-1, :], mxs[:, 1:, :]  # (B, T, A): max before / after each step
    p = xp.maximum(m_prev, u + k)  # (B, T, A): the output's shift
    e_self = xp.exp(u + k - p)  # (B, T, A)
    inv_d = 1.0 / (xp.exp(m_prev - p) * dens[:, :-1, :] + e_self)  # (B, T, A): 1 / d_t
    gy = xp.zeros_like(y) if gy is None else gy
    zeros = xp.zeros_like(nums[:, 0, :])  # (B, A)
    routed = not (g_num is None and g_den is None and g_max is None)
    g_num, g_den, g_max = (zeros if g is None else g for g in (g_num, g_den, g_max))
    # backwards through a_t, b_t (scaled by e^{max_t}); alphas[t] belongs to the state after t
    carry = xp.exp(m_prev - w - m_cur)  # (B, T, A), <= 1: what a step keeps of the sums
    from_y = gy * xp.exp(m_prev - p) * inv_d  # (B, T, A): dL/da_{t-1} from y_t, scaled
    alpha, beta, alphas, betas = g_num, g_den, [], []
    for t in range(k.shape[1] - 1, -1, -1):
        alphas.append(alpha)
        betas.append(beta)
        alpha = carry[:, t, :] * alpha + from_y[:, t, :]  # (B, A)
        beta = carry[:, t, :] * beta - from_y[:, t, :] * y[:, t, :]  # (B, A)
    alphas, betas = xp.stack(alphas[::-1], axis=1), xp.stack(betas[::-1], axis=1)  # (B, T, A)
    e_k = xp.exp(k - m_cur)  # (B, T, A), <= 1: e^{k_t} scaled
    g_self = gy * e_self * inv_d  # (B, T, A): dy_t / d(e^{u+k_t}) terms
    g_u = g_self * (v - y)  # (B, T, A)
    out = {
        "v": g_self + alphas * e_k,
        "k": g_u + e_k * (alphas * v + betas),
        "u": xp.sum(g_u, axis=(0, 1)),
        "w": -xp.sum(carry * (alphas * nums[:, :-1, :] + betas * dens[:, :-1, :]), axis=(0, 1)),
        "num": alpha,
        "den": beta,
        "max": alpha * nums[:, 0, :] + beta * dens[:, 0, :],
    }
    if routed:  # the last state's max (which also scales its num, den): to where it came from
        g_top = g_max - g_num * nums[:, -1, :] - g_den * dens[:, -1, :]  # (B, A)
        active, g_k, g_w = xp.ones_like(g_top, dtype=xp.bool), [], zeros
        for t in range(k.shape[1] - 1, -1, -1):
            took_k = active & (k[:, t, :] >= m_prev[:, t, :] - w)  # max_t = k_t
            g_k.append(xp.where(took_k, g_top, zeros))
            active = active & ~took_k
            g_w = g_w - xp.where(active, g_top, zeros)
        out["k"] = out["k"] + xp.stack(g_k[::-1], axis=1)
        out["w"] = out["w"] + xp.sum(g_w, axis=0)
        out["max"] = out["max"] + xp.where(active, g_top, zeros)
    return out


# ---------------------------------------------------------------------------- model
def _run(cfg: Config, params: dict, x: Any, state: dict | None, single: bool) -> tuple:
    """Shared body of :func:`step` (``single``: T == 1, recurrent WKV) and :func:`forward`."""
    xp = namespace(x)
    if state is None:
        state = init_state(cfg, x.shape[0], xp=xp, dtype=x.dtype)
    eps = cfg.layer_norm_epsilon
    h = layer_norm(x, params["blocks.0.pre_ln.weight"], params["blocks.0.pre_ln.bias"], eps)
    xp = namespace(h)  # the params' namespace when they carry gradients (autodiff)
    new = {}
    for i in range(cfg.num_hidden_layers):
        b, a = f"blocks.{i}.", f"blocks.{i}.attention."
        xx = layer_norm(h, params[f"{b}ln1.weight"], params[f"{b}ln1.bias"], eps)  # (B, T, C)
        shifted = previous_tokens(xx, state[f"{a}shift"])  # (B, T, C)
        k = linear(_mix(xx, shifted, params[f"{a}time_mix_key"]), params[f"{a}key.weight"])
        v = linear(_mix(xx, shifted, params[f"{a}time_mix_value"]), params[f"{a}value.weight"])
        rx = _mix(xx, shifted, params[f"{a}time_mix_receptance"])
        r = sigmoid(linear(rx, params[f"{a}receptance.weight"]))  # (B, T, A)
        w, u = xp.exp(params[f"{a}time_decay"]), params[f"{a}time_first"]  # (A,)
        carried = (state[f"{a}num"], state[f"{a}den"], state[f"{a}max"])
        if single:
            out, carried = wkv_step(w, u, k[:, 0, :], v[:, 0, :], *carried)
            out = xp.expand_dims(out, axis=1)  # (B, 1, A)
        elif scan_path(w, u, k, v, *carried) != "chunked":  # NumPy: step by step
            out, carried = wkv_recurrent(w, u, k, v, *carried)
        else:
            out, carried = wkv_sequence(w, u, k, v, carried, cfg.chunk_size)
        h = h + linear(r * out, params[f"{a}output.weight"])  # (B, T, C)
        new[f"{a}shift"] = xx[:, -1, :]
        new[f"{a}num"], new[f"{a}den"], new[f"{a}max"] = carried
        xx = layer_norm(h, params[f"{b}ln2.weight"], params[f"{b}ln2.bias"], eps)  # (B, T, C)
        h = h + _channel_mix(params, f"{b}feed_forward.", xx, state[f"{b}feed_forward.shift"])
        new[f"{b}feed_forward.shift"] = xx[:, -1, :]
    y = layer_norm(h, params["ln_out.weight"], params["ln_out.bias"], _LN_OUT_EPS)
    return y, new  # (B, T, C)


# the weights a step reads through ``linear``, laid out (in, out) for it (:func:`step_layouts`)
_STEP_LAYOUTS = partial(
    step_layouts, (".key.weight", ".value.weight", ".receptance.weight", ".output.weight")
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
    error = "not an RWKV-4 checkpoint: no 'blocks.0.ln1.weight' tensor"
    return find_prefix(tensors, "blocks.0.ln1.weight", error)


def config_from_checkpoint(tensors: dict[str, Any], config_json: dict | None = None) -> Config:
    """The sizes from the tensor shapes (config.json must agree: ``WeightsError`` names the
    field), the rest from transformers' config.json where given."""
    pre = _prefix(tensors)

    def shape(name: str, ndim: int = 1) -> tuple[int, ...]:  # at least ndim axes
        if pre + name not in tensors:
            raise WeightsError(f"missing tensor {pre + name!r}: cannot infer the RWKV-4 config")
        got = tuple(tensors[pre + name].shape)
        if len(got) < ndim:
            raise WeightsError(f"{pre + name!r} has shape {got}, expected at least {ndim} axes")
        return got

    layers = {int(k[len(pre) :].split(".")[1]) for k in tensors if k.startswith(pre + "blocks.")}
    inferred = {
        "hidden_size": shape("blocks.0.ln1.weight")[0],
        "num_hidden_layers": max(layers) + 1,
        "attention_hidden_size": shape("blocks.0.attention.key.weight")[0],
        "intermediate_size": shape("blocks.0.feed_forward.key.weight")[0],
    }
    given = {k: v for k, v in (config_json or {}).items() if v is not None}
    return Config.from_dict(merge_found(given, inferred))  # config.json must agree


def params_from_checkpoint(tensors: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Our params from ``RwkvModel`` / ``RwkvForCausalLM`` tensors (``rwkv.`` prefix stripped).

    A tensor whose shape differs from ours only by axes of size 1 is reshaped; any other
    mismatch, or a missing key, raises ``WeightsError`` naming the key and the expected shape.
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
