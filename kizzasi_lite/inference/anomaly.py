"""Anomaly scores from prediction errors.

For each step ``t >= 1`` the model predicts ``x_t`` from ``x_0..x_{t-1}``. With standard deviation
``sigma`` per channel (the Gaussian head's prediction, or for a point head the RMS error measured on
validation data at fit time, ``info["error_scale"]``), the scores are

- ``score``: the standardized prediction error, RMS over channels: ``sqrt(mean_c (e_c / sigma_c)^2)``;
- ``nll``: the negative log-likelihood of ``x_t`` under ``Normal(mean, sigma)``, summed over channels.

Step 0 has no prediction and scores 0. ``detect`` flags the steps whose score exceeds a threshold,
by default the ``quantile`` (0.99) of the validation scores, chosen at fit time.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from kizzasi_lite.backends import to_numpy
from kizzasi_lite.errors import ConfigError, InputError

QUANTILE = 0.99


def _sigma_z(model: Any, scale: Any, n: int) -> np.ndarray:
    """Standard deviations in z units, (n, D)."""
    if scale is not None:
        return np.asarray(to_numpy(scale), dtype=np.float64) / _std(model)
    es = model.info.get("error_scale")
    base = np.asarray(es, dtype=np.float64) if es is not None else np.ones(model.config.input_dim)
    return np.broadcast_to(base, (n, model.config.input_dim))


def _std(model: Any) -> np.ndarray:
    return np.asarray(to_numpy(model.params["normalizer.std"]), dtype=np.float64)


def score(model: Any, series: Any) -> dict[str, np.ndarray]:
    """Scores of every step of ``series`` (T, D), from the zero state; the live state is untouched.

    Returns ``score`` (T,), ``nll`` (T,), ``prediction`` (T, D) and ``sigma`` (T, D), user units.
    """
    xb, _ = model._input(series, "series", 2)
    if xb.shape[0] != 1:
        raise ConfigError("score takes one series (T, D) at a time")
    mean, scale, _ = model._sequence(xb, model.zero_state(1))
    model._finite(mean)  # an overflow is refused, as by forward, not scored as NaN
    x = np.asarray(to_numpy(xb[0, ...]), dtype=np.float64)  # (T, D)
    pred = np.concatenate([x[:1], np.asarray(to_numpy(mean[0, ...]), dtype=np.float64)[:-1]])
    sig = _sigma_z(model, None if scale is None else scale[0, ...], len(x))
    sig = np.concatenate([sig[:1], sig[:-1]]) if scale is not None else sig
    s, nll = _scores((x - pred) / _std(model), sig)
    s[:1], nll[:1] = 0.0, 0.0  # step 0 (none in an empty series)
    return {"score": s, "nll": nll, "prediction": pred, "sigma": sig * _std(model)}


def _scores(err_z: np.ndarray, sig_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = err_z / sig_z
    s = np.sqrt(np.mean(u * u, axis=-1))
    nll = np.sum(0.5 * u * u + np.log(sig_z) + 0.5 * math.log(2 * math.pi), axis=-1)
    return s, nll


def score_one(model: Any, x: Any) -> float:
    """Score sample ``x`` (D,) against the prediction made at the previous call, then step on it.

    The first call (or the first after ``reset``) has no prediction and returns 0.
    """
    xb, unbatched = model._input(x, "x", 1)
    if not unbatched:
        raise ConfigError("score_one takes one sample (D,) of one stream")
    pending = model._pending if model._state is not None else None
    mean, scale, state = model._step(xb, model._current_state(1))
    model._finite(mean)
    value = 0.0
    if pending is not None:
        p_mean, p_scale = pending
        xv = np.asarray(to_numpy(xb), dtype=np.float64)
        err = (xv - np.asarray(to_numpy(p_mean), dtype=np.float64)) / _std(model)
        value = float(_scores(err, _sigma_z(model, p_scale, 1))[0][0])
    model._state = state
    model._latest(mean, scale, True)  # last_raw: the (unguarded) prediction of the next sample
    return value


def detect(model: Any, series: Any, threshold: float | None = None) -> np.ndarray:
    """Indices of the steps of ``series`` whose ``score`` exceeds ``threshold``.

    ``threshold`` defaults to the one chosen on validation data by ``fit``.
    """
    if threshold is None:
        threshold = model.info.get("anomaly_threshold")
        if threshold is None:
            raise ConfigError(
                "no threshold: pass threshold=..., or fit the model with validation data"
            )
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or math.isnan(threshold)
    ):
        raise InputError(f"threshold must be a real number, got {threshold!r:.80}")
    return np.flatnonzero(score(model, series)["score"] > float(threshold))


def calibrate(model: Any, val: list[np.ndarray], quantile: float = QUANTILE) -> dict[str, Any]:
    """Error scale, threshold and validation metrics from validation series (called by ``fit``)."""
    errs, naive = [], []
    std = _std(model)
    for s in val:
        if len(s) < 2:
            continue
        xb = model._to_backend(s[None])
        mean, _, _ = model._sequence(xb, model.zero_state(1))
        pred = np.asarray(to_numpy(mean[0, ...]), dtype=np.float64)[:-1]
        errs.append((s[1:] - pred) / std)
        naive.append((s[1:] - s[:-1]) / std)
    if not errs:
        return {}
    e, n = np.concatenate(errs), np.concatenate(naive)
    out = {
        "error_scale": np.sqrt(np.mean(e * e, axis=0)).clip(1e-6).tolist(),
        "val_mse": float(np.mean(e * e)),
        "val_mae": float(np.mean(np.abs(e))),
        "val_mse_repeat_last": float(np.mean(n * n)),
        "val_mae_repeat_last": float(np.mean(np.abs(n))),
    }
    model.info = {**model.info, **out}
    scores = np.concatenate([score(model, s)["score"][1:] for s in val if len(s) >= 2])
    out["anomaly_threshold"] = float(np.quantile(scores, quantile))
    out["anomaly_quantile"] = quantile
    return out
