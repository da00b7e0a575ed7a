"""Online adaptation after ``fit``: ``update(x)`` predicts like ``step`` and learns as it goes.

Memory is bounded: the last ``buffer`` samples (a fixed-size array) and one AdamW state. Every
``every`` samples one gradient step is taken on the buffer (next-step loss from the zero state,
the first quarter of the buffer only warming the state up), with learning rate ``lr``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from kizzasi_lite import heads
from kizzasi_lite.autodiff import value_and_grad
from kizzasi_lite.backends import to_numpy
from kizzasi_lite.errors import ConfigError, InputError
from kizzasi_lite.train.losses import gaussian_nll, mse
from kizzasi_lite.train.optim import AdamW, clip_by_global_norm


class _Online:
    def __init__(self, model: Any, buffer: int, lr: float) -> None:
        self.data = np.zeros((0, model.config.input_dim))
        self.size, self.seen = buffer, 0
        self.opt = AdamW(lr=lr)


def update(
    model: Any, x: Any, *, lr: float = 1e-3, every: int = 16, buffer: int = 128
) -> np.ndarray:
    """Observe ``x`` (one stream, shape (D,)), return the next-step prediction, adapt the weights."""
    for name, v, low in (("buffer", buffer, 8), ("every", every, 1)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
            raise ConfigError(f"update needs {name} an integer >= {low}, got {v!r:.80}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf:
        raise ConfigError(f"update needs lr a finite number > 0, got {lr!r:.80}")
    d = model.config.input_dim
    shape = model._numeric(x, "x").shape
    if shape != (d,):
        raise InputError(f"update takes one sample of one stream, shape ({d},); got {shape}")
    y = model.step(x)
    on = getattr(model, "_online", None)
    if on is None or on.size != buffer:
        on = model._online = _Online(model, buffer, lr)
    on.data = np.concatenate([on.data, np.asarray(x, dtype=np.float64)[None]])[-buffer:]
    on.seen += 1
    if on.seen % every == 0 and len(on.data) == buffer:
        _learn(model, on, lr)
    return y


def _learn(model: Any, on: _Online, lr: float) -> None:
    keys = [k for k in model.params if not k.startswith(("normalizer.", "forecast."))]
    const = {k: v for k, v in model.params.items() if k not in keys}
    mean, std = (np.asarray(to_numpy(model.params[f"normalizer.{k}"])) for k in ("mean", "std"))
    z = (on.data - mean) / std
    zb = model._to_backend(z[None])
    warm = len(z) // 4

    def fn(p, const, zb, state):
        mean, scale, _ = heads.next_sequence(
            model.arch, model.backbone_config, {**const, **p}, zb[:, :-1, :], state,
            residual=True, gaussian=model.gaussian,
        )  # fmt: skip
        target = zb[:, warm + 1 :, :]
        if model.gaussian:
            return gaussian_nll(mean[:, warm:, :], scale[:, warm:, :], target)
        return mse(mean[:, warm:, :], target)

    trained = {k: model.params[k] for k in keys}
    _, grads = value_and_grad(fn, trained, const, zb, model.zero_state(1))
    grads, norm = clip_by_global_norm(grads, 1.0)
    if math.isfinite(norm):  # an update that overflowed is skipped, not applied
        model.params = {**model.params, **on.opt.update(trained, grads, lr)}
