"""Thin adapters between files or transports and arrays. Optional packages are imported lazily.

One interface for every format (see :mod:`kizzasi_lite.io.base`): a :class:`Source` yields samples
``(D,)`` one at a time, a :class:`Sink` writes rows. Locations name the format by their suffix:

========================  ==========================================================
``data.csv``              header row, one column per channel; a time column is skipped
``audio.wav`` ``.flac``   soundfile (``pip install 'kizzasi-lite[io]'``)
``file.h5:group/data``    h5py; the dataset path after ``:``
``data.npy``              a (T,) or (T, channels) array, loaded without pickle
``data.jsonl`` or ``-``   JSON lines in a file, or on standard input / output
========================  ==========================================================

>>> from kizzasi_lite.io import read_data, open_sink
>>> sig = read_data("kizzasi_lite/data/ett/ETTh1.csv", columns=["HUFL", "OT"])
>>> sig.data.shape, sig.names
((17420, 2), ['HUFL', 'OT'])
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from kizzasi_lite.errors import InputError
from kizzasi_lite.io.base import (
    AtomicFile,
    Location,
    Signal,
    Sink,
    Source,
    atomic_write,
    column_indices,
    parse_location,
)

__all__ = [
    "AtomicFile",
    "Location",
    "Signal",
    "Sink",
    "Source",
    "atomic_write",
    "open_sink",
    "open_source",
    "parse_location",
    "read_data",
    "write_table",
]


def read_data(
    spec: str | os.PathLike, columns: Sequence[str] | None = None, *, stdin: TextIO | None = None
) -> Signal:
    """Read a whole signal: ``Signal(data (T, C) float64, names, samplerate)``.

    ``columns`` picks channels by name or position, in that order; ``stdin`` replaces standard
    input for ``-``.
    """
    loc = parse_location(spec)
    if loc.kind == "csv":
        from kizzasi_lite.io.csv import read_csv

        data, names = read_csv(loc.path, list(columns) if columns else None)
        return Signal(data, names)
    if loc.kind == "audio":
        from kizzasi_lite.io.audio import read_audio

        sig = read_audio(loc.path)
    elif loc.kind == "hdf5":
        from kizzasi_lite.io.hdf5 import read_hdf5

        sig = read_hdf5(loc.path, loc.dataset)
    elif loc.kind == "npy":
        from kizzasi_lite.io.npy import read_npy

        sig = read_npy(loc.path)
    else:
        from kizzasi_lite.io.jsonl import read_jsonl

        sig = read_jsonl(loc.path, stdin)
    if columns:
        idx = column_indices(sig.names, columns, str(loc))
        sig = Signal(sig.data[:, idx], [sig.names[i] for i in idx], sig.samplerate, sig.meta)
    return sig


def open_source(
    spec: str | os.PathLike, columns: Sequence[str] | None = None, *, stdin: TextIO | None = None
) -> Source:
    """A :class:`Source` over ``spec`` yielding samples ``(D,)`` one at a time."""
    loc = parse_location(spec)
    if loc.kind == "csv":
        from kizzasi_lite.io.csv import CsvSource

        src: Source = CsvSource(loc.path)
    elif loc.kind == "audio":
        from kizzasi_lite.io.audio import AudioSource

        src = AudioSource(loc.path)
    elif loc.kind == "hdf5":
        from kizzasi_lite.io.hdf5 import Hdf5Source

        src = Hdf5Source(loc.path, loc.dataset)
    elif loc.kind == "npy":
        from kizzasi_lite.io.npy import NpySource

        src = NpySource(loc.path)
    else:
        from kizzasi_lite.io.jsonl import JsonLinesSource

        src = JsonLinesSource(loc.path, stdin)
    try:
        return src.select(columns)
    except InputError:
        src.close()
        raise


def open_sink(
    spec: str | os.PathLike, names: Sequence[str], *, samplerate: float | None = None,
    stdout: TextIO | None = None,
) -> Sink:  # fmt: skip
    """A :class:`Sink` writing rows of ``len(names)`` values to ``spec``.

    Audio sinks write every name as a channel at ``samplerate`` Hz (16 kHz when not given).
    """
    loc = parse_location(spec)
    if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names):
        raise InputError(
            f"{loc}: names must be a non-empty list of channel names, got {names!r:.80}"
        )
    if samplerate is not None and (
        isinstance(samplerate, bool)
        or not isinstance(samplerate, numbers.Real)
        or not 0 < samplerate < math.inf
    ):
        raise InputError(f"{loc}: samplerate must be a finite number of Hz > 0, got {samplerate!r}")
    if loc.kind == "csv":
        from kizzasi_lite.io.csv import CsvSink

        return CsvSink(loc.path, names)
    if loc.kind == "audio":
        from kizzasi_lite.io.audio import AudioSink

        return AudioSink(loc.path, names, samplerate or 16000)
    if loc.kind == "hdf5":
        from kizzasi_lite.io.hdf5 import Hdf5Sink

        return Hdf5Sink(loc.path, names, loc.dataset, samplerate)
    if loc.kind == "npy":
        from kizzasi_lite.io.npy import NpySink

        return NpySink(loc.path, names)
    from kizzasi_lite.io.jsonl import JsonLinesSink

    return JsonLinesSink(names, loc.path, stdout)


def write_table(
    spec: str | os.PathLike, data: np.ndarray, names: Sequence[str], *,
    samplerate: float | None = None, stdout: TextIO | None = None,
) -> None:  # fmt: skip
    """Write ``data`` (T, C) under ``names`` to ``spec`` in its format, atomically."""
    data = np.asarray(data)
    data = data[:, None] if data.ndim == 1 else data
    if data.ndim != 2:
        raise InputError(f"{spec}: expected data of shape (T,) or (T, channels), got {data.shape}")
    with open_sink(spec, names, samplerate=samplerate, stdout=stdout) as sink:
        for row in data:
            sink.write(row.tolist())
