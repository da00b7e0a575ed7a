"""``Kizzasi``: the stateful stream predictor.

It owns the normalisation statistics, the input projection, the backbone (the architecture chosen
by ``config.model_type``), the output heads and the recurrent state of its streams; the math is in
:mod:`kizzasi_lite.heads`. Values go in and come out in the user's units.

With ``input_dim == output_dim`` the head predicts the next sample as an increment over the current
one, and starts at zero, so an untrained model repeats the last value (a sane baseline). Every call
validates its input first and replaces the state only after it succeeded: a failing call leaves the
predictor exactly as it was.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from kizzasi_lite import heads
from kizzasi_lite.backends import dtype_of, get_namespace, namespace, overflow_quiet, to_numpy
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.config import KizzasiConfig
from kizzasi_lite.errors import ConfigError, InputError, WeightsError
from kizzasi_lite.models import Backbone, architecture
from kizzasi_lite.weights import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_params,
    load_file,
    read_json,
    read_training_info,
    save_file,
    write_json_atomic,
)

STATE_PREFIX = "state."
TRAINING_NAME = "training.json"
GUARDRAILS_NAME = "guardrails.json"


def _guarded(rails: Any, seq: Any, previous: Any) -> tuple[Any, Any, Any]:
    """``seq`` (B, T, D) guarded one step after the other (rate limits and temporal rules run in
    time order) by ``rails``, whose rule history advances: the guarded (B, T, D), its last step
    and the last report."""
    outs, report = [], None
    for t in range(seq.shape[1]):
        previous, report = rails.enforce(seq[:, t, :], previous)
        outs.append(previous)
    return namespace(*outs).stack(outs, axis=1), previous, report


def _too_large(exc: ValueError) -> bool:
    """True for NumPy's refusal of an array too large to exist (not a memory shortage)."""
    text = str(exc)
    return "Maximum allowed dimension" in text or "array is too big" in text


