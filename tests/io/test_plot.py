"""The PNG plots: each writes a real PNG atomically and accepts (T,) or (T, C) arrays."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from kizzasi_lite.io import plot  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 2000
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_forecast_plot(tmp_path):
    t = np.arange(120.0)
    hist = np.stack([np.sin(0.1 * t), np.cos(0.1 * t)], axis=1)  # (T, 2)
    fut = hist[-20:]
    out = plot.plot_forecast(
        tmp_path / "f.png", hist, fut, names=["s", "c"], band=(fut - 0.2, fut + 0.2),
        truth=fut * 1.1, start=100,
    )  # fmt: skip
    _png(out)
    _png(plot.plot_forecast(tmp_path / "g.png", hist[:, 0], fut[:, 0]))


def test_anomaly_guarded_and_history_plots(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    scores = np.abs(rng.normal(size=200))
    scores[50] = 40.0
    _png(plot.plot_anomalies(tmp_path / "a.png", x, x * 0.9, scores=scores, threshold=2.5,
                             flagged=[50, 120], sigma=np.full_like(x, 0.1)))  # fmt: skip
    _png(plot.plot_anomalies(tmp_path / "b.png", x[:, 0], x[:, 0], scores=scores,
                             threshold=None))  # fmt: skip
    _png(plot.plot_guarded(tmp_path / "c.png", x, x, np.clip(x, -1, 1),
                           lower=[-1, -np.inf, -1], upper=[1, np.inf, 1]))  # fmt: skip
    _png(plot.plot_history(tmp_path / "d.png",
                           {"epoch": [1, 2, 3], "train_loss": [1, .5, .4], "val_loss": [1, .6, .5]}))  # fmt: skip
