"""Transformer baseline: a Llama-style decoder stack with a bounded (sliding-window) KV cache.

Glossary (paper / Hugging Face symbol -> code name):

- d_model                          -> ``cfg.hidden_size`` (axis ``D``)
- h (query heads), kv heads (GQA)  -> ``cfg.num_attention_heads`` ``H``, ``cfg.num_key_value_heads``
  ``KV``; query head ``j`` reads key/value head ``j // (H / KV)`` (``repeat_kv``)
- d_head                           -> ``cfg.head_dim`` ``hd``
- W_Q, W_K, W_V, W_O               -> ``self_attn.{q,k,v,o}_proj.weight`` (torch (out, in) layout)
- RoPE base theta, frequencies     -> ``cfg.rope_theta``, ``inv_freq = theta^(-2i/hd)``; rotation
  of the two halves of each head (``rotate_half``), positions are absolute and keep counting
- RMSNorm g, epsilon               -> ``input_layernorm`` / ``post_attention_layernorm`` / ``norm``
  weights, ``cfg.rms_norm_eps``
- SwiGLU MLP                       -> ``down_proj(silu(gate_proj x) * up_proj x)``
- context window W (KV cache size) -> ``cfg.context_window``

Each layer: ``x = x + Attn(RMSNorm(x))``, ``x = x + MLP(RMSNorm(x))``; the output is
``RMSNorm(x)`` with ``norm.weight`` (``LlamaModel``'s ``last_hidden_state``).

State (one stream per batch row): per layer ``layers.{i}.k`` and ``layers.{i}.v`` of shape
(B, KV, W, hd), holding the rotated keys and the values of the last W tokens, oldest first
(a window that slides by ``concat``; no in-place writes), and ``pos`` (B,) int64: how many tokens
each stream has seen. Slot ``j`` holds the token at absolute position ``pos - W + j``; slots with a
negative position are masked. Every token attends to itself and the W - 1 tokens before it, so up
to W tokens this is exactly ``LlamaModel``'s causal attention, and beyond W it is sliding-window
attention. ``forward`` applies the same band mask to all T tokens at once (queries in chunks of
``chunk_size``), so it equals the step loop for any T and any past.

References:
- H. Touvron et al., "LLaMA: Open and Efficient Foundation Language Models", 2023
  (arXiv:2302.13971).
- J. Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021.
- J. Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models", 2023.
- N. Shazeer, "GLU Variants Improve Transformer", 2020 (SwiGLU).
- I. Beltagy et al., "Longformer", 2020 (sliding-window attention).
- Hugging Face transformers, ``models/llama/modeling_llama.py`` (``LlamaModel``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from kizzasi_lite.backends import loops_are_cheap, namespace
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models._common import (
    DictConfig,
    check_numbers,
    check_positive_int,
    is_positive_int,
    known_fields,
    merge_found,
    need,
    resolve_dtype,
    select_params,
    step_layouts,
    with_step_layouts,
)
from kizzasi_lite.nn import linear, rms_norm, silu


@dataclass(frozen=True)
class Config(DictConfig):
    """Llama hyper-parameters (``LlamaConfig`` names) plus the KV cache bound ``context_window``.

    ``num_key_value_heads`` defaults to ``num_attention_heads``, ``head_dim`` to
    ``hidden_size // num_attention_heads`` and ``context_window`` to ``max_position_embeddings``.
    ``chunk_size`` is the number of queries attended at once in ``forward`` (memory, not result).
    Only the default RoPE (no scaling) and ``hidden_act="silu"`` are supported.
    """

    hidden_size: int = 64
    intermediate_size: int = 172
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    attention_bias: bool = False
    mlp_bias: bool = False
    max_position_embeddings: int = 2048
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    context_window: int | None = None
    chunk_size: int = 64

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
        if self.head_dim is None and is_positive_int(self.num_attention_heads):
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.context_window is None:
            object.__setattr__(self, "context_window", self.max_position_embeddings)
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
            "context_window",
            "chunk_size",
        ):
            check_positive_int(name, getattr(self, name))
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_key_value_heads ({self.num_key_value_heads}) must divide "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even (rotary pairs), got {self.head_dim}")
        check_numbers(self, "rope_theta", "rms_norm_eps")
        if not self.rope_theta > 0.0:
            raise ConfigError(f"rope_theta must be > 0, got {self.rope_theta}")
        if not self.rms_norm_eps > 0.0:
            raise ConfigError(f"rms_norm_eps must be > 0, got {self.rms_norm_eps}")
        if self.hidden_act != "silu":
            raise ConfigError(f"hidden_act must be 'silu', got {self.hidden_act!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a dict (ours or a Hugging Face ``config.json``), ignoring unknown keys.

        Reads ``rope_theta`` from ``rope_parameters`` (transformers >= 5) when present; raises
        ``ConfigError`` for RoPE scaling types other than the default.
        """
        d = dict(d)
        rope = d.get("rope_parameters") or d.get("rope_scaling")
        if rope:
            kind = rope.get("rope_type", rope.get("type", "default"))
            if kind != "default":
                raise ConfigError(f"rope_parameters: rope_type {kind!r} is not supported")
            if "rope_theta" in rope:
                d.setdefault("rope_theta", rope["rope_theta"])
        return cls(**known_fields(cls, d))


