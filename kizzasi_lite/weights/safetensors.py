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
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kizzasi_lite.errors import WeightsError

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
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(raw)[8 + n :]
    tensors = {}
    for name, info in header.items():
        tensors[name] = _read_tensor(path, name, info, data)
    return tensors, metadata


def _read_tensor(path: Path, name: str, info: Any, data: memoryview) -> np.ndarray:
    try:
        dtype_name, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(
            f"{path}: tensor {name!r} has a malformed header entry {info!r}"
        ) from exc
    if not (0 <= begin <= end <= len(data)):
        raise WeightsError(
            f"{path}: tensor {name!r} data [{begin}, {end}) lies outside the {len(data)}-byte data"
        )
    count = int(np.prod(shape, dtype=np.int64))
    if dtype_name == "BF16":
        if end - begin != 2 * count:
            raise WeightsError(f"{path}: tensor {name!r}: {end - begin} bytes for shape {shape}")
        bits = np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    if dtype_name not in _DTYPES:
        raise WeightsError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}")
    dtype = np.dtype(_DTYPES[dtype_name]).newbyteorder("<")
    if end - begin != dtype.itemsize * count:
        raise WeightsError(
            f"{path}: tensor {name!r} holds {end - begin} bytes, "
            f"shape {shape} of {dtype_name} needs {dtype.itemsize * count}"
        )
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
