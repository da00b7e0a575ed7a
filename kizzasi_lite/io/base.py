"""The one small interface every file format and transport implements, and what they share.

- A :class:`Source` yields samples one at a time: float64 arrays of shape ``(D,)``, with channel
  names in ``source.names`` (and ``source.samplerate`` in Hz for audio, else None).
- A :class:`Sink` writes rows (sequences of numbers, one per name in ``sink.names``). A file sink
  writes to a temporary file beside the target and renames it into place on :meth:`Sink.close`,
  so a half-written file is never left behind; :meth:`Sink.abort` discards it instead.

Used as a context manager, a sink commits when the block ends normally or by ``KeyboardInterrupt``
(Ctrl-C ends a stream cleanly, keeping what was written) and discards on any other exception.

Where a signal lives is written as a *location*: a path whose suffix names the format (``.csv``,
``.wav``/``.flac``, ``.h5``/``.hdf5`` with an optional ``:dataset/path``, ``.npy``,
``.jsonl``/``.ndjson``), or ``-`` for JSON lines on standard input / output.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from kizzasi_lite.errors import InputError, MissingDependencyError

# the temporary-file-then-rename helper is shared with weights/ (the core may not import io/)
from kizzasi_lite.weights.atomic import AtomicFile as AtomicFile
from kizzasi_lite.weights.atomic import atomic_write as atomic_write

SUFFIXES = {
    ".csv": "csv",
    ".wav": "audio",
    ".flac": "audio",
    ".ogg": "audio",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".he5": "hdf5",
    ".npy": "npy",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
STDIO = "-"


def require(module: str, package: str, extra: str) -> Any:
    """Import ``module`` lazily or raise :class:`MissingDependencyError` naming the pip install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"this needs the optional package {package!r}: pip install 'kizzasi-lite[{extra}]' "
            f"(or pip install {package}); import failed with: {exc}"
        ) from None


@dataclass(frozen=True)
class Location:
    """Where a signal is read from or written to: ``kind`` is csv, audio, hdf5, npy or jsonl;
    ``path`` is None for standard input / output; ``dataset`` is the HDF5 dataset path."""

    spec: str
    kind: str
    path: Path | None
    dataset: str | None = None

    def __str__(self) -> str:
        if self.path is None:
            return "<stdin/stdout>"
        return f"{self.path}:{self.dataset}" if self.dataset else str(self.path)


def parse_location(spec: str | os.PathLike) -> Location:
    """Parse ``file.csv``, ``file.h5:group/data``, ``-`` ...; unknown suffixes raise ``InputError``."""
    text = os.fspath(spec)
    if text == STDIO:
        return Location(text, "jsonl", None)
    dataset = None
    head, sep, tail = text.rpartition(":")
    if sep and SUFFIXES.get(Path(head).suffix.lower()) == "hdf5":
        text, dataset = head, tail.strip("/") or None
    path = Path(text)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(SUFFIXES))
        raise InputError(
            f"{spec}: cannot tell the file type from the suffix {path.suffix or '(none)'!r}; "
            f"expected one of {known}, 'file.h5:dataset/path', or '-' for JSON lines on stdin/stdout"
        )
    return Location(os.fspath(spec), kind, path, dataset)


@dataclass
class Signal:
    """A whole signal in memory: ``data`` (T, C) float64, channel ``names``, ``samplerate`` (Hz)."""

    data: np.ndarray
    names: list[str]
    samplerate: float | None = None
    meta: dict = field(default_factory=dict)


def default_names(n: int) -> list[str]:
    """``ch0, ch1, ...`` for formats that carry no channel names."""
    return [f"ch{i}" for i in range(n)]


def column_indices(names: Sequence[str], columns: Sequence[str] | None, where: str) -> list[int]:
    """Indices of ``columns`` (names, or whole numbers as positions) among ``names``."""
    if not columns:
        return list(range(len(names)))
    out = []
    for c in columns:
        c = str(c).strip()
        if c in names:
            out.append(list(names).index(c))
        elif c.lstrip("-").isdigit() and -len(names) <= int(c) < len(names):
            out.append(int(c) % len(names))
        else:
            raise InputError(f"{where}: no column {c!r}; the channels are {list(names)}")
    return out


