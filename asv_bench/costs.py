"""What a case must compute and move: FLOPs and bytes per architecture, and the roofline floor.

The counts are the work of the *model*, independent of the algorithm that computes it (the chunked
SSD of Mamba-2 or the doubling scan of Mamba do extra work; that extra is not counted, so the floor
is a true lower bound). Notation, per layer unless said otherwise: ``B`` streams, ``T`` time steps,
``P_mm`` the weights used in matrix products (every 2-D parameter except Mamba's ``A_log``),
``P`` all parameters, ``S`` the numbers in one stream's state (``state_numel``), 4 bytes a float.

FLOPs of one time step of one stream (a multiply-add counts 2, an ``exp`` 1):

- every architecture: ``2 * P_mm`` (the linear layers), plus per layer
- Mamba:       ``d_inner * (7 N + 2 K)``: ``exp(dt A)``, ``dt B x`` (2), ``h = a h + b`` (2),
  ``y = C h`` (2) over the (d_inner, N) state; the depthwise conv of width K (2 K)
- Mamba-2:     ``5 H P N + 2 K conv_dim``: ``h = a h + (dt x) B`` (3) and ``y = C h`` (2)
- RWKV-4:      ``20 A + 15 C``: the WKV recurrence (two maxima, four exps, ~14 mul/add per
  channel) and five token-shift mixes (3 per channel each)
- Transformer: ``4 S_att H hd``: ``q k^T`` and ``p v`` over the ``S_att`` keys attended (the
  window ``W`` in a step; ``min(t + 1, W)`` for the token at ``t`` of a sequence)

Norms, activations and the residual adds are O(D) per layer and ignored (they are < 2% here).

Bytes a case must move at least (the issue's definition: weights read once, state read and
written once):

- step / forward: ``4 P`` (weights) + ``2 * 4 S B`` (state in, state out) + ``2 * 4 B T D``
  (input and output). The Transformer's KV cache is read whole but only the new slot must be
  written: ``4 S B + 4 B s_new`` with ``s_new = 2 L KV hd + 1``.
- one training step (forward, backward, AdamW): ``4 P`` (weights read) + ``4 P`` (gradient
  written) + ``7 * 4 P`` (AdamW reads p, g, m, v, writes p, m, v) + the inputs and targets;
  FLOPs ``3x`` those of the forward (backward = 2x forward) + ``12 P`` for AdamW.

The floor of a case is ``max(FLOPs / peak, bytes / bandwidth)`` with the machine's measured
single-precision matmul peak and memory bandwidth; "fraction of floor" is ``floor / measured``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

FLOAT_BYTES = 4  # float32


@dataclass(frozen=True)
class Work:
    """FLOPs and bytes of one case, and where they come from."""

    flops: float
    bytes: float
    weight_bytes: float
    state_bytes: float

    def floor(self, peak_flops: float, bandwidth: float) -> tuple[float, str]:
        """``(seconds, bound)``: the roofline floor and which limit sets it."""
        t_compute, t_memory = self.flops / peak_flops, self.bytes / bandwidth
        return (t_compute, "compute") if t_compute >= t_memory else (t_memory, "memory")

    def to_dict(self) -> dict[str, float]:
        """The counts as a JSON-ready dict."""
        return asdict(self)


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(int(s) for s in shape)


def param_counts(params: dict[str, Any]) -> tuple[int, int]:
    """``(P, P_mm)``: all parameters, and those used as matrix-product weights."""
    total = sum(_numel(v.shape) for v in params.values())
    matmul = sum(
        _numel(v.shape) for k, v in params.items() if len(v.shape) == 2 and "A_log" not in k
    )
    return total, matmul


def _layers(cfg: Any) -> int:
    return getattr(cfg, "num_hidden_layers", None) or cfg.n_layer


def mixer_flops_per_token(arch: str, cfg: Any, keys_attended: float = 0.0) -> float:
    """The non-matmul FLOPs of one time step of one stream, all layers (the module doc's list)."""
    if arch == "mamba":
        per = cfg.intermediate_size * (7 * cfg.state_size + 2 * cfg.conv_kernel)
    elif arch == "mamba2":
        per = 5 * cfg.d_ssm * cfg.state_size + 2 * cfg.conv_kernel * cfg.conv_dim
    elif arch == "rwkv4":
        per = 20 * cfg.attention_hidden_size + 15 * cfg.hidden_size
    elif arch == "transformer":
        per = 4 * keys_attended * cfg.num_attention_heads * cfg.head_dim
    else:
        raise ValueError(f"no cost formula for architecture {arch!r}")
    return _layers(cfg) * per


def _hidden(cfg: Any) -> int:
    return getattr(cfg, "hidden_size", None) or cfg.n_embd


def _kv_slot(cfg: Any) -> int:
    """Numbers a Transformer step must write into its cache: one K and one V row per layer."""
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim + 1


def step_work(arch: str, cfg: Any, params: dict[str, Any], state_numel: int, batch: int) -> Work:
    """One step of ``batch`` streams (see the module doc)."""
    p_all, p_mm = param_counts(params)
    keys = cfg.context_window if arch == "transformer" else 0.0
    flops = batch * (2 * p_mm + mixer_flops_per_token(arch, cfg, keys))
    weights = FLOAT_BYTES * p_all
    if arch == "transformer":
        state = FLOAT_BYTES * batch * (state_numel + _kv_slot(cfg))
    else:
        state = 2 * FLOAT_BYTES * batch * state_numel
    io = 2 * FLOAT_BYTES * batch * _hidden(cfg)
    return Work(flops, weights + state + io, weights, state)


def _attended_keys(length: int, window: int) -> float:
    """Sum over t < length of ``min(t + 1, window)``: keys attended by a causal sequence."""
    w = min(window, length)
    return w * (w + 1) / 2 + (length - w) * w


def forward_work(
    arch: str, cfg: Any, params: dict[str, Any], state_numel: int, batch: int, length: int
) -> Work:
    """``forward`` over ``batch`` sequences of ``length`` steps."""
    p_all, p_mm = param_counts(params)
    if arch == "transformer":
        per_seq = 2 * p_mm * length + mixer_flops_per_token(
            arch, cfg, _attended_keys(length, cfg.context_window)
        )
    else:
        per_seq = length * (2 * p_mm + mixer_flops_per_token(arch, cfg))
    weights = FLOAT_BYTES * p_all
    state = 2 * FLOAT_BYTES * batch * state_numel
    io = 2 * FLOAT_BYTES * batch * length * _hidden(cfg)
    return Work(batch * per_seq, weights + state + io, weights, state)


def train_work(arch: str, cfg: Any, params: dict[str, Any], batch: int, length: int) -> Work:
    """One training step on ``batch`` windows of ``length`` steps: forward, backward, AdamW."""
    p_all, _ = param_counts(params)
    fwd = forward_work(arch, cfg, params, 0, batch, length)
    flops = 3 * fwd.flops + 12 * p_all
    weights = FLOAT_BYTES * p_all
    io = 2 * FLOAT_BYTES * batch * length * _hidden(cfg)  # inputs and targets
    return Work(flops, 9 * weights + io, weights, 0.0)


__all__ = [
    "FLOAT_BYTES",
    "Work",
    "forward_work",
    "mixer_flops_per_token",
    "param_counts",
    "step_work",
    "train_work",
]
