"""PNG plots of forecasts, anomalies, guarded streams and training curves (matplotlib, lazily).

Figures are built with matplotlib's object-oriented API on the Agg canvas, so nothing here
touches pyplot's global state or needs a display. Every function writes its PNG atomically and
returns the path. One panel per channel, at most ``max_channels`` of them (the first ones; the
title says when some are left out).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kizzasi_lite.io.base import atomic_write, default_names, require

HISTORY = "#4c72b0"
FORECAST = "#dd8452"
TRUTH = "#55a868"
FLAG = "#c44e52"


def _figure(rows: int, width: float = 9.0, height: float = 1.9) -> tuple[Any, list[Any]]:
    require("matplotlib", "matplotlib", "plot")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 0.6 + height * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _save(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def _shown(title: str, shown: int, total: int) -> str:
    """``title``, saying which channels a figure leaves out."""
    return title if shown == total else f"{title} (channels 1-{shown} of {total})"


def _2d(a: Any) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    return arr[:, None] if arr.ndim == 1 else arr


def plot_forecast(
    path: str | os.PathLike, history: np.ndarray, forecast: np.ndarray, *,
    names: Sequence[str] | None = None, band: tuple[np.ndarray, np.ndarray] | None = None,
    truth: np.ndarray | None = None, start: int = 0, title: str = "Forecast",
    max_channels: int = 8,
) -> Path:  # fmt: skip
    """History (T, C), forecast (H, C), optional sample ``band`` (lo, hi) each (H, C) and the
    true continuation ``truth`` (H', C); the x axis is the sample index, history starting at
    ``start``."""
    history, forecast = _2d(history), _2d(forecast)
    c = min(history.shape[1], max_channels)
    names = list(names or default_names(history.shape[1]))
    fig, axes = _figure(c)
    t_hist = start + np.arange(len(history))
    t_fut = start + len(history) + np.arange(len(forecast))
    for i, ax in enumerate(axes):
        ax.plot(t_hist, history[:, i], color=HISTORY, lw=1.0, label="history")
        if truth is not None:
            tr = _2d(truth)
            ax.plot(t_fut[: len(tr)], tr[: len(t_fut), i], color=TRUTH, lw=1.0, label="actual")
        if band is not None:
            lo, hi = _2d(band[0]), _2d(band[1])
            ax.fill_between(t_fut, lo[:, i], hi[:, i], color=FORECAST, alpha=0.25, lw=0,
                            label="5-95% of samples")  # fmt: skip
        ax.plot(t_fut, forecast[:, i], color=FORECAST, lw=1.4, label="forecast")
        ax.axvline(t_fut[0] - 0.5 if len(t_fut) else t_hist[-1], color="0.6", lw=0.8, ls="--")
        ax.set_ylabel(names[i])
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8, ncol=4)
    axes[0].set_title(_shown(title, c, history.shape[1]))
    axes[-1].set_xlabel("sample")
    return _save(fig, path)


def plot_anomalies(
    path: str | os.PathLike, signal: np.ndarray, prediction: np.ndarray, *,
    scores: np.ndarray, threshold: float | None, flagged: Sequence[int] = (),
    sigma: np.ndarray | None = None, names: Sequence[str] | None = None, start: int = 0,
    title: str = "Anomaly scores", max_channels: int = 8,
) -> Path:  # fmt: skip
    """The signal (T, C), the one-step prediction (T, C) with a +-3 sigma band, the flagged
    steps marked, and a last panel with the scores (T,) and the threshold."""
    signal, prediction = _2d(signal), _2d(prediction)
    c = min(signal.shape[1], max_channels)
    names = list(names or default_names(signal.shape[1]))
    flagged = np.asarray(flagged, dtype=int)
    fig, axes = _figure(c + 1)
    t = start + np.arange(len(signal))
    for i, ax in enumerate(axes[:c]):
        if sigma is not None:
            s = _2d(sigma)[:, i]
            ax.fill_between(t, prediction[:, i] - 3 * s, prediction[:, i] + 3 * s,
                            color=FORECAST, alpha=0.2, lw=0, label="prediction +-3 sigma")  # fmt: skip
        ax.plot(t, signal[:, i], color=HISTORY, lw=0.9, label="signal")
        ax.plot(t, prediction[:, i], color=FORECAST, lw=0.8, label="prediction")
        if len(flagged):
            ax.scatter(t[flagged], signal[flagged, i], s=14, color=FLAG, zorder=3, label="flagged")
        ax.set_ylabel(names[i])
        ax.grid(alpha=0.3)
    ax = axes[-1]
    ax.plot(t, scores, color="0.3", lw=0.8, label="score")
    if threshold is not None:
        ax.axhline(threshold, color=FLAG, lw=1.0, ls="--", label=f"threshold {threshold:.3g}")
    if len(flagged):
        ax.scatter(t[flagged], np.asarray(scores)[flagged], s=10, color=FLAG, zorder=3)
    ax.set_ylabel("score")
    if len(scores) and float(np.max(scores)) > 20.0:  # spikes: keep the bulk of scores readable
        ax.set_yscale("symlog", linthresh=1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    axes[0].legend(loc="upper left", fontsize=8, ncol=4)
    axes[0].set_title(
        _shown(f"{title}: {len(flagged)} of {len(signal)} steps flagged", c, signal.shape[1])
    )
    axes[-1].set_xlabel("sample")
    return _save(fig, path)


def plot_guarded(
    path: str | os.PathLike, observed: np.ndarray, raw: np.ndarray, guarded: np.ndarray, *,
    names: Sequence[str] | None = None, lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None, title: str = "Guarded stream", max_channels: int = 8,
) -> Path:  # fmt: skip
    """A stream's observed samples (T, C), the raw next-step predictions (T, C) and the guarded
    ones (T, C), with per-channel limits ``lower``/``upper`` (None or +-inf: no line)."""
    observed, raw, guarded = _2d(observed), _2d(raw), _2d(guarded)
    c = min(observed.shape[1], max_channels)
    names = list(names or default_names(observed.shape[1]))
    fig, axes = _figure(c)
    t = np.arange(len(observed))
    for i, ax in enumerate(axes):
        ax.plot(t, observed[:, i], color=HISTORY, lw=0.9, label="observed")
        ax.plot(t + 1, raw[:, i], color="0.55", lw=0.8, ls=":", label="raw prediction")
        ax.plot(t + 1, guarded[:, i], color=FORECAST, lw=1.0, label="guarded prediction")
        for lim in (lower, upper):
            if lim is not None and np.isfinite(lim[i]):
                ax.axhline(lim[i], color=FLAG, lw=0.9, ls="--")
        ax.set_ylabel(names[i])
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8, ncol=3)
    axes[0].set_title(_shown(title, c, observed.shape[1]))
    axes[-1].set_xlabel("sample")
    return _save(fig, path)


def plot_history(path: str | os.PathLike, history: dict, *, title: str = "Training") -> Path:
    """Training and validation loss per epoch from a ``fit`` history dict."""
    fig, (ax,) = _figure(1, width=6.0, height=2.6)
    ax.plot(history["epoch"], history["train_loss"], "o-", color=HISTORY, label="train")
    ax.plot(history["epoch"], history["val_loss"], "o-", color=FORECAST, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised units)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)
