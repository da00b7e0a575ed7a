"""HDF5 signals through ``h5py``, imported lazily: ``file.h5:group/dataset``.

A dataset of shape (T,) or (T, channels) is one signal. Channel names come from the dataset's
``columns`` attribute when it has one (written by :class:`Hdf5Sink`), else ``ch0, ch1, ...``.
Without a dataset path, a file that holds exactly one dataset uses it; a sink writes ``data``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kizzasi_lite.errors import InputError
from kizzasi_lite.io.base import (
    AtomicFile,
    Signal,
    Sink,
    Source,
    as_table,
    default_names,
    require,
)

BLOCK = 4096  # rows read or written per call
DEFAULT_DATASET = "data"


def _h5py() -> Any:
    return require("h5py", "h5py", "io")


def _datasets(f: Any) -> list[str]:
    h5py = _h5py()
    found: list[str] = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _dataset(path: Path, dataset: str | None) -> tuple[Any, Any, str]:
    """Open ``path`` and return (file, dataset object, dataset name); errors name both."""
    h5py = _h5py()
    try:
        f = h5py.File(str(path), "r")
    except OSError as exc:
        raise InputError(f"cannot read HDF5 file {path}: {exc}") from None
    names = _datasets(f)
    if dataset is None:
        if len(names) != 1:
            f.close()
            raise InputError(
                f"{path}: expected a dataset path after ':' ({path}:NAME); the file has "
                f"{len(names)} datasets: {names[:10]}"
            )
        dataset = names[0]
    obj = f.get(dataset)
    if not isinstance(obj, h5py.Dataset):
        f.close()
        raise InputError(f"{path}: no dataset {dataset!r}; the file has datasets {names[:10]}")
    if obj.ndim not in (1, 2) or obj.dtype.kind not in "iuf":
        got = f"got shape {obj.shape} dtype {obj.dtype}"
        f.close()
        raise InputError(
            f"{path}:{dataset}: expected a numeric dataset of shape (T,) or (T, channels), {got}"
        )
    return f, obj, dataset


def _names(obj: Any) -> list[str]:
    cols = obj.attrs.get("columns")
    n = 1 if obj.ndim == 1 else obj.shape[1]
    if cols is not None and np.ndim(cols) == 1 and len(cols) == n:  # else: not channel names
        return [c.decode() if isinstance(c, bytes) else str(c) for c in cols]
    return default_names(n)


def _samplerate(obj: Any, where: str) -> float | None:
    """The dataset's ``samplerate`` attribute in Hz (None when it has none)."""
    rate = obj.attrs.get("samplerate")
    if rate is None:
        return None
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value < math.inf:
        raise InputError(
            f"{where}: the 'samplerate' attribute must be a finite number of Hz > 0, got {rate!r:.80}"
        )
    return value


def read_hdf5(path: str | Path, dataset: str | None = None) -> Signal:
    """The whole dataset as ``Signal(data (T, C) float64, names)``."""
    path = Path(path)
    f, obj, name = _dataset(path, dataset)
    with f:
        data = as_table(np.asarray(obj[...]), f"{path}:{name}")
        names = _names(obj)
        rate = _samplerate(obj, f"{path}:{name}")
    return Signal(data, names, rate)


class Hdf5Source(Source):
    """Rows of a dataset one at a time, read in blocks of :data:`BLOCK` rows."""

    def __init__(self, path: str | Path, dataset: str | None = None) -> None:
        self.path = Path(path)
        self._file, self._obj, self.dataset = _dataset(self.path, dataset)
        self.where = f"{self.path}:{self.dataset}"
        try:
            self.names = _names(self._obj)
            self.samplerate = _samplerate(self._obj, self.where)
        except BaseException:
            self._file.close()
            raise

    def _rows(self) -> Iterator[np.ndarray]:
        for a in range(0, len(self._obj), BLOCK):
            block = as_table(np.asarray(self._obj[a : a + BLOCK]), f"{self.where}, rows {a}..")
            yield from block

    def close(self) -> None:
        self._file.close()


class Hdf5Sink(Sink):
    """Appends rows to a resizable float64 dataset (``columns`` attribute = the names)."""

    def __init__(
        self, path: str | Path, names: Sequence[str], dataset: str | None = None,
        samplerate: float | None = None,
    ) -> None:  # fmt: skip
        h5py = _h5py()
        self.names = list(names)
        self.target = AtomicFile(path)
        self.dataset = dataset or DEFAULT_DATASET
        self._file = h5py.File(str(self.target.tmp), "w")
        n = len(self.names)
        self._obj = self._file.create_dataset(
            self.dataset, shape=(0, n), maxshape=(None, n), dtype="f8", chunks=(BLOCK, n)
        )
        self._obj.attrs["columns"] = self.names
        if samplerate:
            self._obj.attrs["samplerate"] = float(samplerate)
        self._buffer: list[Sequence[float]] = []

    def _write(self, row: Sequence[float]) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            block = np.asarray(self._buffer, dtype=np.float64)  # (n, C)
            t = self._obj.shape[0]
            self._obj.resize(t + len(block), axis=0)
            self._obj[t:] = block
            self._buffer = []

    def _finish(self) -> None:
        if self._file.id.valid:
            self._flush()
            self._file.close()

    def __str__(self) -> str:
        return f"{self.target.path}:{self.dataset}" if self.target else "hdf5 sink"
