"""Industrial anomaly detection on a multi-channel sensor CSV (ETTh1: transformer load + oil temp).

A next-step model learns normal operation; each new reading is scored by how far it lands from
the prediction, in units of the error seen on validation data, and flagged above the 99%
validation quantile. Faults of three kinds are injected into a copy of later data (a spike, a
sensor dropout, a drift), so precision and recall can be measured against known truth.

    python examples/industrial_anomaly.py [--csv path.csv] [--plot anomalies.png] [--small]
"""

from __future__ import annotations

import argparse

import numpy as np

from kizzasi_lite import Kizzasi, KizzasiConfig
from kizzasi_lite.data import ett_path
from kizzasi_lite.io import read_data

MONTH = 30 * 24


def inject_faults(
    x: np.ndarray, std: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``x`` (T, C) with faults, and the (T,) mask of the faulty rows."""
    x, bad = x.copy(), np.zeros(len(x), dtype=bool)
    t = len(x)
    for k, start in enumerate(rng.choice(np.arange(50, t - 50, 60), size=9, replace=False)):
        c = int(rng.integers(x.shape[1]))
        kind = ("spike", "dropout", "drift")[k % 3]
        if kind == "spike":  # one reading far off
            x[start, c] += rng.choice([-1, 1]) * 8 * std[c]
            bad[start] = True
        elif kind == "dropout":  # the sensor reads 0 for 4 hours
            x[start : start + 4, c] = 0.0
            bad[start : start + 4] = True
        else:  # a fast drift away over 6 hours
            x[start : start + 6, c] += np.linspace(1, 6, 6) * std[c]
            bad[start : start + 6] = True
    return x, bad


def main(small: bool = False, csv: str | None = None, plot: str | None = None) -> dict:
    sig = read_data(csv or ett_path("ETTh1"))  # a time column is detected and skipped
    data, names = sig.data, sig.names
    n_train, n_test = (2 * MONTH, MONTH) if small else (12 * MONTH, 4 * MONTH)
    config = KizzasiConfig(model_type="mamba2", input_dim=len(names), hidden_dim=16 if small else 32,
                           num_layers=1 if small else 2)  # fmt: skip
    model = Kizzasi(config)
    model.fit(data[:n_train], epochs=4 if small else 8, time_budget=4 if small else 40,
              batch_size=16, window=64, verbose=not small)  # fmt: skip
    thr = model.info["anomaly_threshold"]
    print(f"{len(names)} channels {names}; threshold {thr:.2f} (99% of validation scores)")

    test = data[n_train : n_train + n_test]
    std = np.asarray(model.params["normalizer.std"], dtype=np.float64)
    faulty, truth = inject_faults(test, std, np.random.default_rng(0))
    flagged = np.zeros(len(test), dtype=bool)
    flagged[model.detect(faulty)] = True
    # a fault counts as found when any of its rows (or the row after it) is flagged
    starts = np.flatnonzero(truth & ~np.r_[False, truth[:-1]])
    ends = np.flatnonzero(truth & ~np.r_[truth[1:], False])
    found = [bool(flagged[a : b + 2].any()) for a, b in zip(starts, ends, strict=True)]
    near = truth | np.r_[False, truth[:-1]]
    false_alarms = int(np.sum(flagged & ~near))
    precision = float(np.sum(flagged & near) / max(flagged.sum(), 1))
    print(f"faults found: {sum(found)} of {len(found)}; flagged rows: {int(flagged.sum())}, of "
          f"which {false_alarms} outside any fault (precision {precision:.2f}) in {len(test)} rows")  # fmt: skip
    if plot:
        from kizzasi_lite.io.plot import plot_anomalies

        res = model.score(faulty)
        plot_anomalies(plot, faulty, res["prediction"], scores=res["score"], threshold=thr,
                       flagged=np.flatnonzero(flagged), sigma=res["sigma"], names=names)  # fmt: skip
        print(f"wrote {plot}")
    return {"found": found, "false_alarms": false_alarms, "precision": precision,
            "threshold": thr, "rows": len(test)}  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--csv", help="a multi-channel CSV (default: the bundled ETTh1)")
    p.add_argument("--plot", help="write a PNG of the test data, predictions and flags")
    p.add_argument("--small", action="store_true", help="small sizes, a few seconds")
    a = p.parse_args()
    main(a.small, a.csv, a.plot)
