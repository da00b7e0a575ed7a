import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kizzasi_lite.errors import WeightsError
from kizzasi_lite.weights import load_file, save_file

safetensors_numpy = pytest.importorskip("safetensors.numpy")

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.bool_]


@settings(max_examples=30, deadline=None)
@given(
    arrays=st.dictionaries(
        st.text("abcdefgh._0123", min_size=1, max_size=12),
        st.sampled_from(DTYPES).flatmap(
            lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
        ),
        max_size=4,
    )
)
def test_round_trip_is_lossless_and_interoperates(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    save_file(arrays, path, metadata={"format": "np"})
    ours, meta = load_file(path)
    theirs = safetensors_numpy.load_file(str(path))
    assert meta == {"format": "np"}
    for name, arr in arrays.items():
        np.testing.assert_array_equal(ours[name], arr)
        assert ours[name].dtype == arr.dtype and ours[name].shape == arr.shape
        np.testing.assert_array_equal(theirs[name], arr)
    # and the other way: files written by the safetensors package load here
    safetensors_numpy.save_file(arrays, str(path))
    back, _ = load_file(path)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(back[name], arr)


def test_corrupt_files_raise_weights_error_naming_the_problem(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": np.ones((3, 4), np.float32)}, path)
    raw = path.read_bytes()
    cases = {
        "short": raw[:4],
        "header length": b"\xff" * 8 + raw[8:],
        "truncated data": raw[:-8],
        "json": raw[:8] + b"}" + raw[9:],
    }
    for what, blob in cases.items():
        path.write_bytes(blob)
        with pytest.raises(WeightsError) as info:
            load_file(path)
        assert str(path) in str(info.value), what
    with pytest.raises(WeightsError, match="cannot read"):
        load_file(tmp_path / "missing.safetensors")


def test_bf16_is_widened_to_float32(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as torch_save

    t = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
    torch_save({"x": t}, str(tmp_path / "b.safetensors"))
    out, _ = load_file(tmp_path / "b.safetensors")
    np.testing.assert_array_equal(out["x"], np.array([1.5, -2.0, 3.25], np.float32))


def _raw_file(path, header, data=b"\0" * 16):
    """A safetensors file with exactly this ``header`` (no checks) and ``data`` bytes."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"w": {**F32_2, "shape": [2.0]}}, r"'w': shape must be a list of whole numbers"),
        ({"w": {**F32_2, "shape": "ab"}}, r"'w': shape must be a list"),
        ({"w": {**F32_2, "shape": [-2]}}, r"'w': shape must be a list"),
        ({"w": {**F32_2, "shape": [True, 2]}}, r"'w': shape must be a list"),
        ({"w": {**F32_2, "data_offsets": ["0", 8]}}, r"'w': data_offsets must be \[begin, end\]"),
        ({"w": {**F32_2, "data_offsets": [0]}}, r"'w': data_offsets must be \[begin, end\]"),
        ({"w": {**F32_2, "data_offsets": 8}}, r"'w': data_offsets must be \[begin, end\]"),
        ({"w": {**F32_2, "data_offsets": [8, 0]}}, r"'w': data \[8, 0\) lies outside"),
        ({"w": {**F32_2, "data_offsets": [12, 20]}}, r"'w': data \[12, 20\) lies outside"),
        ({"w": {**F32_2, "dtype": ["F32"]}}, r"'w' has unsupported dtype \['F32'\]"),
        ({"w": {**F32_2, "dtype": "F8"}}, r"'w' has unsupported dtype 'F8'"),
        ({"w": {**F32_2, "shape": [3]}}, r"'w' holds 8 bytes, shape \[3\] of F32 needs 12"),
        ({"w": {"dtype": "F32", "shape": [2]}}, "'w': the header entry has no data_offsets"),
        ({"w": [1, 2]}, "'w': expected an object"),
        (
            {"a": F32_2, "b": {**F32_2, "data_offsets": [4, 12]}},
            r"tensor 'b' \(bytes \[4, 12\)\) overlaps tensor 'a'",
        ),
        ({"a": F32_2, "b": F32_2}, "overlaps tensor"),
        ({"__metadata__": ["x"], "w": F32_2}, "__metadata__ must be a JSON object"),
        ({"__metadata__": {"n": 1}, "w": F32_2}, r"__metadata__\['n'\] must be a string"),
    ],
)
def test_malformed_headers_raise_weights_error_naming_the_tensor(tmp_path, entries, message):
    path = _raw_file(tmp_path / "m.safetensors", entries)
    with pytest.raises(WeightsError, match=message) as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_empty_tensors_and_gaps_are_accepted(tmp_path):
    header = {
        "a": F32_2,
        "e1": {"dtype": "F64", "shape": [0, 3], "data_offsets": [8, 8]},
        "e2": {"dtype": "I8", "shape": [0], "data_offsets": [8, 8]},
        "b": {"dtype": "U8", "shape": [2, 2], "data_offsets": [12, 16]},  # 4 unused bytes before
    }
    out, meta = load_file(_raw_file(tmp_path / "m.safetensors", header))
    assert meta == {} and out["e1"].shape == (0, 3) and out["b"].shape == (2, 2)
    np.testing.assert_array_equal(out["a"], np.zeros(2, np.float32))
    arrays = {"z": np.zeros((0, 2), np.float32), "y": np.arange(3, dtype=np.int64)}
    save_file(arrays, tmp_path / "n.safetensors")
    back, _ = load_file(tmp_path / "n.safetensors")
    assert back["z"].shape == (0, 2) and back["y"].tolist() == [0, 1, 2]
