"""JSON lines: one sample per line, on standard input / output (``-``) or in a ``.jsonl`` file.

A line is a JSON array of numbers (``[0.1, 2.5]``), a single number (one channel), or an object:
``{"x": [0.1, 2.5]}`` or ``{"temp": 0.1, "pressure": 2.5}`` (the keys of the first line name the
channels; every later line must have the same ones). Blank lines are skipped. The sink writes one
object per row, ``{"name": value, ...}``, and flushes after each line, so a reader at the other end
of a pipe sees every prediction as soon as it is made.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from kizzasi_lite.errors import InputError
from kizzasi_lite.io.base import AtomicFile, Signal, Sink, Source, default_names


class JsonLinesSource(Source):
    """Samples from JSON lines in ``path``, or from ``stream`` (standard input by default)."""

    def __init__(self, path: str | Path | None = None, stream: TextIO | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.where = str(self.path) if self.path else "<stdin>"
        if self.path is not None:
            try:
                self._file: TextIO = self.path.open(encoding="utf-8")
            except OSError as exc:
                raise InputError(f"cannot read {self.path}: {exc}") from None
            self._own = True
        else:
            self._file, self._own = stream if stream is not None else sys.stdin, False
        self._lines = self._read()
        try:
            self._first = self._next()
        except BaseException:
            self.close()
            raise
        self._keys = self._first[2]  # every line's channels, before any select()
        self.names = list(self._keys)

    def _read(self) -> Iterator[tuple[int, str]]:
        """``(line number, text)`` of every line that is not blank."""
        try:
            for line, text in enumerate(self._file, start=1):
                if text.strip():
                    yield line, text
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {self.where}: {exc}") from None

    def _next(self) -> tuple[int, np.ndarray, list[str]]:
        for line, text in self._lines:
            return (line, *self._parse(text, line, None))
        raise InputError(f"{self.where}: expected at least one JSON line with a sample")

    def _parse(self, text: str, line: int, names: list[str] | None) -> tuple[np.ndarray, list[str]]:
        where = f"{self.where}, line {line}"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: expected JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # an integer of > 4300 digits, deep nesting
            raise InputError(f"{where}: expected JSON of numbers ({exc})") from None
        if isinstance(obj, dict) and set(obj) == {"x"}:
            obj = obj["x"]
        if isinstance(obj, dict):
            keys = list(obj)
            if names is not None and keys != names:
                raise InputError(
                    f"{where}: expected the keys {names} as on the first line, got {keys}"
                )
            values = [obj[k] for k in keys]
        else:
            values = obj if isinstance(obj, list) else [obj]
            keys = default_names(len(values))
            if names is not None and len(values) != len(names):
                raise InputError(f"{where}: expected {len(names)} values, got {len(values)}")
        if not values or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise InputError(
                f"{where}: expected numbers: an array, a number, or an object of numbers"
            )
        try:
            arr = np.array([float(v) for v in values])  # (D,)
        except OverflowError:
            raise InputError(
                f"{where}: a number is too large for float64 (magnitude above 1.8e308)"
            ) from None
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where}: values must be finite (no NaN or inf)")
        return arr, names or keys

    def _rows(self) -> Iterator[np.ndarray]:
        first, self._first = self._first, None
        if first is not None:
            yield first[1]
        for line, text in self._lines:
            yield self._parse(text, line, self._keys)[0]

    def close(self) -> None:
        self._lines.close()  # a generator: closing it now keeps no frame (or file) alive
        if self._own:
            self._file.close()


def read_jsonl(path: str | Path | None = None, stream: TextIO | None = None) -> Signal:
    """Every line of ``path`` (or ``stream`` / standard input) as ``Signal(data (T, C), names)``."""
    src = JsonLinesSource(path, stream)
    with src:
        rows = list(src)
    return Signal(np.stack(rows), src.names)


class JsonLinesSink(Sink):
    """One JSON object per row, to ``path`` (atomically, on close) or to ``stream`` (stdout)."""

    def __init__(
        self, names: Sequence[str], path: str | Path | None = None, stream: TextIO | None = None
    ) -> None:
        self.names = list(names)
        if path is not None:
            self.target = AtomicFile(path)
            self._file: TextIO = self.target.tmp.open("w", encoding="utf-8")
            self._own = True
        else:
            self._file, self._own = stream if stream is not None else sys.stdout, False

    def _write(self, row: Sequence[float]) -> None:
        obj = {k: _plain(v) for k, v in zip(self.names, row, strict=True)}
        self._file.write(json.dumps(obj) + "\n")
        if not self._own:
            self._file.flush()

    def _finish(self) -> None:
        if self._own:
            if not self._file.closed:
                self._file.close()
        else:
            self._file.flush()

    def __str__(self) -> str:
        return str(self.target.path) if self.target else "<stdout>"


def _plain(v: object) -> int | float:
    if isinstance(v, bool | np.bool_):
        return int(v)
    if isinstance(v, int | np.integer):
        return int(v)
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f
