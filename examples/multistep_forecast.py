"""Multi-step forecasting: the direct multi-horizon head beside rolling the next-step model out.

Two ways to see H steps ahead with one model (ETTh1, all 7 channels, look-back 96 hours):

- **direct**: ``fit(objective="forecast")`` trains a head that maps the look-back window to all H
  future steps at once (a linear map of the window, started at its least-squares optimum, plus
  a correction from the backbone run over patch tokens; ``revin`` normalizes each window by itself).
- **roll-out**: the next-step model feeds its own predictions back in, H times; errors compound.

Both are scored on every test origin (stride ``--stride``) beside repeating the last value.

    python examples/multistep_forecast.py [--horizon 24] [--small] [--plot forecast.png]
"""

from __future__ import annotations

import argparse

import numpy as np

from kizzasi_lite import Kizzasi, KizzasiConfig
from kizzasi_lite.data import ett_splits, load_ett

LOOKBACK = 96


def windows(z: np.ndarray, horizon: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Look-back windows (N, L, C) and their next ``horizon`` rows (N, H, C)."""
    starts = np.arange(0, len(z) - LOOKBACK - horizon + 1, stride)
    idx = starts[:, None] + np.arange(LOOKBACK + horizon)[None, :]  # (N, L+H)
    w = z[idx]  # (N, L+H, C)
    return w[:, :LOOKBACK], w[:, LOOKBACK:]


def rollout(model: Kizzasi, x: np.ndarray, horizon: int) -> np.ndarray:
    """Batched roll-out: observe each window of ``x`` (N, L, C), then feed predictions back."""
    model.reset()
    y = model.forward(x)[:, -1]  # (N, C) the prediction after each window
    out = [y]
    for _ in range(horizon - 1):
        y = model.step(y)  # (N, C)
        out.append(y)
    model.reset()
    return np.stack(out, axis=1)  # (N, H, C)


def main(small: bool = False, horizon: int = 24, stride: int = 24, plot: str | None = None) -> dict:
    data, names = load_ett("ETTh1")
    sp = ett_splits(data, "ETTh1", LOOKBACK)  # standardized with the training statistics
    train, val, test = sp["train"], sp["val"], sp["test"]
    if small:
        train, test = train[-2000:], test[: LOOKBACK + 400]
    config = KizzasiConfig(
        model_type="mamba2", input_dim=7, hidden_dim=16 if small else 32,
        num_layers=1 if small else 2, forecast_horizon=horizon, forecast_lookback=LOOKBACK,
        revin=True,
    )  # fmt: skip
    model = Kizzasi(config)
    model.fit(train, val_series=val[-(LOOKBACK + horizon + 300) :], objective="forecast",
              epochs=1 if small else 4, stride=8, time_budget=3 if small else 60,
              verbose=not small)  # fmt: skip
    model.fit(train, val_series=val, epochs=2 if small else 8, batch_size=16, window=64,
              time_budget=3 if small else 40, verbose=not small)  # fmt: skip

    x, y = windows(test, horizon, stride)  # (N, L, C), (N, H, C)
    preds = {
        "direct": model.forecast(x, horizon),  # (N, H, C)
        "roll-out": rollout(model, x, horizon),
        "repeat-last": np.repeat(x[:, -1:, :], horizon, axis=1),
    }
    mse = {k: np.mean((p - y) ** 2, axis=(0, 2)) for k, p in preds.items()}  # (H,) per step ahead
    steps = [h for h in (1, 6, 12, 24, 48, 96) if h <= horizon]
    print(f"test MSE (normalised units) over {len(x)} origins, by steps ahead:")
    print(f"  {'':12s}" + "".join(f"{h:>8d}" for h in steps) + f"{'mean':>8s}")
    for k, e in mse.items():
        print(f"  {k:12s}" + "".join(f"{e[h - 1]:8.3f}" for h in steps) + f"{e.mean():8.3f}")
    if plot:
        from kizzasi_lite.io.plot import plot_forecast

        i = len(x) // 2
        plot_forecast(plot, x[i], preds["direct"][i], truth=y[i], names=names,
                      title=f"{horizon}-step direct forecast (standardized units)")  # fmt: skip
        print(f"wrote {plot}")
    return {k: float(e.mean()) for k, e in mse.items()} | {"origins": len(x)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--horizon", type=int, default=24)
    p.add_argument("--stride", type=int, default=24, help="hours between test origins")
    p.add_argument("--small", action="store_true", help="small sizes, a few seconds")
    p.add_argument("--plot", help="write a PNG of one forecast")
    a = p.parse_args()
    main(a.small, a.horizon, a.stride, a.plot)
