"""NumPy ``.npy`` signals: an array of shape (T,) or (T, channels), read without pickle.

NPY files carry no channel names (``ch0, ch1, ...``). The sink keeps its rows in memory and writes
the file when closed (the format needs the row count in its header).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from kizzasi_lite.errors import InputError
from kizzasi_lite.io.base import AtomicFile, Signal, Sink, Source, as_table, default_names

BLOCK = 4096


def _load(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        raise InputError(f"cannot read NPY file {path}: {exc or type(exc).__name__}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive under a .npy name
        arr.close()
        raise InputError(f"{path}: expected an NPY array, got an NPZ archive of {arr.files[:5]}")
    if arr.ndim not in (1, 2) or arr.dtype.kind not in "iuf":
        raise InputError(
            f"{path}: expected a numeric array of shape (T,) or (T, channels), "
            f"got shape {arr.shape} dtype {arr.dtype}"
        )
    return arr


def read_npy(path: str | Path) -> Signal:
    """The whole array as ``Signal(data (T, C) float64, names)``."""
    path = Path(path)
    data = as_table(np.array(_load(path)), str(path))
    return Signal(data, default_names(data.shape[1]))


class NpySource(Source):
    """Rows of an ``.npy`` array one at a time (memory-mapped, read in blocks)."""

    def __init__(self, path: str | Path) -> None:
        self.path = self.where = Path(path)
        self._arr = _load(self.path)
        self.names = default_names(1 if self._arr.ndim == 1 else self._arr.shape[1])

    def _rows(self) -> Iterator[np.ndarray]:
        for a in range(0, len(self._arr), BLOCK):
            yield from as_table(np.array(self._arr[a : a + BLOCK]), f"{self.path}, rows {a}..")


class NpySink(Sink):
    """Collects rows; :meth:`close` writes them as one float64 (T, C) array."""

    def __init__(self, path: str | Path, names: Sequence[str]) -> None:
        self.names = list(names)
        self.target = AtomicFile(path)
        self._collected: list[Sequence[float]] | None = []

    def _write(self, row: Sequence[float]) -> None:
        self._collected.append(row)

    def _finish(self) -> None:
        if self._collected is not None:
            data = np.asarray(self._collected, dtype=np.float64).reshape(-1, len(self.names))
            with self.target.tmp.open("wb") as f:
                np.save(f, data, allow_pickle=False)
            self._collected = None

    def abort(self) -> None:
        self._collected = None
        super().abort()

    def __str__(self) -> str:
        return str(self.target.path if self.target else "npy sink")