# ---------------------------------------------------------------------------------------------
# parameters


def _param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter name (``LlamaModel`` key without ``model.``) and its shape."""
    D, F, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q_out, kv_out = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        for name, out, inp in (
            ("q", q_out, D),
            ("k", kv_out, D),
            ("v", kv_out, D),
            ("o", D, q_out),
        ):
            shapes[f"{p}self_attn.{name}_proj.weight"] = (out, inp)
            if cfg.attention_bias:
                shapes[f"{p}self_attn.{name}_proj.bias"] = (out,)
        for name, out, inp in (("gate", F, D), ("up", F, D), ("down", D, F)):
            shapes[f"{p}mlp.{name}_proj.weight"] = (out, inp)
            if cfg.mlp_bias:
                shapes[f"{p}mlp.{name}_proj.bias"] = (out,)
        shapes[p + "input_layernorm.weight"] = (D,)
        shapes[p + "post_attention_layernorm.weight"] = (D,)
    shapes["norm.weight"] = (D,)
    return shapes


def init_params(cfg: Config, rng: Any, dtype: Any = None) -> dict[str, Any]:
    """Fresh weights as ``LlamaPreTrainedModel`` initialises them: N(0, initializer_range) for
    projections, zeros for biases, ones for the RMSNorm weights. Keys are the checkpoint names.
    """
    xp = rng.xp
    dtype = resolve_dtype(xp, dtype)
    params = {}
    for name, shape in _param_shapes(cfg).items():
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            params[name] = xp.ones(shape, dtype=dtype)  # (D,)
        elif name.endswith(".bias"):
            params[name] = xp.zeros(shape, dtype=dtype)  # (out,)
        else:
            params[name] = rng.normal(shape, std=cfg.initializer_range, dtype=dtype)  # (out, in)
    return params


# ---------------------------------------------------------------------------------------------
# state


def init_state(cfg: Config, batch: int, *, xp: Any, dtype: Any = None) -> dict[str, Any]:
    """Empty KV cache: ``layers.{i}.k``/``.v`` zeros (B, KV, W, hd) and ``pos`` zeros (B,) int64."""
    dtype = resolve_dtype(xp, dtype)
    shape = (batch, cfg.num_key_value_heads, cfg.context_window, cfg.head_dim)
    state = {}
    for i in range(cfg.num_hidden_layers):
        state[f"layers.{i}.k"] = xp.zeros(shape, dtype=dtype)  # (B, KV, W, hd)
        state[f"layers.{i}.v"] = xp.zeros(shape, dtype=dtype)  # (B, KV, W, hd)
    state["pos"] = xp.zeros((batch,), dtype=xp.int64)  # (B,)
    return state


def state_numel(cfg: Config) -> int:
    """Numbers in one stream's state: ``2 * layers * KV * W * head_dim`` cached plus 1 counter."""
    per_layer = 2 * cfg.num_key_value_heads * cfg.context_window * cfg.head_dim
    return cfg.num_hidden_layers * per_layer + 1


# ---------------------------------------------------------------------------------------------
# building blocks


