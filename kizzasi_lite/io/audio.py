"""WAV / FLAC / OGG signals through ``soundfile`` (libsndfile), imported lazily.

Samples are read as float64 in [-1, 1] (integer PCM is scaled by libsndfile), one channel per
column, named ``ch0, ch1, ...``; ``samplerate`` is in Hz. Float files holding NaN or inf are
rejected with an ``InputError`` naming the file and frame. Written WAV files are 32-bit float
(values kept as they are); FLAC and OGG hold [-1, 1] only, so values are clipped to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kizzasi_lite.errors import InputError
from kizzasi_lite.io.base import AtomicFile, Signal, Sink, Source, default_names, require

BLOCK = 4096  # frames read per call when streaming


def _soundfile() -> Any:
    return require("soundfile", "soundfile", "io")


def _open(path: Path) -> Any:
    if not path.exists():  # libsndfile would only say "System error."
        raise InputError(f"cannot read audio file: no such file: {path}")
    if not path.is_file():
        raise InputError(f"cannot read audio file {path}: expected a file, got a folder")
    sf = _soundfile()
    try:
        return sf.SoundFile(str(path))
    except (RuntimeError, OSError, sf.LibsndfileError) as exc:
        raise InputError(f"cannot read audio file {path}: {exc}") from None


def read_audio(path: str | Path) -> Signal:
    """The whole file: ``Signal(data (T, channels) float64, names, samplerate)``."""
    path = Path(path)
    with _open(path) as f:
        data = f.read(dtype="float64", always_2d=True)  # (T, C)
        rate = float(f.samplerate)
    if len(data) == 0:
        raise InputError(f"{path}: expected at least one audio frame, the file has none")
    _check_finite(data, path, 0)
    return Signal(data, default_names(data.shape[1]), rate)


def _check_finite(frames: np.ndarray, path: Path, start: int) -> None:
    """Reject NaN / inf in ``frames`` (n, C), which begin at frame ``start`` of the file."""
    bad = ~np.isfinite(frames)
    if bad.any():
        frame, channel = np.argwhere(bad)[0]
        raise InputError(
            f"{path}, frame {start + int(frame)} (channel {int(channel)}): samples must be finite "
            f"(no NaN or inf), got {frames[frame, channel]}"
        )


class AudioSource(Source):
    """Frames of an audio file one at a time, read in blocks of :data:`BLOCK`."""

    def __init__(self, path: str | Path) -> None:
        self.path = self.where = Path(path)
        self._file = _open(self.path)
        self.samplerate = float(self._file.samplerate)
        self.names = default_names(self._file.channels)

    def _rows(self) -> Iterator[np.ndarray]:
        start = 0
        for block in self._file.blocks(blocksize=BLOCK, dtype="float64", always_2d=True):
            _check_finite(block, self.path, start)
            start += len(block)
            yield from block

    def close(self) -> None:
        self._file.close()


class AudioSink(Sink):
    """Writes each row as one frame of ``len(names)`` channels at ``samplerate`` Hz."""

    def __init__(self, path: str | Path, names: Sequence[str], samplerate: float = 16000) -> None:
        sf = _soundfile()
        self.names = list(names)
        self.target = AtomicFile(path)
        suffix = self.target.path.suffix.lower()
        self._clip = suffix != ".wav"
        subtype = {".wav": "FLOAT", ".flac": "PCM_24", ".ogg": "VORBIS"}[suffix]
        try:
            self._file = sf.SoundFile(
                str(self.target.tmp), "w", samplerate=int(round(samplerate)),
                channels=len(self.names), subtype=subtype,
            )  # fmt: skip
        except (RuntimeError, OSError, sf.LibsndfileError) as exc:
            self.target.discard()
            raise InputError(f"cannot write audio file {self.target.path}: {exc}") from None
        self._buffer: list[Sequence[float]] = []

    def _write(self, row: Sequence[float]) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            frames = np.asarray(self._buffer, dtype=np.float64)  # (n, C)
            self._file.write(np.clip(frames, -1.0, 1.0) if self._clip else frames)
            self._buffer = []

    def _finish(self) -> None:
        if not self._file.closed:
            self._flush()
            self._file.close()

    def __str__(self) -> str:
        return str(self.target.path if self.target else "audio sink")


def write_audio(path: str | Path, data: np.ndarray, samplerate: float) -> Path:
    """Write ``data`` (T,) or (T, channels) at ``samplerate`` Hz, atomically."""
    arr = np.asarray(data, dtype=np.float64)
    arr = arr[:, None] if arr.ndim == 1 else arr
    with AudioSink(path, default_names(arr.shape[1]), samplerate) as sink:
        for row in arr:
            sink.write(row)
    return Path(path)
