"""AdamW with global-norm gradient clipping and a warm-up + cosine learning-rate schedule.

Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019); Kingma & Ba, "Adam"
(ICLR 2015). Pure functions over dicts of arrays: the optimizer state is data, saved like weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kizzasi_lite.backends import namespace


def global_norm(grads: dict[str, Any]) -> float:
    """sqrt of the sum of squares of every gradient entry."""
    total = 0.0
    for g in grads.values():
        xp = namespace(g)
        total += float(xp.sum(g * g))
    return math.sqrt(total)


def clip_by_global_norm(grads: dict[str, Any], max_norm: float) -> tuple[dict[str, Any], float]:
    """Scale all gradients by ``min(1, max_norm / norm)``; returns (clipped, norm before).

    ``max_norm <= 0`` turns clipping off, and gradients whose norm is not finite come back as
    they are (the caller skips that step)."""
    norm = global_norm(grads)
    if max_norm <= 0 or norm <= max_norm or not math.isfinite(norm):
        return grads, norm
    s = max_norm / norm
    return {k: g * s for k, g in grads.items()}, norm


def cosine_schedule(step: int, total: int, base_lr: float, warmup: int, final_frac: float = 0.1):
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``final_frac * base_lr``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class AdamW:
    """AdamW. ``update(params, grads, lr)`` returns new params; the moments live in ``state``."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    no_decay: tuple[str, ...] = (
        "bias",
        "norm",
        "ln",
        "A_log",
        "D",
        "dt_bias",
        "time_",
        "normalizer",
    )

    def __post_init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.t = 0

    def _decays(self, key: str) -> bool:
        return self.weight_decay > 0 and not any(tag in key for tag in self.no_decay)

    def update(self, params: dict[str, Any], grads: dict[str, Any], lr: float | None = None):
        """One AdamW step; parameters without a gradient entry are left as they are."""
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        out = dict(params)
        for key, g in grads.items():
            p = params[key]
            m, v = self.state.get(key, (g * 0.0, g * 0.0))
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * (g * g)
            self.state[key] = (m, v)
            xp = namespace(p)
            step = (m / c1) / (xp.sqrt(v / c2) + self.eps)
            if self._decays(key):
                p = p * (1 - lr * self.weight_decay)
            out[key] = p - lr * step
        return out