def _rope(cfg: Config, positions: Any) -> tuple[Any, Any]:
    """cos and sin of the rotary angles for float ``positions`` (B, T): each (B, 1, T, hd)."""
    xp = namespace(positions)
    hd = cfg.head_dim
    inv_freq = 1.0 / (
        cfg.rope_theta ** (xp.arange(0, hd, 2, dtype=positions.dtype) / hd)
    )  # (hd/2,)
    freqs = positions[..., None] * inv_freq  # (B, T, hd/2)
    emb = xp.concat([freqs, freqs], axis=-1)[:, None, :, :]  # (B, 1, T, hd)
    return xp.cos(emb), xp.sin(emb)  # (B, 1, T, hd) each


def _apply_rope(x: Any, cos: Any, sin: Any) -> Any:
    """Rotate ``x`` (B, heads, T, hd) by the angles (``rotate_half`` convention of Llama)."""
    xp = namespace(x)
    half = x.shape[-1] // 2
    rotated = xp.concat([-x[..., half:], x[..., :half]], axis=-1)  # (B, heads, T, hd)
    return x * cos + rotated * sin  # (B, heads, T, hd)


def _heads(cfg: Config, x: Any, n_heads: int) -> Any:
    """(B, T, heads * hd) -> (B, heads, T, hd)."""
    xp = namespace(x)
    B, T = x.shape[0], x.shape[1]
    return xp.permute_dims(
        xp.reshape(x, (B, T, n_heads, cfg.head_dim)), (0, 2, 1, 3)
    )  # (B, h, T, hd)


def _proj(params: dict[str, Any], name: str, x: Any) -> Any:
    return linear(x, params[name + ".weight"], params.get(name + ".bias"))


# Scores per block of keys of attention on NumPy-backed arrays (1 MiB of float32): a block's
# scores, exponentials and their sums stay in cache. Blocks are at least _MIN_KEY_BLOCK keys wide.
_SCORE_BLOCK_NUMBERS = 1 << 18
_MIN_KEY_BLOCK = 64


