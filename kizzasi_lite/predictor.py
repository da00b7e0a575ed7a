"""``Kizzasi``: the stateful stream predictor.

It owns the normalisation statistics, an input projection, the backbone (the architecture chosen
by ``config.model_type``), the output head and the recurrent state of its streams. Values go in and
come out in the user's units; inside, ``z = (x - mean) / std``.

Parameters, all in one flat dict saved as ``model.safetensors``::

    normalizer.mean, normalizer.std      (input_dim,)
    in_proj.weight (hidden, input_dim), in_proj.bias (hidden,)
    backbone.<architecture keys>
    head.weight (output_dim, hidden), head.bias (output_dim,)

The head predicts the next sample, ``x_{t+1}``; with ``input_dim == output_dim`` it predicts it as a
standardized increment over ``x_t`` (so an untrained model repeats the last value, a sane baseline).
Every call validates its input first and replaces the state only after it succeeded, so a failing
call leaves the predictor exactly as it was.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from kizzasi_lite.backends import dtype_of, get_namespace, namespace, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.config import KizzasiConfig
from kizzasi_lite.errors import ConfigError, InputError, WeightsError
from kizzasi_lite.models import Backbone, architecture
from kizzasi_lite.nn import linear
from kizzasi_lite.weights import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_params,
    load_file,
    read_json,
    save_file,
    write_json_atomic,
)

STATE_PREFIX = "state."


class Kizzasi:
    """Predict a multichannel signal one step at a time.

    >>> from kizzasi_lite import Kizzasi, KizzasiConfig
    >>> k = Kizzasi(KizzasiConfig(model_type="mamba", input_dim=3))
    >>> y = k.step([0.1, 0.2, 0.3])        # prediction of the next sample, shape (3,)
    >>> path = k.predict_n([0.1, 0.2, 0.3], 5)  # (5, 3) roll-out
    """

    def __init__(self, config: KizzasiConfig | None = None, *, params: dict | None = None) -> None:
        self.config = config or KizzasiConfig()
        self.xp = get_namespace(self.config.backend)
        self.dtype = dtype_of(self.xp, self.config.dtype)
        self.arch = self.config.model_type.architecture
        self.backbone_config = self.config.backbone_config()
        self.params = self._init_params() if params is None else params
        self._state: dict[str, Any] | None = None

    # ------------------------------------------------------------------ construction
    def _init_params(self) -> dict[str, Any]:
        c, xp, dt = self.config, self.xp, self.dtype
        rng = Generator(c.seed, xp)
        backbone = architecture(self.arch).init_params(self.backbone_config, rng, dt)
        params = {
            "normalizer.mean": xp.zeros((c.input_dim,), dtype=dt),
            "normalizer.std": xp.ones((c.input_dim,), dtype=dt),
            "in_proj.weight": rng.normal(
                (c.hidden_dim, c.input_dim), std=c.input_dim**-0.5, dtype=dt
            ),
            "in_proj.bias": xp.zeros((c.hidden_dim,), dtype=dt),
            # a zero head: the untrained model predicts "no change" (repeat the last value)
            "head.weight": xp.zeros((c.output_dim, c.hidden_dim), dtype=dt),
            "head.bias": xp.zeros((c.output_dim,), dtype=dt),
        }
        params.update({f"backbone.{k}": v for k, v in backbone.items()})
        return params

    @property
    def backbone(self) -> Backbone:
        """The architecture bound to the current backbone weights."""
        n = len("backbone.")
        weights = {k[n:]: v for k, v in self.params.items() if k.startswith("backbone.")}
        return Backbone(self.arch, self.backbone_config, weights)

    @property
    def residual(self) -> bool:
        """True when the head predicts an increment over the current sample."""
        return self.config.input_dim == self.config.output_dim

    @property
    def num_params(self) -> int:
        return sum(math.prod(v.shape) for v in self.params.values())

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> dict[str, Any] | None:
        """The recurrent state (a dict of arrays, batch first), or None before the first step."""
        return None if self._state is None else dict(self._state)

    @state.setter
    def state(self, value: dict[str, Any] | None) -> None:
        if value is None:
            self._state = None
            return
        if not isinstance(value, dict) or not value:
            raise InputError(
                f"state must be a non-empty dict of arrays, got {type(value).__name__}"
            )
        batch = int(next(iter(value.values())).shape[0])
        expected = self.backbone.init_state(batch)
        checked = {}
        for key, ref in expected.items():
            if key not in value:
                raise InputError(f"state is missing {key!r} (expected shape {tuple(ref.shape)})")
            arr = self._as_backend(value[key], f"state[{key!r}]", ref.shape)
            checked[key] = arr
        extra = sorted(set(value) - set(expected))
        if extra:
            raise InputError(f"state has unexpected entry {extra[0]!r}")
        self._state = checked

    def reset(self) -> None:
        """Forget the history: the next step starts from the zero state."""
        self._state = None

    def state_bytes(self) -> int:
        """Bytes of state held per stream."""
        return self.backbone.state_numel() * (8 if self.config.dtype == "float64" else 4)

    # ------------------------------------------------------------------ validation
    def _as_backend(self, x: Any, what: str, shape: tuple) -> Any:
        arr = self._check_numeric(x, what)
        if tuple(arr.shape) != tuple(shape):
            raise InputError(f"{what} must have shape {tuple(shape)}, got {tuple(arr.shape)}")
        return self.xp.asarray(arr.astype(self.config.dtype, copy=False), dtype=self.dtype)

    def _check_numeric(self, x: Any, what: str) -> np.ndarray:
        try:
            arr = np.asarray(to_numpy(x) if hasattr(x, "shape") else x)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{what} must be a numeric array, got {type(x).__name__}") from exc
        if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
            raise InputError(f"{what} must hold real numbers, got dtype {arr.dtype}")
        if arr.size and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise InputError(
                f"{what} must be finite; found {arr[tuple(bad)]} at index {tuple(bad)}"
            )
        return arr

    def _input(self, x: Any, what: str, ndim_one: int) -> tuple[Any, bool]:
        """Validate ``x`` of shape (..., input_dim); add the batch axis when absent."""
        arr = self._check_numeric(x, what)
        d = self.config.input_dim
        if arr.ndim not in (ndim_one, ndim_one + 1) or arr.shape[-1] != d:
            shapes = f"({d},) or (batch, {d})" if ndim_one == 1 else f"(T, {d}) or (batch, T, {d})"
            raise InputError(f"{what} must have shape {shapes}, got {arr.shape}")
        unbatched = arr.ndim == ndim_one
        if unbatched:
            arr = arr[None]
        return self.xp.asarray(
            arr.astype(self.config.dtype, copy=False), dtype=self.dtype
        ), unbatched

    def _current_state(self, batch: int) -> dict[str, Any]:
        if self._state is None:
            return self.backbone.init_state(batch)
        have = int(next(iter(self._state.values())).shape[0])
        if have != batch:
            raise InputError(
                f"this predictor holds the state of {have} stream(s) but got a batch of {batch}; "
                "call reset() to start over with a different number of streams"
            )
        return self._state

    # ------------------------------------------------------------------ the math
    def _encode(self, x: Any) -> Any:
        z = (x - self.params["normalizer.mean"]) / self.params["normalizer.std"]
        return linear(z, self.params["in_proj.weight"], self.params["in_proj.bias"])

    def _decode(self, h: Any, x: Any) -> Any:
        out = linear(h, self.params["head.weight"], self.params["head.bias"])
        if self.residual:
            z = (x - self.params["normalizer.mean"]) / self.params["normalizer.std"]
            out = out + z
        return out * self.params["normalizer.std"] + self.params["normalizer.mean"]

    def _step(self, x: Any, state: dict) -> tuple[Any, dict]:
        h, state = self.backbone.step(self._encode(x), state)  # (B, hidden)
        return self._decode(h, x), state  # (B, output_dim)

    def _out(self, y: Any, unbatched: bool) -> np.ndarray:
        y = to_numpy(y)
        return y[0] if unbatched else y

    # ------------------------------------------------------------------ public API
    def step(self, x: Any) -> np.ndarray:
        """Observe one sample, return the prediction of the next.

        ``x``: ``(input_dim,)`` for one stream or ``(batch, input_dim)`` for several; returns
        ``(output_dim,)`` or ``(batch, output_dim)`` as a NumPy array, in the user's units.
        """
        xb, unbatched = self._input(x, "x", 1)
        y, state = self._step(xb, self._current_state(xb.shape[0]))
        self._state = state
        return self._out(y, unbatched)

    def forward(self, xs: Any) -> np.ndarray:
        """Observe a sequence, return the next-step prediction after each sample.

        ``xs``: ``(T, input_dim)`` or ``(batch, T, input_dim)``; returns ``(T, output_dim)`` or
        ``(batch, T, output_dim)``. Equivalent to ``step`` over the samples, computed with the
        architecture's sequence path.
        """
        xb, unbatched = self._input(xs, "xs", 2)
        state = self._current_state(xb.shape[0])
        h, state = self.backbone.forward(self._encode(xb), state)  # (B, T, hidden)
        y = self._decode(h, xb)  # (B, T, output_dim)
        self._state = state
        return self._out(y, unbatched)

    def predict_n(self, x0: Any, n: int) -> np.ndarray:
        """Observe ``x0`` and roll the model forward ``n`` steps, feeding back its predictions.

        ``x0``: one sample ``(input_dim,)`` or a history ``(T, input_dim)`` (observed in order).
        Returns the ``(n, output_dim)`` trajectory after ``x0``. The predictor's state advances by
        the observed ``x0`` only; the roll-out runs on a copy. Needs ``output_dim == input_dim``.
        """
        if not self.residual:
            raise ConfigError(
                f"predict_n feeds predictions back as inputs, so output_dim must equal input_dim; "
                f"got input_dim={self.config.input_dim}, output_dim={self.config.output_dim}"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError(f"n must be a non-negative integer, got {n!r}")
        arr = self._check_numeric(x0, "x0")
        history = arr[None] if arr.ndim == 1 else arr
        xb, _ = self._input(history, "x0", 2)  # (1, T, D)
        state = self._current_state(1)
        h, state = self.backbone.forward(self._encode(xb), state)
        y = self._decode(h[:, -1, :], xb[:, -1, :])  # (1, D)
        observed, outs = state, []
        for i in range(n):
            outs.append(y)
            if i + 1 < n:
                y, state = self._step(y, state)
        self._state = observed
        if not outs:
            return np.zeros((0, self.config.output_dim), dtype=self.config.dtype)
        return to_numpy(namespace(outs[0]).concat(outs, axis=0))

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | Path, *, include_state: bool = False) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into folder ``path`` (created)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: to_numpy(v) for k, v in self.params.items()}
        if include_state and self._state is not None:
            tensors.update({STATE_PREFIX + k: to_numpy(v) for k, v in self._state.items()})
        save_file(tensors, path / WEIGHTS_NAME, metadata={"format": "kizzasi_lite"})
        write_json_atomic(
            {"kizzasi_lite": self.config.to_dict(), "backbone": self.backbone_config.to_dict()},
            path / CONFIG_NAME,
        )
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, *, backend: str | None = None) -> Kizzasi:
        """Load a folder written by :meth:`save_pretrained` (state too, when it was saved)."""
        path = Path(path)
        meta = read_json(path / CONFIG_NAME)
        if "kizzasi_lite" not in meta:
            raise WeightsError(
                f"{path / CONFIG_NAME} is not a kizzasi_lite config (no 'kizzasi_lite')"
            )
        fields = dict(meta["kizzasi_lite"])
        if backend is not None:
            fields["backend"] = backend
        config = KizzasiConfig.from_dict(fields)
        model = cls(config)
        tensors, _ = load_file(path / WEIGHTS_NAME)
        state = {
            k[len(STATE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(STATE_PREFIX)
        }
        weights = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)}
        check_params(
            {k: v.shape for k, v in model.params.items()}, weights, str(path / WEIGHTS_NAME)
        )
        model.params = {
            k: model.xp.asarray(v.astype(config.dtype, copy=False), dtype=model.dtype)
            for k, v in weights.items()
        }
        if state:
            model.state = state
        return model

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Kizzasi({c.model_type.value}, input_dim={c.input_dim}, output_dim={c.output_dim}, "
            f"hidden_dim={c.hidden_dim}, num_layers={c.num_layers}, params={self.num_params:,}, "
            f"backend={c.backend}, dtype={c.dtype})"
        )
