"""The fit loop: split in time order, standardize on the training part, window, train, stop early.

Two objectives:

- ``"next_step"`` (default): predict every next sample. Each training series is cut into streams of
  ``windows_per_stream`` consecutive windows of ``window`` steps; a batch of streams is trained
  window after window with the recurrent state carried across windows and cut from the gradient
  (truncated back-propagation through time), from a random offset each epoch.
- ``"forecast"``: the direct multi-horizon head. Every look-back window of
  ``config.forecast_lookback`` samples (stride ``stride``) is a sample whose target is the next
  ``config.forecast_horizon`` samples; the backbone starts from the zero state on each window,
  exactly as :meth:`~kizzasi_lite.Kizzasi.forecast` runs at inference.

Validation is the last ``val_fraction`` of each series (time order, never shuffled); the best
parameters on validation loss are kept; training stops after ``patience`` epochs without
improvement or when ``time_budget`` seconds have passed.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kizzasi_lite import heads
from kizzasi_lite.autodiff import Tensor, value_and_grad
from kizzasi_lite.errors import ConfigError, InputError
from kizzasi_lite.train.losses import LOSSES, gaussian_nll
from kizzasi_lite.train.optim import AdamW, clip_by_global_norm, cosine_schedule
from kizzasi_lite.train.progress import Progress


def as_series(model: Any, series: Any, columns: list[str] | None = None) -> list[np.ndarray]:
    """One or many series -> a list of float64 arrays (T, input_dim); a path is read by
    :func:`~kizzasi_lite.io.read_data` (CSV, audio, HDF5, .npy or JSON lines, by its suffix)."""
    if isinstance(series, str | Path):
        from kizzasi_lite.io import read_data

        series = read_data(series, columns).data
    if isinstance(series, np.ndarray) or _is_matrix(series) or _is_one_list(series, model):
        items = [series]
    else:
        try:
            items = list(series)
        except TypeError:
            raise InputError(
                "series must be an array (T, input_dim), a list of them, or a file's path; "
                f"got {type(series).__name__}"
            ) from None
    out = []
    d = model.config.input_dim
    for i, s in enumerate(items):
        arr = model._numeric(s, f"series[{i}]").astype(np.float64)
        if arr.ndim == 1 and d == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != d:
            raise InputError(f"series[{i}] must have shape (T, {d}), got {arr.shape}")
        out.append(arr)
    if not out:
        raise InputError("fit needs at least one series")
    return out


def _is_matrix(obj: Any) -> bool:
    return hasattr(obj, "shape") and len(obj.shape) == 2


def _is_one_list(obj: Any, model: Any) -> bool:
    """A list of numbers (T,) or of rows (T, input_dim): one series, as ``step`` takes lists."""
    if not isinstance(obj, list | tuple) or not obj:
        return False
    first = obj[0]
    if isinstance(first, numbers.Real):
        return True  # (T,): a list of samples, not of series
    d = model.config.input_dim
    rows = isinstance(first, list | tuple) and len(first) == d
    return rows and all(isinstance(v, numbers.Real) for v in first)


def detach(tree: dict[str, Any]) -> dict[str, Any]:
    """Plain arrays from a dict that may hold autodiff tensors (cuts the gradient)."""
    return {k: v.value if isinstance(v, Tensor) else v for k, v in tree.items()}


def fit(
    model: Any,
    series: Any,
    *,
    objective: str = "next_step",
    epochs: int = 20,
    batch_size: int = 32,
    window: int | None = None,
    windows_per_stream: int = 4,
    stride: int = 1,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    clip: float = 1.0,
    loss: str | Callable[[Any, Any], Any] = "mse",
    val_fraction: float = 0.2,
    val_series: Any = None,
    patience: int = 5,
    time_budget: float | None = None,
    max_steps_per_epoch: int | None = None,
    columns: list[str] | None = None,
    freeze: tuple[str, ...] = (),
    seed: int | None = None,
    verbose: bool = True,
) -> dict[str, list]:
    """Train ``model`` on ``series`` and return the history (one entry per epoch).

    ``series``: an array (T, input_dim), a list of them, or a file's path in any format of
    :func:`~kizzasi_lite.io.read_data` (``columns`` picks channels). ``val_series`` gives
    validation data explicitly instead of ``val_fraction``.
    ``freeze``: parameter-name prefixes left as they are (e.g. ``("forecast.highway",)``).
    ``clip``: the largest global gradient norm (0: no clipping). Every count must be a positive
    integer (``window`` and ``max_steps_per_epoch`` may be None) and ``lr`` a number > 0, else
    ``ConfigError``; NumPy integers and floats are taken as Python's.
    ``loss``: ``"mse"``, ``"mae"`` or ``"huber"`` in normalised units, or a callable
    ``loss(pred, target) -> scalar`` given both in the data's units, (B, T, C) (or (B, H, C) for
    the forecast objective), e.g. ``ConstraintAwareLoss(mse, guardrails, weight=10.0)`` to train
    the raw predictions to respect constraints (validation and early stopping then use it too);
    the Gaussian head always uses its negative log-likelihood. The
    normalisation statistics come from the training part only, unless the model was already
    trained (resuming keeps them).
    """
    counts = {"epochs": epochs, "batch_size": batch_size, "stride": stride,
              "windows_per_stream": windows_per_stream, "patience": patience,
              "window": window, "max_steps_per_epoch": max_steps_per_epoch}  # fmt: skip
    rates = {"lr": lr, "weight_decay": weight_decay, "clip": clip, "time_budget": time_budget,
             "val_fraction": val_fraction}  # fmt: skip
    counts, rates, seed = _check_options(model, objective, loss, counts, rates, seed, freeze)
    epochs, batch_size, stride, windows_per_stream, patience, window, max_steps_per_epoch = (
        counts.values()
    )  # as Python numbers (NumPy's are taken too), the same order as above
    lr, weight_decay, clip, time_budget, val_fraction = rates.values()
    freeze = (freeze,) if isinstance(freeze, str) else tuple(freeze)  # one prefix, not its letters
    data = as_series(model, series, columns)
    if val_series is not None:
        train, val = data, as_series(model, val_series, columns)
    else:
        train, val = _split(data, val_fraction)
    _check_validation(model, objective, val)
    before = model.params
    try:  # a fit that fails leaves the model as it was (normalisation included)
        if not model.info.get("trained"):
            _set_normalizer(model, train)
            if objective == "forecast":
                _init_highway(model, train, stride)
        rng = np.random.default_rng(model.config.seed if seed is None else seed)
        task = _Task(model, objective, loss, window or min(model.config.context_window, 128))
        keys = [k for k in task.trainable_keys() if not k.startswith(freeze)]
        opt = AdamW(lr=lr, weight_decay=weight_decay)
        history: dict[str, list] = {
            k: [] for k in ("epoch", "train_loss", "val_loss", "lr", "seconds")
        }
        start, step, bad_epochs = time.time(), 0, 0
        # the starting point competes too: training never returns something worse on validation
        best, best_params = (task.evaluate(val) if val else math.inf), dict(model.params)
        total_steps = epochs * task.steps_per_epoch(train, batch_size, windows_per_stream, stride)
        if max_steps_per_epoch:
            total_steps = min(total_steps, epochs * max_steps_per_epoch)
        warmup = max(1, total_steps // 20)
        for epoch in range(1, epochs + 1):
            bar = Progress(total_steps // epochs, f"epoch {epoch}/{epochs}", enabled=verbose)
            t0, losses, done = time.time(), [], 0
            for batch in task.batches(train, batch_size, windows_per_stream, stride, rng):
                lr_now = cosine_schedule(step, total_steps, lr, warmup)
                value, grads = task.gradient(keys, batch)
                grads, norm = clip_by_global_norm(grads, clip)
                if math.isfinite(value) and math.isfinite(norm):  # else skip a step that overflowed
                    updated = opt.update({k: model.params[k] for k in keys}, grads, lr_now)
                    model.params = {**model.params, **updated}
                    losses.append(value)
                step, done = step + 1, done + 1
                bar.advance(loss=value, lr=lr_now)
                out_of_time = time_budget is not None and time.time() - start > time_budget
                if out_of_time or (max_steps_per_epoch and done >= max_steps_per_epoch):
                    break
            train_loss = float(np.mean(losses)) if losses else math.nan
            val_loss = task.evaluate(val) if val else train_loss
            for k, v in zip(
                history, (epoch, train_loss, val_loss, lr_now, time.time() - t0), strict=True
            ):
                history[k].append(v)
            bar.close(train=train_loss, val=val_loss)
            if val_loss < best - 1e-9:
                best, best_params, bad_epochs = val_loss, dict(model.params), 0
            else:
                bad_epochs += 1
            if bad_epochs >= patience or (
                time_budget is not None and time.time() - start > time_budget
            ):
                break
        model.params = best_params
        model.reset()
        _record(model, history, objective, val, task)
        return history
    except BaseException:  # KeyboardInterrupt too: never half-trained, unnormalised weights
        model.params = before
        raise


def _check_options(
    model, objective, loss, counts: dict, rates: dict, seed, freeze
) -> tuple[dict, dict, int | None]:
    """ConfigError for an option out of its range; else ``counts``, ``rates`` and ``seed`` as
    Python numbers (NumPy integers and floats are numbers too), in their order."""
    if objective not in ("next_step", "forecast"):
        raise ConfigError(f"objective must be 'next_step' or 'forecast', got {objective!r}")
    if objective == "forecast" and not model.config.forecast_horizon:
        raise ConfigError("objective='forecast' needs forecast_horizon > 0 in the config")
    if not model.residual:
        raise ConfigError(
            "fit learns to predict the series itself: output_dim must equal input_dim"
        )
    if not callable(loss) and not (isinstance(loss, str) and loss in LOSSES):
        raise ConfigError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    if callable(loss) and model.gaussian and objective == "next_step":
        raise ConfigError("the Gaussian head trains by its likelihood: a loss cannot be given")
    counts, rates = dict(counts), dict(rates)
    for name, v in counts.items():
        if name in ("window", "max_steps_per_epoch") and v is None:
            continue
        if not _is_integer(v) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        counts[name] = int(v)
    for name, v in rates.items():
        if name == "time_budget" and v is None:
            continue
        positive = name == "lr"  # the others may be 0 (clip 0: no clipping)
        finite = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        if not finite or v < 0 or (positive and v == 0):
            low = "> 0" if positive else ">= 0"
            raise ConfigError(f"{name} must be a finite number {low}, got {v!r}")
        rates[name] = float(v)
    if seed is not None and (not _is_integer(seed) or seed < 0):
        raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")
    if not isinstance(freeze, str | tuple | list) or not all(isinstance(f, str) for f in freeze):
        raise ConfigError(f"freeze must be a tuple of parameter-name prefixes, got {freeze!r:.80}")
    if not rates["val_fraction"] < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {rates['val_fraction']!r}")
    return counts, rates, None if seed is None else int(seed)


def _is_integer(v: Any) -> bool:
    """An integer of Python or NumPy, not a bool (NumPy's bool is not Integral)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_validation(model: Any, objective: str, val: list[np.ndarray]) -> None:
    """Every validation series long enough for one prediction to be scored."""
    c = model.config
    need = c.forecast_lookback + c.forecast_horizon if objective == "forecast" else 2
    short = [len(v) for v in val if len(v) < need]
    if short:
        raise InputError(
            f"a validation series has {short[0]} sample(s); scoring {objective} needs at least "
            f"{need} (pass longer val_series, a larger val_fraction, or val_fraction=0)"
        )


def _split(data: list[np.ndarray], frac: float) -> tuple[list, list]:
    train, val = [], []
    for s in data:
        n_val = int(round(len(s) * frac))
        train.append(s[: len(s) - n_val])
        if n_val:
            val.append(s[len(s) - n_val :])
    return train, val


def _set_normalizer(model: Any, train: list[np.ndarray]) -> None:
    allx = np.concatenate(train, axis=0)
    if not len(allx):  # before NumPy's warnings about the mean of nothing
        raise InputError("fit needs training samples; every training series is empty")
    mean, std = allx.mean(axis=0), allx.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    model.params = {
        **model.params,
        "normalizer.mean": model._to_backend(mean),
        "normalizer.std": model._to_backend(std),
    }


def _init_highway(model: Any, train: list[np.ndarray], stride: int) -> None:
    """Start the forecast head's linear highway at its least-squares optimum on the training
    windows (instance-normalized when ``revin``, then weighted so that the fit minimizes the error
    in z units), so gradient steps only have to learn what a linear map of the window cannot:
    the backbone's correction."""
    c = model.config
    lb, h = c.forecast_lookback, c.forecast_horizon
    mean, std = (_np(model.params[f"normalizer.{k}"]) for k in ("mean", "std"))
    gram, cross = np.zeros((lb + 1, lb + 1)), np.zeros((lb + 1, h))
    for s in train:
        z = (s - mean) / std
        starts = np.arange(0, len(z) - lb - h + 1, stride)
        for a in range(0, len(starts), 4096):
            idx = starts[a : a + 4096, None] + np.arange(lb + h)[None, :]
            w = np.moveaxis(z[idx], 2, 1).reshape(-1, lb + h)  # (n * C, L + H) per channel
            x, y = w[:, :lb], w[:, lb:]
            weight = np.ones((len(x), 1))
            if c.revin:
                mu = x.mean(axis=1, keepdims=True)
                sd = np.sqrt(x.var(axis=1, keepdims=True) + heads.REVIN_EPS)
                x, y = (x - mu) / sd, (y - mu) / sd
                # the error is measured after de-normalization (times sd): weight by sd^2, or the
                # near-constant windows (tiny sd) dominate the fit
                weight = sd * sd
            xa = np.concatenate([x, np.ones((len(x), 1))], axis=1)  # (n, L + 1)
            gram += xa.T @ (weight * xa)
            cross += xa.T @ (weight * y)
    if not gram[-1, -1]:
        return
    sol = np.linalg.solve(gram + 1e-6 * np.eye(lb + 1) * max(1.0, np.trace(gram) / (lb + 1)), cross)
    model.params = {
        **model.params,
        "forecast.highway.weight": model._to_backend(sol[:lb].T),  # (H, L)
        "forecast.highway.bias": model._to_backend(sol[lb]),  # (H,)
    }


def _record(model: Any, history: dict, objective: str, val: list, task: _Task) -> None:
    info = dict(model.info)
    runs = info.get("history", [])
    runs.append({"objective": objective, **history})
    info.update(trained=True, history=runs)
    if val and objective == "next_step":
        from kizzasi_lite.inference.anomaly import calibrate

        info.update(calibrate(model, val))
    if val and objective == "forecast":
        info["forecast_val_mse"] = task.evaluate(val)
    model.info = info


class _Task:
    """The batches, loss and validation of one objective."""

    def __init__(self, model: Any, objective: str, loss: Any, window: int) -> None:
        self.model, self.objective, self.loss, self.window = model, objective, loss, window
        self.state: dict[str, Any] | None = None

    def task_loss(self, params: dict, pred: Any, target: Any) -> Any:
        """The loss of predictions against targets, both in z units: a named loss there, or the
        user's callable on both in the data's units (``params`` holds the normalisation)."""
        if callable(self.loss):
            return self.loss(heads.unstandardize(params, pred), heads.unstandardize(params, target))
        return LOSSES[self.loss](pred, target)

    def trainable_keys(self) -> list[str]:
        skip = ("normalizer.", "forecast.")
        if self.objective == "forecast":  # the forecast head embeds its own patch tokens
            skip = ("normalizer.", "head.", "in_proj.")
        return [k for k in self.model.params if not k.startswith(skip)]

    def _z(self, x: np.ndarray) -> np.ndarray:
        p = self.model.params
        mean, std = (
            np.asarray(_np(p[k]), dtype=np.float64) for k in ("normalizer.mean", "normalizer.std")
        )
        return (x - mean) / std

    # ------------------------------------------------------------------ batches
    def steps_per_epoch(self, train, batch_size, windows_per_stream, stride) -> int:
        if self.objective == "forecast":
            c = self.model.config
            n = sum(
                max(0, (len(s) - c.forecast_lookback - c.forecast_horizon) // stride + 1)
                for s in train
            )
            return max(1, -(-n // batch_size))
        per = self.window * windows_per_stream
        streams = sum(max(1, (len(s) - 1) // per) + ((len(s) - 1) % per > 0) for s in train)
        return max(1, -(-streams // batch_size)) * windows_per_stream

    def batches(self, train, batch_size, windows_per_stream, stride, rng):
        if self.objective == "forecast":
            yield from self._forecast_batches(train, batch_size, stride, rng)
        else:
            yield from self._stream_batches(train, batch_size, windows_per_stream, rng)

    def _stream_batches(self, train, batch_size, k, rng):
        L = self.window
        streams = []
        for s in train:
            z = self._z(s)
            off = int(rng.integers(0, max(1, min(L, len(z) - L - 1))))
            n_win = (len(z) - off - 1) // L
            if n_win < 1:
                raise InputError(
                    f"a training series of {len(s)} samples is shorter than window {L} + 1"
                )
            per = min(k, n_win)
            for j in range(n_win // per):
                a = off + j * per * L
                streams.append(z[a : a + per * L + 1])
            if n_win % per or off + n_win * L + 1 < len(z):  # the newest samples too
                streams.append(z[len(z) - per * L - 1 :])
        by_len: dict[int, list] = {}
        for st in streams:
            by_len.setdefault(len(st), []).append(st)
        groups = []
        for same in by_len.values():
            arr = np.stack(same)  # (N, per*L+1, D)
            order = rng.permutation(len(arr))
            groups += [arr[order[i : i + batch_size]] for i in range(0, len(arr), batch_size)]
        for g in (groups[i] for i in rng.permutation(len(groups))):
            self.state = None
            for w in range((g.shape[1] - 1) // L):
                yield g[:, w * L : (w + 1) * L + 1]

    def _forecast_batches(self, train, batch_size, stride, rng):
        c = self.model.config
        lb, h = c.forecast_lookback, c.forecast_horizon
        index = [(i, t) for i, s in enumerate(train) for t in range(0, len(s) - lb - h + 1, stride)]
        if not index:
            raise InputError(f"no training series is longer than lookback {lb} + horizon {h}")
        zs = [self._z(s) for s in train]
        order = rng.permutation(len(index))
        for a in range(0, len(order), batch_size):
            yield np.stack(
                [
                    zs[index[j][0]][index[j][1] : index[j][1] + lb + h]
                    for j in order[a : a + batch_size]
                ]
            )

    # ------------------------------------------------------------------ gradient
    def gradient(self, keys: list[str], batch: np.ndarray) -> tuple[float, dict]:
        m = self.model
        const = {k: v for k, v in m.params.items() if k not in keys}
        xb = m._to_backend(batch)
        if self.objective == "forecast":
            lb = m.config.forecast_lookback

            def fn(p, const, xb, state):
                pred = m._forecast_z({**const, **p}, xb[:, :lb, :], state)
                return self.task_loss(const, pred, xb[:, lb:, :])

            zero = m.zero_state(batch.shape[0])
            value, grads = value_and_grad(fn, {k: m.params[k] for k in keys}, const, xb, zero)
            return float(_np(value)), grads
        state = self.state if self.state is not None else m.zero_state(batch.shape[0])

        def fn(p, const, xb, state):
            mean, scale, new = heads.next_sequence(
                m.arch, m.backbone_config, {**const, **p}, xb[:, :-1, :], state,
                residual=True, gaussian=m.gaussian,
            )  # fmt: skip
            target = xb[:, 1:, :]
            out = (
                gaussian_nll(mean, scale, target)
                if m.gaussian
                else self.task_loss(const, mean, target)
            )
            return out, new

        trained = {k: m.params[k] for k in keys}
        (value, new_state), grads = value_and_grad(fn, trained, const, xb, state, has_aux=True)
        self.state = detach(new_state)
        return float(_np(value)), grads

    # ------------------------------------------------------------------ validation
    def evaluate(self, val: list[np.ndarray], batch: int = 256) -> float:
        """Validation loss: next-step MSE in z units (NLL for the Gaussian head), forecast MSE,
        or the user's loss (its own units) where one was given."""
        m = self.model
        if self.objective == "forecast":
            user = partial(self.task_loss, m.params) if callable(self.loss) else None
            return forecast_mse(m, val, batch=batch, loss=user)
        total, count = 0.0, 0
        for s in val:
            xb = m._to_backend(self._z(s)[None])
            mean, scale, _ = heads.next_sequence(
                m.arch, m.backbone_config, m.params, xb[:, :-1, :], m.zero_state(1),
                residual=True, gaussian=m.gaussian,
            )  # fmt: skip
            if callable(self.loss):
                v = float(_np(self.task_loss(m.params, mean, xb[:, 1:, :])))
            elif m.gaussian:
                v = float(_np(gaussian_nll(mean, scale, xb[:, 1:, :])))
            else:
                v = float(_np(LOSSES["mse"](mean, xb[:, 1:, :])))
            total, count = total + v * (len(s) - 1), count + len(s) - 1
        return total / max(count, 1)


def forecast_mse(
    model: Any, series: list[np.ndarray], *, batch: int = 256, stride: int = 1,
    loss: Callable[[Any, Any], Any] | None = None,
) -> float:  # fmt: skip
    """Mean squared error (z units) of :meth:`forecast` over every window of ``series``; or,
    with ``loss(pred_z, target_z) -> mean``, that loss averaged over the windows."""
    c = model.config
    lb, h = c.forecast_lookback, c.forecast_horizon
    total, count = 0.0, 0
    for s in series:
        z = (s - _np(model.params["normalizer.mean"])) / _np(model.params["normalizer.std"])
        starts = list(range(0, len(z) - lb - h + 1, stride))
        for a in range(0, len(starts), batch):
            win = np.stack([z[t : t + lb + h] for t in starts[a : a + batch]])  # (b, lb+h, D)
            xb = model._to_backend(win)
            pred = model._forecast_z(model.params, xb[:, :lb, :])
            if loss is not None:
                total += float(_np(loss(pred, xb[:, lb:, :]))) * len(win)
                count += len(win)
                continue
            err = _np(pred) - win[:, lb:, :]
            total += float(np.sum(err * err))
            count += err.size
    return total / max(count, 1)


def _np(x: Any) -> np.ndarray:
    from kizzasi_lite.backends import to_numpy

    return np.asarray(to_numpy(x))