def _attend(cfg: Config, q: Any, groups: list[tuple[Any, Any, Any]]) -> Any:
    """Grouped-query softmax attention over keys given in groups.

    ``q`` (B, H, Tq, hd); each group ``(k, v, mask)`` holds keys and values (B, KV, S_i, hd) and
    a bool ``mask`` broadcastable to (B, KV, H/KV, Tq, S_i) (True = may attend), or None where
    every query may attend every key of the group (no masking pass over its scores). Every query
    attends at least one key. Returns (B, H, Tq, hd).

    Each block of keys (a group; on NumPy-backed arrays, cache-sized slices of one) gives its
    row maxima ``m_i``, ``o_i = exp(s_i - m_i) @ v_i`` and ``d_i = sum(exp(s_i - m_i))``; the
    softmax over all of them is ``sum_i a_i o_i / sum_i a_i d_i`` with ``a_i = exp(m_i - m)``,
    ``m`` the largest ``m_i``. A row with no allowed key in a block takes shift 0 there, so its
    ``o_i``, ``d_i`` and ``a_i`` are 0 (never ``inf - inf``).
    """
    xp = namespace(q)
    B, H, Tq, hd = q.shape
    KV = cfg.num_key_value_heads
    qg = xp.reshape(q * (hd**-0.5), (B, KV, H // KV, Tq, hd))  # (B, KV, G, Tq, hd), scaled
    width = max(_MIN_KEY_BLOCK, _SCORE_BLOCK_NUMBERS // max(1, B * H * Tq))  # B may be 0
    if any(k.shape[2] > width for k, _, _ in groups) and loops_are_cheap(q):
        groups = [
            (k[:, :, a:b, :], v[:, :, a:b, :], m if m is None else m[..., a:b])
            for k, v, m in groups
            for a in range(0, k.shape[2], width)
            for b in [min(a + width, k.shape[2])]
        ]
    parts = []  # (m_i, o_i, d_i) per block
    for k, v, mask in groups:
        s = xp.matmul(qg, xp.matrix_transpose(k)[:, :, None, :, :])  # (B, KV, G, Tq, S_i)
        if mask is not None:
            s = xp.where(mask, s, xp.asarray(-math.inf, dtype=s.dtype))
        m = xp.max(s, axis=-1, keepdims=True)  # (B, KV, G, Tq, 1)
        shift = m if len(groups) == 1 else xp.where(m > -math.inf, m, xp.zeros_like(m))
        e = xp.exp(s - shift)  # (B, KV, G, Tq, S_i)
        parts.append((m, xp.matmul(e, v[:, :, None, :, :]), xp.sum(e, axis=-1, keepdims=True)))
    if len(parts) == 1:
        _, out, den = parts[0]
    else:
        top = functools.reduce(xp.maximum, [m for m, _, _ in parts])  # (B, KV, G, Tq, 1)
        scales = [xp.exp(m - top) for m, _, _ in parts]
        out = functools.reduce(xp.add, [a * o for a, (_, o, _) in zip(scales, parts, strict=True)])
        den = functools.reduce(xp.add, [a * d for a, (_, _, d) in zip(scales, parts, strict=True)])
    return xp.reshape(out / den, (B, H, Tq, hd))  # normalised on hd numbers per row, not S


def _mlp(params: dict[str, Any], prefix: str, x: Any) -> Any:
    """SwiGLU: ``down(silu(gate(x)) * up(x))``, (..., D) -> (..., D)."""
    h = silu(_proj(params, prefix + "gate_proj", x)) * _proj(
        params, prefix + "up_proj", x
    )  # (..., F)
    return _proj(params, prefix + "down_proj", h)  # (..., D)


def _qkv(cfg: Config, params: dict[str, Any], p: str, x: Any, cos: Any, sin: Any) -> tuple:
    """Normed, projected, rotated ``q`` (B, H, T, hd), ``k`` and ``v`` (B, KV, T, hd)."""
    h = rms_norm(x, params[p + "input_layernorm.weight"], cfg.rms_norm_eps)  # (B, T, D)
    q = _heads(
        cfg, _proj(params, p + "self_attn.q_proj", h), cfg.num_attention_heads
    )  # (B, H, T, hd)
    k = _heads(
        cfg, _proj(params, p + "self_attn.k_proj", h), cfg.num_key_value_heads
    )  # (B, KV, T, hd)
    v = _heads(
        cfg, _proj(params, p + "self_attn.v_proj", h), cfg.num_key_value_heads
    )  # (B, KV, T, hd)
    return _apply_rope(q, cos, sin), _apply_rope(k, cos, sin), v


def _finish_layer(cfg: Config, params: dict[str, Any], p: str, x: Any, attn: Any) -> Any:
    """Output projection, residuals, MLP: ``attn`` (B, H, T, hd), ``x`` (B, T, D) -> (B, T, D)."""
    xp = namespace(x, attn)
    B, T = x.shape[0], x.shape[1]
    hhd = attn.shape[1] * attn.shape[3]  # not -1: ambiguous when B or T is 0
    o = xp.reshape(xp.permute_dims(attn, (0, 2, 1, 3)), (B, T, hhd))  # (B, T, H*hd)
    x = x + _proj(params, p + "self_attn.o_proj", o)  # (B, T, D)
    h = rms_norm(x, params[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps)  # (B, T, D)
    return x + _mlp(params, p + "mlp.", h)  # (B, T, D)


# ---------------------------------------------------------------------------------------------
# step and forward


# the weights a step reads through ``linear``, laid out (in, out) for it (:func:`step_layouts`)
_STEP_LAYOUTS = functools.partial(step_layouts, ("_proj.weight",))


def step(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """One token: ``x`` (B, D) -> ``y`` (B, D) and the next state. O(W) work, not O(t)."""
    xp = namespace(x, params["norm.weight"])  # the autodiff namespace when params are tensors
    params = with_step_layouts(_STEP_LAYOUTS, cfg, params, x, state)  # NumPy: (in, out) layouts
    W = cfg.context_window
    pos = state["pos"]  # (B,)
    cos, sin = _rope(cfg, xp.astype(pos, x.dtype)[:, None])  # (B, 1, 1, hd)
    # after the shift, slot j holds absolute position pos - (W - 1 - j): valid when >= 0
    slot = xp.arange(W, dtype=pos.dtype)  # (W,)
    valid = slot[None, :] >= (W - 1 - pos)[:, None]  # (B, W)
    mask = valid[:, None, None, None, :]  # (B, 1, 1, 1, W)
    h = x[:, None, :]  # (B, 1, D)
    new_state = {}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        q, k, v = _qkv(cfg, params, p, h, cos, sin)  # (B, H, 1, hd), (B, KV, 1, hd) x 2
        kc = xp.concat([state[p + "k"][:, :, 1:, :], k], axis=2)  # (B, KV, W, hd)
        vc = xp.concat([state[p + "v"][:, :, 1:, :], v], axis=2)  # (B, KV, W, hd)
        h = _finish_layer(cfg, params, p, h, _attend(cfg, q, [(kc, vc, mask)]))  # (B, 1, D)
        new_state[p + "k"], new_state[p + "v"] = kc, vc
    new_state["pos"] = pos + 1  # (B,)
    y = rms_norm(h[:, 0, :], params["norm.weight"], cfg.rms_norm_eps)  # (B, D)
    return y, new_state


def _query_chunks(cfg: Config, pos: Any, T: int) -> list[tuple[int, int, list]]:
    """The query chunks of ``forward``: ``(t0, c, ranges)`` with ``ranges`` a list of
    ``(lo, hi, mask)``, the groups of keys the chunk's ``c`` queries attend.

    Columns ``j`` count the keys ``concat([cache, new], axis=2)`` from ``t0``: column ``j`` holds
    absolute position ``pos - W + t0 + j`` and query ``t`` (local) position ``pos + t0 + t``,
    allowed when ``t < j <= t + W`` (the last W tokens, itself included) and the key's position
    is not negative. Columns below ``s`` hold negative positions for every stream (an empty or
    short cache) and are left out, so a sequence from a fresh state attends over the causal
    triangle, not the whole window. Columns in ``[c, W]`` whose positions are valid for every
    stream are allowed for every query: they form one group with ``mask`` None (no masking pass
    over most of the scores); the columns left and right of it get masks (B, 1, 1, c, hi - lo).
    """
    xp = namespace(pos)
    W, L = cfg.context_window, min(cfg.chunk_size, T)
    t = xp.arange(L, dtype=pos.dtype)[:, None]  # (L, 1)
    j = xp.arange(L + W, dtype=pos.dtype)[None, :]  # (1, L+W)
    band = (j > t) & (j <= t + W)  # (L, L+W)
    seen = int(xp.max(pos)) if pos.shape[0] else W  # the longest past of any stream
    shortest = int(xp.min(pos)) if pos.shape[0] else W  # and the shortest

    def masked(t0: int, c: int, lo: int, hi: int) -> Any:
        col = xp.arange(t0 + lo, t0 + hi, dtype=pos.dtype)  # (hi - lo,)
        valid = col[None, :] >= (W - pos)[:, None]  # (B, hi - lo)
        return (band[None, :c, lo:hi] & valid[:, None, :])[:, None, None, :, :]

    chunks = []
    for t0 in range(0, T, L):
        c = min(L, T - t0)
        s = max(0, min(W, W - seen - t0))  # columns t0 + j < W - seen: negative for all streams
        free = min(max(s, c, W - shortest - t0), W + 1)  # [free, W] is allowed for all
        ranges = [(s, free, True), (free, W + 1, False), (W + 1, c + W, True)]  # (lo, hi, masked)
        groups = [(lo, hi, masked(t0, c, lo, hi) if m else None) for lo, hi, m in ranges if hi > lo]
        chunks.append((t0, c, groups))
    return chunks


def forward(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """A whole sequence: ``x`` (B, T, D) -> ``y`` (B, T, D) and the final state.

    Equal to the step loop for any T: sliding-window causal attention over the cache and the new
    tokens, queries in chunks of ``chunk_size``.
    """
    xp = namespace(x, params["norm.weight"])  # the autodiff namespace when params are tensors
    B, T = x.shape[0], x.shape[1]
    if state is None:
        state = init_state(cfg, B, xp=namespace(x), dtype=x.dtype)
    if T == 0:
        return rms_norm(x, params["norm.weight"], cfg.rms_norm_eps), dict(state)
    pos = state["pos"]  # (B,)
    positions = xp.astype(pos, x.dtype)[:, None] + xp.arange(T, dtype=x.dtype)  # (B, T)
    cos, sin = _rope(cfg, positions)  # (B, 1, T, hd)
    chunks = _query_chunks(cfg, pos, T)
    h = x
    new_state = {}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        q, k, v = _qkv(cfg, params, p, h, cos, sin)  # (B, H, T, hd), (B, KV, T, hd) x 2
        ks = xp.concat([state[p + "k"], k], axis=2)  # (B, KV, W+T, hd)
        vs = xp.concat([state[p + "v"], v], axis=2)  # (B, KV, W+T, hd)
        outs = [
            _attend(cfg, q[:, :, t0 : t0 + c, :], [
                (ks[:, :, t0 + lo : t0 + hi, :], vs[:, :, t0 + lo : t0 + hi, :], mask)
                for lo, hi, mask in ranges
            ])  # (B, H, c, hd)
            for t0, c, ranges in chunks
        ]  # fmt: skip
        h = _finish_layer(cfg, params, p, h, xp.concat(outs, axis=2))  # (B, T, D)
        new_state[p + "k"], new_state[p + "v"] = ks[:, :, T:, :], vs[:, :, T:, :]
    new_state["pos"] = pos + T  # (B,)
    return rms_norm(h, params["norm.weight"], cfg.rms_norm_eps), new_state


# ---------------------------------------------------------------------------------------------
# checkpoints


def _prefix(tensors: dict[str, Any]) -> str:
    """ "" for a ``LlamaModel`` checkpoint, "model." for ``LlamaForCausalLM``."""
    for pre in ("", "model."):
        if pre + "norm.weight" in tensors:
            return pre
    for key in tensors:
        if key.endswith("norm.weight") and ".layers." not in key and not key.startswith("layers."):
            return key[: -len("norm.weight")]
    raise WeightsError("checkpoint has no 'norm.weight' (expected shape (hidden_size,))")


def config_from_checkpoint(tensors: dict[str, Any], config_json: dict | None = None) -> Config:
    """Config from a Llama ``config.json`` checked against the checkpoint's shapes.

    The sizes are read from the shapes (and must agree with ``config_json``); the head counts
    cannot be read from shapes, so ``config_json`` is required (``ConfigError`` without it).
    """
    pre = _prefix(tensors)
    D = int(need(tensors, pre + "norm.weight", 1).shape[0])
    n_layers = 0
    while f"{pre}layers.{n_layers}.input_layernorm.weight" in tensors:
        n_layers += 1
    parts = ("self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj")
    q, k, gate = (f"{pre}layers.0.{m}.weight" for m in parts)  # names, then q and gate's tensors
    if n_layers == 0 or any(name not in tensors for name in (q, k, gate)):
        raise WeightsError(f"checkpoint has no complete '{pre}layers.0' (attention and mlp)")
    q, gate = need(tensors, q, 2), need(tensors, gate, 2)  # their sizes are read below
    if config_json is None or "num_attention_heads" not in config_json:
        raise ConfigError(
            "num_attention_heads: cannot be read from the weights; pass the config.json "
            f"(q_proj has {q.shape[0]} rows = heads * head_dim)"
        )
    found = {"hidden_size": D, "num_hidden_layers": n_layers, "intermediate_size": gate.shape[0]}
    d = merge_found(config_json, found)
    d.setdefault("attention_bias", f"{pre}layers.0.self_attn.q_proj.bias" in tensors)
    d.setdefault("mlp_bias", f"{pre}layers.0.mlp.gate_proj.bias" in tensors)
    cfg = Config.from_dict(d)
    if q.shape[0] != cfg.num_attention_heads * cfg.head_dim:
        raise WeightsError(
            f"{pre}layers.0.self_attn.q_proj.weight has {q.shape[0]} rows, expected "
            f"num_attention_heads * head_dim = {cfg.num_attention_heads * cfg.head_dim}"
        )
    return cfg


def params_from_checkpoint(tensors: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Our params from ``LlamaModel`` / ``LlamaForCausalLM`` tensors: strip ``model.``, skip the
    embeddings and head, check every key and shape (``WeightsError`` names the first mismatch).
    """
    return select_params(tensors, _param_shapes(cfg), _prefix(tensors))


__all__ = [
    "Config",
    "config_from_checkpoint",
    "forward",
    "init_params",
    "init_state",
    "params_from_checkpoint",
    "state_numel",
    "step",
]
