"""Real data bundled with the package: the ETT benchmark (unmodified CSVs, CC BY-ND 4.0).

:func:`ett_splits` derives the standard protocol at run time (Informer / Autoformer / PatchTST /
Time-Series-Library): 12/4/4 months of train/validation/test (months of 30 days), validation and
test slices starting ``lookback`` rows early, and a per-channel standardization fitted on the
training rows only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kizzasi_lite.errors import InputError

ETT_DIR = Path(__file__).parent / "ett"
ETT_NAMES = ("ETTh1", "ETTm1")


def ett_path(name: str = "ETTh1") -> Path:
    """Path of a bundled ETT CSV (``"ETTh1"`` or ``"ETTm1"``)."""
    if name not in ETT_NAMES:
        raise InputError(f"bundled ETT datasets are {ETT_NAMES}, got {name!r}")
    return ETT_DIR / f"{name}.csv"


def load_ett(name: str = "ETTh1", path: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """``(data (T, 7), column names)`` of an ETT CSV (the bundled one unless ``path`` is given)."""
    from kizzasi_lite.io.csv import read_csv

    return read_csv(path or ett_path(name))


def ett_splits(data: np.ndarray, name: str, lookback: int = 96) -> dict[str, np.ndarray]:
    """Standardized ``train``, ``val``, ``test`` slices and the scaler ``mean``/``std``.

    ``name`` decides the granularity: names containing ``"m"`` after ``"ETT"`` (ETTm1, ETTm2) use
    15-minute rows (4 per hour), the others hourly rows.
    """
    per_hour = 4 if name.upper().startswith("ETTM") else 1
    month = 30 * 24 * per_hour
    b_train, b_val, b_test = 12 * month, 16 * month, 20 * month
    if len(data) < b_test:
        raise InputError(f"{name} has {len(data)} rows; the protocol needs {b_test}")
    mean, std = data[:b_train].mean(axis=0), data[:b_train].std(axis=0)
    z = (data - mean) / std
    return {
        "train": z[:b_train],
        "val": z[b_train - lookback : b_val],
        "test": z[b_val - lookback : b_test],
        "mean": mean,
        "std": std,
    }
