"""CSV signals: a header row, one column per channel, an optional time column (detected, skipped)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kizzasi_lite.errors import InputError


def read_csv(path: str | Path, columns: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Read ``path``; return ``(data (T, C) float64, column names)``.

    The first row is the header. A first column whose values are not numbers (a date or
    timestamp) is skipped. ``columns`` picks channels by name, in that order. Errors name the
    file, the line and what was expected.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read CSV {path}: {exc}") from exc
    if len(rows) < 2:
        raise InputError(f"{path}: expected a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    start = 0 if _is_number(body[0][0]) else 1  # a time column first: skip it
    names = header[start:]
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(f"{path}: no column(s) {missing}; the file has {names}")
        picks = [header.index(c) for c in columns]
    else:
        picks = list(range(start, len(header)))
    data = np.empty((len(body), len(picks)))
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise InputError(
                f"{path}, line {i + 2}: expected {len(header)} fields as in the header, got {len(row)}"
            )
        try:
            data[i] = [float(row[j]) for j in picks]
        except ValueError as exc:
            raise InputError(f"{path}, line {i + 2}: expected numbers, {exc}") from None
    if not np.all(np.isfinite(data)):
        line = int(np.argwhere(~np.isfinite(data))[0][0]) + 2
        raise InputError(f"{path}, line {line}: values must be finite (no NaN or inf)")
    return data, [header[j] for j in picks]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
