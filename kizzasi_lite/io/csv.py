"""CSV signals: a header row, one column per channel, an optional time column (detected, skipped).

The first column is taken as time, and skipped, when its header is a time name (``time``,
``timestamp``, ``date``, ``t``, ...) or its first value is text that is not a number (a date or
a timestamp); an empty first value does not make it a time column. The file is UTF-8, with or
without a byte-order mark. Blank lines are ignored; an empty cell in a channel is an error (a
missing value), as is any other value that is not a finite number. Errors name the file, the
line, the column and what was expected.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from kizzasi_lite.errors import InputError
from kizzasi_lite.io.base import AtomicFile, Sink, Source, column_indices

ENCODING = "utf-8-sig"  # UTF-8, without the byte-order mark that spreadsheets put first
TIME_NAMES = {"time", "timestamp", "date", "datetime", "t", "time_s", "seconds", "index", "step"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _time_first(header: list[str], first: list[str]) -> bool:
    """True when the first column is a time column (skipped): its name is a time name, or its
    first value is text that is not a number. An empty first value tells nothing: it is a
    missing number, reported as such, not a timestamp."""
    if not header or not first:
        return False
    if header[0].strip().lower() in TIME_NAMES:
        return True
    cell = first[0].strip()
    return bool(cell) and not _is_number(cell)


def _parse_row(
    row: list[str], picks: list[int], header: list[str], path: Path, line: int
) -> np.ndarray:
    """The numbers in columns ``picks`` of ``row``; errors name the file, line and column."""
    if len(row) != len(header):
        raise InputError(
            f"{path}, line {line}: expected {len(header)} fields as in the header, got {len(row)}"
        )
    values = np.empty(len(picks))  # (C,)
    for i, j in enumerate(picks):
        cell = row[j].strip()
        if not cell:
            raise InputError(
                f"{path}, line {line}: missing value in column {header[j]!r} (an empty cell); "
                "expected a number"
            )
        try:
            values[i] = float(cell)
        except ValueError:
            raise InputError(
                f"{path}, line {line}: expected numbers, got {cell!r} in column {header[j]!r}"
            ) from None
        if not np.isfinite(values[i]):
            raise InputError(
                f"{path}, line {line}: values must be finite (no NaN or inf), got {cell!r} "
                f"in column {header[j]!r}"
            )
    return values


def read_csv(path: str | Path, columns: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Read ``path``; return ``(data (T, C) float64, column names)``.

    The first row is the header; a time column is skipped (see the module docstring).
    ``columns`` picks channels by name (or position among the channels), in that order.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding=ENCODING) as f:
            rows = [(i + 1, r) for i, r in enumerate(csv.reader(f)) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read CSV {path}: {exc}") from exc
    if len(rows) < 2:
        raise InputError(f"{path}: expected a header row and at least one data row")
    header = [h.strip() for h in rows[0][1]]
    start = 1 if _time_first(header, rows[1][1]) else 0
    names = header[start:]
    picks = [start + i for i in column_indices(names, columns, str(path))]
    data = np.empty((len(rows) - 1, len(picks)))
    for k, (line, row) in enumerate(rows[1:]):
        data[k] = _parse_row(row, picks, header, path, line)
    return data, [header[j] for j in picks]


class CsvSource(Source):
    """Reads a CSV file one row at a time (the same rules as :func:`read_csv`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = self.where = Path(path)
        try:
            self._file = self.path.open(newline="", encoding=ENCODING)
        except OSError as exc:
            raise InputError(f"cannot read CSV {self.path}: {exc}") from exc
        self._lines = enumerate(csv.reader(self._file), start=1)
        try:
            self._header = [h.strip() for h in self._next_row(what="a header row")[1]]
            self._first = self._next_row(what="at least one data row")
        except BaseException:
            self.close()
            raise
        self._start = 1 if _time_first(self._header, self._first[1]) else 0
        self.names = self._header[self._start :]

    def _next_row(self, what: str) -> tuple[int, list[str]]:
        for line, row in self._read():
            return line, row
        raise InputError(f"{self.path}: expected {what}")

    def _read(self) -> Iterator[tuple[int, list[str]]]:
        try:
            for line, row in self._lines:
                if row:
                    yield line, row
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"cannot read CSV {self.path}: {exc}") from exc

    def _rows(self) -> Iterator[np.ndarray]:
        picks = list(range(self._start, len(self._header)))
        first, self._first = self._first, None
        rows = self._read() if first is None else itertools.chain([first], self._read())
        for line, row in rows:
            yield _parse_row(row, picks, self._header, self.path, line)

    def close(self) -> None:
        self._file.close()


class CsvSink(Sink):
    """Writes a header and one row per :meth:`write` into ``path`` (atomically, on close)."""

    text_ok = True  # a time column may hold text (dates)

    def __init__(self, path: str | Path, names: Sequence[str]) -> None:
        self.names = list(names)
        self.target = AtomicFile(path)
        self._file = self.target.tmp.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.names)

    def _write(self, row: Sequence[float]) -> None:
        self._writer.writerow([_fmt(v) for v in row])

    def _finish(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __str__(self) -> str:
        return str(self.target.path if self.target else "csv sink")


def _fmt(v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return str(int(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)


def write_csv(path: str | Path, data: np.ndarray, names: Sequence[str]) -> Path:
    """Write ``data`` (T, C) under the header ``names`` to ``path``, atomically."""
    data = np.asarray(data)
    with CsvSink(path, names) as sink:
        for row in data.reshape(len(data), -1):
            sink.write(row.tolist())
    return Path(path)
