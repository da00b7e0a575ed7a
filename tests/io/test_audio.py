"""Audio files: missing paths and non-finite samples are clear ``InputError``s."""

import numpy as np
import pytest

from kizzasi_lite.errors import InputError
from kizzasi_lite.io import open_source, read_data

sf = pytest.importorskip("soundfile")


def test_missing_audio_file_says_no_such_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(InputError, match=r"no such file: .*missing\.wav"):
        read_data(missing)
    with pytest.raises(InputError, match=r"no such file: .*missing\.wav"):
        open_source(missing)
    folder = tmp_path / "dir.wav"
    folder.mkdir()
    with pytest.raises(InputError, match=r"dir\.wav: expected a file, got a folder"):
        read_data(folder)


@pytest.mark.parametrize(("frame", "value"), [(3, np.nan), (5000, np.inf), (0, -np.inf)])
def test_non_finite_samples_are_rejected_naming_the_file_and_frame(tmp_path, frame, value):
    data = np.zeros((6000, 2))  # (T, C): more than one streaming block
    data[frame, 1] = value
    p = tmp_path / "x.wav"
    sf.write(p, data, 8000, subtype="FLOAT")
    message = rf"x\.wav, frame {frame} \(channel 1\): samples must be finite"
    with pytest.raises(InputError, match=message):
        read_data(p)
    with open_source(p) as src, pytest.raises(InputError, match=message):
        list(src)
