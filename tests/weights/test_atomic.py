"""Files are written whole or not at all, with the mode ``open(path, "w")`` would give them."""

import json
import os
import stat

import numpy as np
import pytest

from kizzasi_lite.errors import WeightsError
from kizzasi_lite.weights import read_training_info, save_file, write_json_atomic
from kizzasi_lite.weights.atomic import AtomicFile

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")


@pytest.fixture(params=[0o022, 0o007])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_weight_files_get_the_umask_mode_not_0600(tmp_path, umask):
    expected = 0o666 & ~umask  # what open(path, "w") gives a new file
    with open(tmp_path / "reference.txt", "w"):
        pass
    assert _mode(tmp_path / "reference.txt") == expected
    save_file({"w": np.ones(3, np.float32)}, tmp_path / "model.safetensors")
    write_json_atomic({"a": 1}, tmp_path / "config.json")
    assert _mode(tmp_path / "model.safetensors") == expected
    assert _mode(tmp_path / "config.json") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "reference.txt",
    ]


def test_rewriting_a_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "config.json"
    write_json_atomic({"a": 1}, path)
    os.chmod(path, 0o664)
    write_json_atomic({"a": 2}, path)
    assert _mode(path) == 0o664 and json.loads(path.read_text()) == {"a": 2}
    os.chmod(path, 0o600)
    write_json_atomic({"a": 3}, path)
    assert _mode(path) == 0o600


def test_write_errors_are_weights_errors_and_leave_nothing(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        save_file({"w": np.ones(2)}, tmp_path / "missing" / "m.safetensors")
    (tmp_path / "m.safetensors").mkdir()  # the target is a folder: the rename fails
    with pytest.raises(WeightsError, match=r"cannot write .*m\.safetensors"):
        save_file({"w": np.ones(2)}, tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    pending = AtomicFile(tmp_path / "x.json", error=WeightsError)
    assert pending.tmp.exists() and pending.tmp.name.startswith(".x.")
    pending.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_training_info_with_wrong_types_is_a_weights_error(tmp_path):
    path = tmp_path / "training.json"
    good = {
        "columns": ["a"],
        "history": [{"objective": "next_step", "epoch": [0], "val_loss": [0.5]}],
        "val_mse": 0.1,
        "anomaly_threshold": 3.0,
        "notes": {"anything": "goes"},
    }
    path.write_text(json.dumps(good))
    assert read_training_info(path) == good
    for bad, message in [
        ({"history": 5}, r"'history' must be a list of objects.*5"),
        ({"history": [3]}, "'history' must be a list of objects"),
        ({"history": [{"epoch": 1}]}, r"history\[0\]\['epoch'\] must be a list of numbers"),
        ({"columns": "ab"}, "'columns' must be a list of channel names"),
        ({"val_mse": "low"}, "'val_mse' must be a number"),
        ({"error_scale": [1, "x"]}, "'error_scale' must be a list of numbers"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(WeightsError, match=message):
            read_training_info(path)