class Kizzasi:
    """Predict a multichannel signal one step at a time, learn it from data, score anomalies.

    >>> from kizzasi_lite import Kizzasi, KizzasiConfig
    >>> k = Kizzasi(KizzasiConfig(model_type="mamba", input_dim=3))
    >>> y = k.step([0.1, 0.2, 0.3])             # prediction of the next sample, shape (3,)
    >>> path = k.predict_n([0.1, 0.2, 0.3], 5)  # (5, 3) roll-out
    """

    def __init__(self, config: KizzasiConfig | None = None) -> None:
        self.config = config or KizzasiConfig()
        self.xp = get_namespace(self.config.backend)
        self.dtype = dtype_of(self.xp, self.config.dtype)
        self.arch = self.config.model_type.architecture
        self.backbone_config = self.config.backbone_config()
        try:
            self.params = self._init_params()
        except (MemoryError, ValueError) as exc:
            if isinstance(exc, ValueError) and not _too_large(exc):
                raise
            c = self.config
            raise ConfigError(
                f"cannot allocate the weights of this config (hidden_dim={c.hidden_dim}, "
                f"state_dim={c.state_dim}, num_layers={c.num_layers}, input_dim={c.input_dim}, "
                f"forecast_horizon={c.forecast_horizon}): {exc}"
            ) from exc
        self.info: dict[str, Any] = {}  # training history, anomaly threshold, metrics
        self.guardrails: Any = None  # a logic.GuardrailSet, applied to every prediction
        self.last_raw: np.ndarray | None = None  # the last prediction before the guardrails
        self.last_report: Any = None  # what the guardrails did to it
        self._state: dict[str, Any] | None = None
        self._emitted: Any = None  # the last guarded outputs (B, Dout): rate limits read them
        self._pending: Any = None  # one stream's last (mean, scale): score_one scores against it

    # ------------------------------------------------------------------ construction
    def _init_params(self) -> dict[str, Any]:
        c, xp, dt = self.config, self.xp, self.dtype
        rng = Generator(c.seed, xp)
        backbone = architecture(self.arch).init_params(self.backbone_config, rng, dt)
        k = 2 if c.head == "gaussian" else 1
        d, din, dout = c.hidden_dim, c.input_dim, c.output_dim
        params = {
            "normalizer.mean": xp.zeros((din,), dtype=dt),
            "normalizer.std": xp.ones((din,), dtype=dt),
            "in_proj.weight": rng.normal((d, din), std=din**-0.5, dtype=dt),
            # a random bias keeps the embedding affine: the backbone's pre-norms would otherwise
            # reduce a one-channel signal to its sign
            "in_proj.bias": rng.normal((d,), dtype=dt),
            # a zero head: the untrained model predicts "no change" (repeat the last value)
            "head.weight": xp.zeros((k * dout, d), dtype=dt),
            "head.bias": xp.zeros((k * dout,), dtype=dt),
        }
        if c.forecast_horizon:
            h, lb = c.forecast_horizon, c.forecast_lookback
            n_tok, patch_in = -(-lb // c.forecast_patch), c.forecast_patch * din
            params["forecast.embed.weight"] = rng.normal(
                (d, patch_in), std=patch_in**-0.5, dtype=dt
            )
            params["forecast.embed.bias"] = rng.normal((d,), dtype=dt)  # as in_proj.bias
            # a zero correction: the untrained forecast is the highway alone
            params["forecast.weight"] = xp.zeros((h * dout, n_tok * d), dtype=dt)
            params["forecast.bias"] = xp.zeros((h * dout,), dtype=dt)
            last = [[1.0 if j == lb - 1 else 0.0 for j in range(lb)] for _ in range(h)]
            params["forecast.highway.weight"] = xp.asarray(last, dtype=dt)  # repeat-last start
            params["forecast.highway.bias"] = xp.zeros((h,), dtype=dt)
        params.update({f"backbone.{k}": v for k, v in backbone.items()})
        # one memory layout for fresh and loaded weights, so both compute bit for bit alike
        return {k: self._to_backend(to_numpy(v)) for k, v in params.items()}

    @property
    def backbone(self) -> Backbone:
        """The architecture bound to the current backbone weights."""
        return Backbone(self.arch, self.backbone_config, heads.backbone_params(self.params))

    @property
    def residual(self) -> bool:
        """True when the heads predict increments over the current sample."""
        return self.config.input_dim == self.config.output_dim

    @property
    def gaussian(self) -> bool:
        return self.config.head == "gaussian"

    @property
    def num_params(self) -> int:
        return sum(math.prod(v.shape) for v in self.params.values())

    def zero_state(self, batch: int) -> dict[str, Any]:
        """The zero state of ``batch`` streams, on this predictor's backend."""
        return architecture(self.arch).init_state(
            self.backbone_config, batch, xp=self.xp, dtype=self.dtype
        )

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
        first = np.shape(next(iter(value.values())))
        if not first:
            raise InputError("state entries must be arrays with the batch axis first, got a scalar")
        expected = self.zero_state(int(first[0]))
        extra = sorted(set(value) - set(expected))
        if extra:
            raise InputError(f"state has unexpected entry {extra[0]!r}")
        checked = {}
        for key, ref in expected.items():
            if key not in value:
                raise InputError(f"state is missing {key!r} (expected shape {tuple(ref.shape)})")
            arr = self._numeric(value[key], f"state[{key!r}]")
            if tuple(arr.shape) != tuple(ref.shape):
                raise InputError(
                    f"state[{key!r}] must have shape {tuple(ref.shape)}, got {tuple(arr.shape)}"
                )
            checked[key] = self._to_backend(arr)
        self._state = checked

    def reset(self) -> None:
        """Forget the history: the next step starts from the zero state, and the guardrails'
        temporal rules and rate limits from no previous output."""
        self._state = None
        self._emitted = self._pending = None
        if self.guardrails is not None:
            self.guardrails.reset()

    # ------------------------------------------------------------------ guardrails
    def set_guardrails(self, guardrails: Any) -> None:
        """Enforce ``guardrails`` on every prediction from now on (None removes them).

        Accepts a :class:`~kizzasi_lite.logic.GuardrailSet`, a guardrail, a constraint or a list
        of them. Each returned prediction is the Euclidean projection of the model's output onto
        the constraints (see :mod:`kizzasi_lite.logic`); ``last_raw`` and ``last_report`` hold the
        unguarded prediction and what the projection did.
        """
        if guardrails is None:
            self.guardrails = None
            return
        from kizzasi_lite.logic import as_guardrail_set

        gs = as_guardrail_set(guardrails)
        gs.check_channels(self.config.output_dim)  # a channel or a coefficient count that misfits
        gs.reset()
        self.guardrails, self._emitted = gs, None

    def _guard(self, y: Any, previous: Any) -> tuple[Any, Any]:
        """(B, Dout) raw prediction -> guarded prediction and the report (identity if none)."""
        if self.guardrails is None:
            return y, None
        return self.guardrails.enforce(y, previous)

    def state_bytes(self) -> int:
        """Bytes of state held per stream."""
        return self.backbone.state_numel() * (8 if self.config.dtype == "float64" else 4)

    # ------------------------------------------------------------------ validation
    def _numeric(self, x: Any, what: str) -> np.ndarray:
        try:
            arr = np.asarray(to_numpy(x) if hasattr(x, "shape") else x)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{what} must be a numeric array, got {type(x).__name__}") from exc
        if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
            raise InputError(f"{what} must hold real numbers, got dtype {arr.dtype}")
        top = float(np.max(np.abs(arr))) if arr.size else 0.0  # one pass: NaN, inf and range
        if not math.isfinite(top):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise InputError(f"{what} must be finite; found {arr[bad]} at index {bad}")
        big = float(np.finfo(self.config.dtype).max)
        if top > big:
            bad = tuple(int(i) for i in np.argwhere(np.abs(arr) > big)[0])
            raise InputError(
                f"{what} must fit in {self.config.dtype} (magnitude at most {big:.4g}); found "
                f"{arr[bad]} at index {bad}"
            )
        return arr

    def _finite(self, mean: Any) -> None:
        """Refuse a prediction that overflowed (an input far outside what the model has seen):
        raised before the state is replaced, so the predictor stays usable."""
        if not bool(self.xp.all(self.xp.isfinite(mean))):
            raise InputError(
                "the model's prediction overflowed to inf or NaN for this input (it is far outside "
                "the range the model was trained on); the state is left unchanged"
            )

    def _to_backend(self, arr: np.ndarray) -> Any:
        arr = np.ascontiguousarray(arr, dtype=self.config.dtype)
        return self.xp.asarray(arr, dtype=self.dtype)

    def _input(self, x: Any, what: str, ndim_one: int) -> tuple[Any, bool]:
        """Validate ``x`` of shape (..., input_dim); add the batch axis when absent."""
        arr = self._numeric(x, what)
        d = self.config.input_dim
        if arr.ndim not in (ndim_one, ndim_one + 1) or arr.shape[-1] != d:
            one = f"({d},)" if ndim_one == 1 else f"(T, {d})"
            many = f"(batch, {d})" if ndim_one == 1 else f"(batch, T, {d})"
            raise InputError(f"{what} must have shape {one} or {many}, got {arr.shape}")
        unbatched = arr.ndim == ndim_one
        return self._to_backend(arr[None] if unbatched else arr), unbatched

    def _current_state(self, batch: int) -> dict[str, Any]:
        if self._state is None:
            return self.zero_state(batch)
        have = int(next(iter(self._state.values())).shape[0])
        if have != batch:
            raise InputError(
                f"this predictor holds the state of {have} stream(s) but got a batch of {batch}; "
                "call reset() to start over with a different number of streams"
            )
        return self._state

    # ------------------------------------------------------------------ the math
    def _step(self, x: Any, state: dict) -> tuple[Any, Any, dict]:
        """(B, Din) user units -> mean (B, Dout) user units, scale or None, state."""
        p = self.params
        with overflow_quiet(self.xp):  # an overflow is refused by _finite, not warned of
            mean, scale, state = heads.next_step(
                self.arch, self.backbone_config, p, heads.standardize(p, x), state,
                residual=self.residual, gaussian=self.gaussian,
            )  # fmt: skip
            return self._user(mean, scale) + (state,)

    def _sequence(self, xs: Any, state: dict) -> tuple[Any, Any, dict]:
        """(B, T, Din) user units -> mean (B, T, Dout), scale or None, final state."""
        p = self.params
        with overflow_quiet(self.xp):
            mean, scale, state = heads.next_sequence(
                self.arch, self.backbone_config, p, heads.standardize(p, xs), state,
                residual=self.residual, gaussian=self.gaussian,
            )  # fmt: skip
            return self._user(mean, scale) + (state,)

    def _user(self, mean: Any, scale: Any) -> tuple[Any, Any]:
        p = self.params
        if not self.residual:  # outputs other than the inputs carry no input statistics
            return mean, scale
        mean = heads.unstandardize(p, mean)
        return mean, None if scale is None else heads.unstandardize(p, scale, scale=True)

    # ------------------------------------------------------------------ streaming
    def step(self, x: Any) -> np.ndarray:
        """Observe one sample, return the prediction of the next.

        ``x``: ``(input_dim,)`` for one stream or ``(batch, input_dim)`` for several; returns
        ``(output_dim,)`` or ``(batch, output_dim)`` (the mean, in the user's units).
        """
        xb, unbatched = self._input(x, "x", 1)
        mean, scale, state = self._step(xb, self._current_state(xb.shape[0]))
        self._finite(mean)
        safe, report = self._guard(mean, self._emitted)
        self._state, self.last_report = state, report
        self._latest(mean, scale, unbatched)
        if self.guardrails is not None:
            self._emitted = safe
        y = to_numpy(safe)
        return y[0] if unbatched else y

    def _latest(self, mean: Any, scale: Any, unbatched: bool) -> None:
        """Keep the newest prediction (B, Dout): ``last_raw`` in the shape the caller gets, and
        one stream's (mean, scale) for :meth:`score_one`."""
        raw = to_numpy(mean)
        self.last_raw = raw[0] if unbatched else raw
        self._pending = (mean, scale) if mean.shape[0] == 1 else None

    def forward(self, xs: Any) -> np.ndarray:
        """Observe a sequence, return the next-step prediction after each sample.

        ``xs``: ``(T, input_dim)`` or ``(batch, T, input_dim)``; returns ``(T, output_dim)`` or
        ``(batch, T, output_dim)``. Equals ``step`` over the samples, computed with the
        architecture's sequence path.
        """
        xb, unbatched = self._input(xs, "xs", 2)
        mean, scale, state = self._sequence(xb, self._current_state(xb.shape[0]))
        self._finite(mean)
        y = mean
        if self.guardrails is not None and mean.shape[1]:
            # on a fork of the rules' history: a step that cannot be guarded leaves it as it was
            fork = self.guardrails.fork()
            y, self._emitted, self.last_report = _guarded(fork, mean, self._emitted)
            self.guardrails.adopt(fork)
        y = to_numpy(y)
        if mean.shape[1]:
            last = None if scale is None else scale[:, -1, :]
            self._latest(mean[:, -1, :], last, unbatched)
        self._state = state
        return y[0] if unbatched else y

    def predict_n(
        self, x0: Any, n: int, *, samples: int | None = None, temperature: float = 1.0,
        seed: int | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Observe ``x0`` and roll the model forward ``n`` steps, feeding back its predictions.

        ``x0``: one sample ``(input_dim,)`` or a history ``(T, input_dim)`` (observed in order).
        Returns the ``(n, output_dim)`` mean roll-out, or with ``samples=K`` (Gaussian head) ``K``
        sampled trajectories ``(K, n, output_dim)`` drawn with the predicted standard deviation
        times ``temperature``. The predictor's state advances by the observed ``x0`` only. With
        guardrails, every roll-out step is guarded (and the guarded value fed back).
        """
        if not self.residual:
            raise ConfigError(
                "predict_n feeds predictions back as inputs, so output_dim must equal input_dim; "
                f"got input_dim={self.config.input_dim}, output_dim={self.config.output_dim}"
            )
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise InputError(f"n must be a non-negative integer, got {n!r}")
        n = int(n)
        if samples is not None and (
            isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1
        ):
            raise InputError(f"samples must be a positive integer, got {samples!r}")
        if samples is not None and not self.gaussian:
            raise ConfigError("sampling trajectories needs head='gaussian' in the config")
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, numbers.Real)
            or not (math.isfinite(temperature) and temperature >= 0)
        ):
            raise InputError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
        ):
            raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
        arr = self._numeric(x0, "x0")
        d = self.config.input_dim
        if arr.ndim not in (1, 2) or arr.shape[-1] != d or (arr.ndim == 2 and not len(arr)):
            raise InputError(
                f"x0 must be one sample ({d},) or a history (T, {d}) with T >= 1 of one stream, "
                f"got shape {arr.shape}"
            )
        xb, _ = self._input(arr[None] if arr.ndim == 1 else arr, "x0", 2)  # (1, T, D)
        mean, scale, observed = self._sequence(xb, self._current_state(1))
        self._finite(mean)
        k = samples or 1
        y, state = mean[:, -1, :], observed  # (1, D)
        scale = None if scale is None else scale[:, -1, :]
        observed_next = (y, scale)  # the prediction after x0, for score_one
        if k > 1:
            xp = self.xp
            y = xp.concat([y] * k, axis=0)  # (K, D)
            scale = xp.concat([scale] * k, axis=0)
            state = {key: xp.concat([v] * k, axis=0) for key, v in state.items()}
        rng = np.random.default_rng(seed)
        outs, prev = [], self._emitted
        if prev is not None and k > 1:
            prev = self.xp.concat([prev] * k, axis=0)
        # a guarded roll-out feeds back guarded values, and its temporal rules see its own
        # earlier steps: on a fork of the live history (k copies of it), left as it was
        fork = None if self.guardrails is None else self.guardrails.fork(k if k > 1 else None)
        for i in range(n):
            if samples is not None:
                noise = rng.standard_normal(tuple(y.shape)).astype(self.config.dtype)
                with overflow_quiet(self.xp):
                    y = y + self.xp.asarray(noise) * scale * temperature
            self._finite(y)  # a roll-out that overflowed is refused (the state is kept)
            if fork is not None:
                y, _ = fork.enforce(y, prev)
                prev = y
            outs.append(to_numpy(y))
            if i + 1 < n:
                y, scale, state = self._step(y, state)
        self._state = observed
        self._latest(*observed_next, True)
        traj = np.stack(outs, axis=1) if outs else np.zeros((k, 0, self.config.output_dim))
        return traj if samples is not None else traj[0]

    def forecast(self, history: Any, horizon: int | None = None) -> np.ndarray:
        """Direct multi-horizon forecast: ``history`` ``(T, D)`` or ``(B, T, D)`` -> ``(h, D)``.

        Uses the last ``forecast_lookback`` samples of ``history`` and the head trained with
        ``fit(..., objective="forecast")``; ``horizon`` <= ``config.forecast_horizon``. The
        stream state is not touched. With guardrails, the forecast's steps are guarded in time
        order as a stream of their own: rate limits from the last sample of ``history``,
        temporal rules from no earlier output (the live rule history is left as it is).
        """
        c = self.config
        if not c.forecast_horizon or not self.residual:
            raise ConfigError(
                "forecast needs forecast_horizon > 0 and input_dim == output_dim in the config"
            )
        h = c.forecast_horizon if horizon is None else horizon
        if (
            isinstance(h, bool)
            or not isinstance(h, numbers.Integral)
            or not 1 <= h <= c.forecast_horizon
        ):
            raise InputError(
                f"horizon must be an integer in [1, {c.forecast_horizon}], got {horizon!r}"
            )
        h = int(h)
        xb, unbatched = self._input(history, "history", 2)
        lb = c.forecast_lookback
        if xb.shape[1] < lb:
            raise InputError(f"history needs at least {lb} samples, got {xb.shape[1]}")
        z = heads.standardize(self.params, xb[:, xb.shape[1] - lb :, :])
        pred = heads.unstandardize(self.params, self._forecast_z(self.params, z)[:, :h, :])
        self._finite(pred)
        if self.guardrails is not None:  # a stream of its own, from the last observed sample
            fork = self.guardrails.fork()
            fork.reset()
            pred = _guarded(fork, pred, xb[:, -1, :])[0]
        y = to_numpy(pred)
        return y[0] if unbatched else y

    def _forecast_z(self, params: dict, z: Any, state: dict | None = None) -> Any:
        """The forecast head on a standardized window (B, L, C) -> (B, H, C), from ``state``
        (default zeros); fit calls it with autodiff tensors in ``params``."""
        c = self.config
        state = self.zero_state(z.shape[0]) if state is None else state
        return heads.forecast_direct(
            self.arch, self.backbone_config, params, z, state,
            patch=c.forecast_patch, revin=c.revin,
        )  # fmt: skip

    # ------------------------------------------------------------------ learning
    def fit(self, series: Any, **options: Any) -> dict[str, list]:
        """Learn from ``series``; see :func:`kizzasi_lite.train.fit.fit` for the options."""
        from kizzasi_lite.train.fit import fit

        return fit(self, series, **options)

    def update(self, x: Any, **options: Any) -> np.ndarray:
        """Observe ``x`` like :meth:`step` and adapt online; see :mod:`kizzasi_lite.train.online`."""
        from kizzasi_lite.train.online import update

        return update(self, x, **options)

    # ------------------------------------------------------------------ anomaly scores
    def score(self, series: Any) -> dict[str, np.ndarray]:
        """Per-step anomaly scores of ``series`` (T, D); see :mod:`kizzasi_lite.inference.anomaly`."""
        from kizzasi_lite.inference.anomaly import score

        return score(self, series)

    def score_one(self, x: Any) -> float:
        """Score the new sample ``x`` against the last prediction, then step on it."""
        from kizzasi_lite.inference.anomaly import score_one

        return score_one(self, x)

    def detect(self, series: Any, threshold: float | None = None) -> np.ndarray:
        """Indices of the steps of ``series`` whose score exceeds the threshold."""
        from kizzasi_lite.inference.anomaly import detect

        return detect(self, series, threshold)

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | Path, *, include_state: bool = False) -> Path:
        """Write ``model.safetensors``, ``config.json``, ``training.json`` (and
        ``guardrails.json`` when guardrails are set) into folder ``path``."""
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
        write_json_atomic(self.info, path / TRAINING_NAME)
        rails = path / GUARDRAILS_NAME
        if self.guardrails is not None:
            write_json_atomic(self.guardrails.to_dict(), rails)
        elif rails.exists():
            rails.unlink()
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, *, backend: str | None = None) -> Kizzasi:
        """Load a folder written by :meth:`save_pretrained` (state too, when it was saved)."""
        path = Path(path)
        meta = read_json(path / CONFIG_NAME)
        if not isinstance(meta.get("kizzasi_lite"), dict):
            raise WeightsError(
                f"{path / CONFIG_NAME} is not a kizzasi_lite config (expected an object under "
                f"'kizzasi_lite', got {type(meta.get('kizzasi_lite')).__name__})"
            )
        fields = dict(meta["kizzasi_lite"])
        if backend is not None:
            fields["backend"] = backend
        model = cls(KizzasiConfig.from_dict(fields))
        tensors, _ = load_file(path / WEIGHTS_NAME)
        n = len(STATE_PREFIX)
        state = {k[n:]: v for k, v in tensors.items() if k.startswith(STATE_PREFIX)}
        weights = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)}
        check_params({k: v.shape for k, v in model.params.items()}, weights, str(path))
        model.params = {k: model._to_backend(v) for k, v in weights.items()}
        if state:
            model.state = state
        if (path / TRAINING_NAME).is_file():
            model.info = read_training_info(path / TRAINING_NAME)
            scale = model.info.get("error_scale")
            if scale is not None and len(scale) != model.config.input_dim:
                raise WeightsError(
                    f"{path / TRAINING_NAME}: 'error_scale' must hold {model.config.input_dim} "
                    f"values (one per channel), got {len(scale)}"
                )
        if (path / GUARDRAILS_NAME).is_file():
            from kizzasi_lite.logic import GuardrailSet

            model.set_guardrails(GuardrailSet.from_dict(read_json(path / GUARDRAILS_NAME)))
        return model

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Kizzasi({c.model_type.value}, input_dim={c.input_dim}, output_dim={c.output_dim}, "
            f"hidden_dim={c.hidden_dim}, num_layers={c.num_layers}, params={self.num_params:,}, "
            f"backend={c.backend}, dtype={c.dtype})"
        )
