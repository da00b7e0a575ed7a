"""The safetensors file format, read and written with NumPy alone.

Layout (huggingface/safetensors, docs "format"): an 8-byte little-endian header length ``N``, then
``N`` bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``
padded with spaces, then the raw little-endian tensor bytes, offsets relative to the data start.

The core must import with numpy and array-api-compat alone (and run under Pyodide), so this small
reader/writer is used instead of the ``safetensors`` package; the tests check that files written
here load with ``safetensors.numpy.load_file`` and the reverse. Every problem with a file raises
``WeightsError`` naming the file and the tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from kizzasi_lite.errors import WeightsError
from kizzasi_lite.weights.atomic import atomic_write

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100_000_000


def load_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read ``path``; return ``(tensors, metadata)``. BF16 tensors are widened to float32."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    if len(raw) < 8:
        raise WeightsError(f"{path}: not a safetensors file (only {len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise WeightsError(f"{path}: header length {n} exceeds the file size {len(raw)}")
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    metadata = _check_metadata(path, header.pop("__metadata__", {}))
    data = memoryview(raw)[8 + n :]
    entries = {name: _check_entry(path, name, info, len(data)) for name, info in header.items()}
    _check_no_overlap(path, entries)
    tensors = {name: _read_tensor(entry, data) for name, entry in entries.items()}
    return tensors, metadata


def _check_metadata(path: Path, metadata: Any) -> dict[str, str]:
    """``__metadata__`` is a JSON object of strings (the format's ``HashMap<String, String>``)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise WeightsError(
            f"{path}: __metadata__ must be a JSON object, got {type(metadata).__name__}"
        )
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise WeightsError(
                f"{path}: __metadata__[{key!r}] must be a string, got {type(value).__name__}"
            )
    return metadata


def _is_index(v: Any) -> bool:
    """A JSON whole number >= 0 (``true``/``false`` and ``2.0`` are not)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_entry(path: Path, name: str, info: Any, size: int) -> tuple:
    """Validate one header entry; return ``(dtype name, shape tuple, begin, end)``."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict):
        raise WeightsError(
            f"{where}: expected an object with dtype, shape and data_offsets, got {info!r}"
        )
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
    if missing:
        raise WeightsError(f"{where}: the header entry has no {', '.join(missing)}: {info!r}")
    dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype_name, str) or (dtype_name != "BF16" and dtype_name not in _DTYPES):
        known = ", ".join([*_DTYPES, "BF16"])
        raise WeightsError(f"{where} has unsupported dtype {dtype_name!r}; expected one of {known}")
    if not isinstance(shape, list) or not all(_is_index(d) for d in shape):
        raise WeightsError(f"{where}: shape must be a list of whole numbers >= 0, got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_index, offsets))):
        raise WeightsError(
            f"{where}: data_offsets must be [begin, end], two whole numbers >= 0, got {offsets!r}"
        )
    begin, end = offsets
    if not begin <= end <= size:
        raise WeightsError(
            f"{where}: data [{begin}, {end}) lies outside the {size}-byte data section"
        )
    itemsize = 2 if dtype_name == "BF16" else np.dtype(_DTYPES[dtype_name]).itemsize
    need = math.prod(shape) * itemsize
    if end - begin != need:
        raise WeightsError(
            f"{where} holds {end - begin} bytes, shape {shape} of {dtype_name} needs {need}"
        )
    return dtype_name, tuple(shape), begin, end


def _check_no_overlap(path: Path, entries: dict[str, tuple]) -> None:
    """No two tensors share a byte (empty tensors hold none, so they may sit anywhere)."""
    spans = sorted((e[2], e[3], name) for name, e in entries.items() if e[3] > e[2])
    for (_, end_a, a), (begin_b, end_b, b) in zip(spans, spans[1:], strict=False):
        if begin_b < end_a:
            raise WeightsError(
                f"{path}: tensor {b!r} (bytes [{begin_b}, {end_b})) overlaps tensor {a!r} "
                f"(bytes up to {end_a})"
            )


def _read_tensor(entry: tuple, data: memoryview) -> np.ndarray:
    """The array of one validated entry, in native byte order."""
    dtype_name, shape, begin, end = entry
    if dtype_name == "BF16":
        bits = np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    dtype = np.dtype(_DTYPES[dtype_name]).newbyteorder("<")
    return (
        np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    )


def save_file(
    tensors: dict[str, np.ndarray], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (NumPy arrays) to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name], order="C")
        if arr.dtype not in _NAMES:
            raise WeightsError(f"cannot save tensor {name!r} of dtype {arr.dtype} as safetensors")
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _NAMES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with atomic_write(path, error=WeightsError) as tmp, tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