def as_table(arr: np.ndarray, where: str) -> np.ndarray:
    """A (T,) or (T, C) numeric array as float64 (T, C); other shapes raise ``InputError``."""
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{where}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(f"{where}: expected shape (T,) or (T, channels), got {arr.shape}")
    out = np.asarray(arr, dtype=np.float64)
    if out.size and not np.all(np.isfinite(out)):
        row = int(np.argwhere(~np.isfinite(out))[0][0])
        raise InputError(f"{where}, row {row}: values must be finite (no NaN or inf)")
    return out


class Source(ABC):
    """Yields samples ``(D,)`` float64 one at a time. Subclasses implement :meth:`_rows`."""

    names: list[str]
    samplerate: float | None = None
    where: str = "source"

    def select(self, columns: Sequence[str] | None) -> Source:
        """Keep only ``columns`` (names or positions), in that order; returns ``self``."""
        if not columns:
            return self
        idx = column_indices(self.names, columns, self.where)
        before = getattr(self, "_index", None)  # compose with an earlier selection
        self._index = idx if before is None else [before[i] for i in idx]
        self.names = [self.names[i] for i in idx]
        return self

    @abstractmethod
    def _rows(self) -> Iterator[np.ndarray]:
        """Yield the rows of the source (each format's subclass defines it)."""

    def __iter__(self) -> Iterator[np.ndarray]:
        index = getattr(self, "_index", None)
        for row in self._rows():
            yield row if index is None else row[index]

    def close(self) -> None:
        """Release the file or stream; sources that hold none keep this no-op."""
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finite_number(v: object) -> bool:
    """A real number (bools and NumPy scalars too) that is finite and fits in a float64."""
    if not isinstance(v, numbers.Real | np.bool_):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float64
        return False


class Sink(ABC):
    """Writes rows of numbers (one per name in ``names``). Subclasses implement
    :meth:`_write` and, for files, :meth:`_finish`; the temporary file is handled here."""

    names: list[str]
    target: AtomicFile | None = None
    rows_written: int = 0
    text_ok: bool = False  # True where a cell may hold text (a CSV time column)

    def write(self, row: Sequence[float]) -> None:
        """Write one row: ``len(self.names)`` finite real numbers (text too, where ``text_ok``)."""
        flat = isinstance(row, Sequence | np.ndarray) and not isinstance(row, str | bytes)
        n = len(row) if flat and getattr(row, "ndim", 1) == 1 else None
        if n != len(self.names):
            got = n if n is not None else f"{type(row).__name__} {row!r:.40}"
            raise InputError(
                f"{self}: expected a row of {len(self.names)} values {self.names}, got {got}"
            )
        for name, v in zip(self.names, row, strict=True):
            if not (isinstance(v, str) and self.text_ok) and not _finite_number(v):
                raise InputError(f"{self}: {name!r} must be a finite real number, got {v!r:.40}")
        self._write(row)
        self.rows_written += 1

    @abstractmethod
    def _write(self, row: Sequence[float]) -> None:
        """Write one validated row (each format's subclass defines it)."""

    def _finish(self) -> None:
        """Flush and close the underlying file (before the rename); sinks that hold none keep
        this no-op."""
        return None

    def close(self) -> None:
        """Finish the output: flush, close, and move the temporary file into place."""
        self._finish()
        if self.target is not None:
            self.target.commit()

    def abort(self) -> None:
        """Stop without keeping anything: the temporary file is removed."""
        with contextlib.suppress(Exception):  # the output is being discarded anyway
            self._finish()
        if self.target is not None:
            self.target.discard()

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None or issubclass(kind, KeyboardInterrupt):
            self.close()
        else:
            self.abort()
