"""ETT long-horizon forecasting on the standard protocol, beside published numbers and baselines.

Protocol (see kizzasi_lite/data/ett/README.md and ``kizzasi_lite.data.ett_splits``): train-only
standardization, 12/4/4-month split, stride-1 windows, look-back 96, horizons 96/192/336/720,
MSE/MAE over *all* test windows x horizon x 7 channels (no dropped last batch).

Our model uses the direct multi-horizon head on instance-normalized windows (RevIN): a per-channel
linear map of the look-back window (started at its least-squares fit) plus a correction read from
the backbone's states over patch tokens of ``--patch`` samples, trained end to end with early
stopping on the validation split. By default it is channel-independent (each of the 7 channels is
a univariate stream through the same weights, as PatchTST and RLinear do); ``--mixing`` makes one
7-channel model whose backbone sees all channels. Two baselines are computed in the same run:
repeat-last-value, and a least-squares linear model on the 96-step window (channel-independent,
shared weights: the "Linear" row of LTSF-Linear, here solved exactly).

    python examples/ett_benchmark.py --dataset ETTh1        # the defaults measured in README.md
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from kizzasi_lite import Kizzasi, KizzasiConfig, ModelType
from kizzasi_lite.data import ett_splits, load_ett

PUBLISHED = (
    Path(__file__).resolve().parents[1]
    / "kizzasi_lite"
    / "data"
    / "ett"
    / "published_results_multivariate.csv"
)
LOOKBACK = 96


def windows(z: np.ndarray, lookback: int, horizon: int, stride: int = 1):
    """Channel-independent windows: inputs (N, L) and targets (N, H) over every channel."""
    starts = np.arange(0, len(z) - lookback - horizon + 1, stride)
    idx = starts[:, None] + np.arange(lookback + horizon)[None, :]  # (n, L+H)
    w = z[idx]  # (n, L+H, C)
    w = np.moveaxis(w, 2, 1).reshape(-1, lookback + horizon)  # (n*C, L+H)
    return w[:, :lookback], w[:, lookback:]


def repeat_last(test: np.ndarray, horizon: int) -> tuple[float, float]:
    x, y = windows(test, LOOKBACK, horizon)
    err = y - x[:, -1:]
    return float(np.mean(err**2)), float(np.mean(np.abs(err)))


def linear_least_squares(train: np.ndarray, test: np.ndarray, horizon: int) -> tuple[float, float]:
    """Fit y = W x + b over every training window of every channel by least squares."""
    x, y = windows(train, LOOKBACK, horizon)
    a = np.concatenate([x, np.ones((len(x), 1))], axis=1)  # (N, L+1)
    w = np.linalg.solve(a.T @ a + 1e-6 * np.eye(a.shape[1]), a.T @ y)  # (L+1, H)
    xt, yt = windows(test, LOOKBACK, horizon)
    err = np.concatenate([xt, np.ones((len(xt), 1))], axis=1) @ w - yt
    return float(np.mean(err**2)), float(np.mean(np.abs(err)))


def model_errors(model: Kizzasi, test: np.ndarray, horizon: int) -> tuple[float, float]:
    """Test MSE and MAE over every window, every step of the horizon and every channel."""
    mixing = model.config.input_dim > 1
    starts = np.arange(0, len(test) - LOOKBACK - horizon + 1)
    sq, ab = 0.0, 0.0
    for a in range(0, len(starts), 1024):
        w = np.stack(
            [test[t : t + LOOKBACK + horizon] for t in starts[a : a + 1024]]
        )  # (n, L+H, C)
        if not mixing:  # (n * C, L + H, 1)
            w = np.moveaxis(w, 2, 1).reshape(-1, LOOKBACK + horizon, 1)
        err = model.forecast(w[:, :LOOKBACK], horizon) - w[:, LOOKBACK:]
        sq, ab = sq + float(np.sum(err**2)), ab + float(np.sum(np.abs(err)))
    n = len(starts) * horizon * test.shape[1]
    return sq / n, ab / n


def per_channel(z: np.ndarray) -> list[np.ndarray]:
    """Channel independence: each channel becomes a univariate series."""
    return [z[:, c : c + 1] for c in range(z.shape[1])]


def train_model(args, splits, horizon: int) -> tuple[Kizzasi, float]:
    config = KizzasiConfig(
        model_type=ModelType(args.model),
        input_dim=splits["train"].shape[1] if args.mixing else 1,
        hidden_dim=args.hidden,
        state_dim=args.state,
        num_layers=args.layers,
        head_dim=min(args.hidden, 16) if args.model != "mamba2" else 16,
        forecast_horizon=horizon,
        forecast_lookback=LOOKBACK,
        forecast_patch=args.patch,
        revin=not args.no_revin,
        seed=args.seed,
        context_window=LOOKBACK,
    )
    model = Kizzasi(config)
    split = (lambda z: [z]) if args.mixing else per_channel
    start = time.time()
    model.fit(
        split(splits["train"]),
        val_series=split(splits["val"]),
        objective="forecast",
        epochs=args.epochs,
        batch_size=args.batch_size,
        stride=args.stride,
        lr=args.lr,
        patience=args.patience,
        time_budget=args.time_budget,
        max_steps_per_epoch=args.max_steps_per_epoch,
        freeze=("forecast.highway",) if args.freeze_highway else (),
        verbose=not args.quiet,
    )
    return model, time.time() - start


def published(dataset: str) -> dict[tuple[str, str], tuple[float, float]]:
    out = {}
    if PUBLISHED.is_file():
        with PUBLISHED.open() as f:
            for row in csv.DictReader(f):
                if row["dataset"] == dataset and row["lookback_L"] == str(LOOKBACK):
                    out[(row["model"], row["horizon"])] = (float(row["mse"]), float(row["mae"]))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--dataset", default="ETTh1", help="ETTh1 or ETTm1 (bundled), or any ETT name with --csv"
    )
    p.add_argument("--csv", help="path of an ETT CSV (default: the bundled file)")
    p.add_argument("--model", default="mamba2", choices=[m.value for m in ModelType])
    p.add_argument("--horizons", type=int, nargs="+", default=[96, 192, 336, 720])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--stride", type=int, default=1, help="training window stride")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument(
        "--time-budget", type=float, default=480.0, help="seconds of training per horizon"
    )
    p.add_argument(
        "--max-steps-per-epoch", type=int, default=200, help="validation every this many steps"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch", type=int, default=16, help="samples per backbone token")
    p.add_argument("--no-revin", action="store_true", help="no reversible instance normalization")
    p.add_argument(
        "--mixing",
        action="store_true",
        help="one multichannel model (the backbone mixes channels; the highway stays per channel)",
    )
    p.add_argument(
        "--freeze-highway",
        action="store_true",
        help="keep the linear highway at its least-squares fit; train only the backbone correction",
    )
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--small",
        action="store_true",
        help="a smoke run of a few seconds: horizon 24, hidden 16, 3 training steps of 32 windows",
    )
    args = p.parse_args(argv)
    if args.small:
        args.horizons, args.hidden, args.epochs = [24], 16, 1
        args.max_steps_per_epoch, args.batch_size = 3, 32

    data, _ = load_ett(args.dataset, args.csv)
    splits = ett_splits(data, args.dataset, LOOKBACK)
    pub = published(args.dataset)
    rows = []
    for h in args.horizons:
        model, seconds = train_model(args, splits, h)
        ours = model_errors(model, splits["test"], h)
        row = {
            "horizon": h,
            "kizzasi": ours,
            "train_seconds": round(seconds, 1),
            "repeat_last": repeat_last(splits["test"], h),
            "linear": linear_least_squares(splits["train"], splits["test"], h),
        }
        for name in ("RLinear", "PatchTST", "DLinear", "iTransformer", "S-Mamba"):
            if (name, str(h)) in pub:
                row[name] = pub[(name, str(h))]
        rows.append(row)
        print(f"H={h}: kizzasi {ours[0]:.3f}/{ours[1]:.3f} in {seconds:.0f}s", flush=True)
    _print_table(args, rows)
    result = {"dataset": args.dataset, "model": args.model, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def _print_table(args, rows: list[dict]) -> None:
    cols = [c for c in rows[0] if c not in ("horizon", "train_seconds")]
    print(f"\n{args.dataset}, look-back {LOOKBACK}, model {args.model} (MSE / MAE, test set)")
    print("horizon  " + "  ".join(f"{c:>17s}" for c in cols) + "  train s")
    for r in rows:
        cells = "  ".join(f"{r[c][0]:7.4f}/{r[c][1]:.4f}" if c in r else f"{'':>15s}" for c in cols)
        print(f"{r['horizon']:7d}  {cells}  {r['train_seconds']:7.0f}")
    if len(rows) > 1:
        avg = {c: np.mean([r[c] for r in rows if c in r], axis=0) for c in cols}
        print("    avg  " + "  ".join(f"{avg[c][0]:7.4f}/{avg[c][1]:.4f}" for c in cols))


if __name__ == "__main__":
    main()
