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
