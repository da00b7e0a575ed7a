"""Every file format through one interface: read whole, stream row by row, write atomically."""

from __future__ import annotations

import io
import json
import os
import stat

import numpy as np
import pytest

from kizzasi_lite.errors import InputError, KizzasiError
from kizzasi_lite.io import (
    atomic_write,
    open_sink,
    open_source,
    parse_location,
    read_data,
    write_table,
)
from kizzasi_lite.io.csv import read_csv

NAMES = ["a", "b", "c"]


@pytest.fixture
def data():
    return np.random.default_rng(0).uniform(-0.9, 0.9, size=(37, 3))  # (T, C)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


SPECS = [
    ("x.csv", NAMES, 0.0),
    ("x.npy", ["ch0", "ch1", "ch2"], 0.0),
    ("x.h5:group/signal", NAMES, 0.0),
    ("x.jsonl", NAMES, 0.0),
    ("x.wav", ["ch0", "ch1", "ch2"], 1e-7),  # 32-bit float samples
    ("x.flac", ["ch0", "ch1", "ch2"], 2e-7),  # 24-bit PCM
]


@pytest.mark.parametrize(("name", "names", "tol"), SPECS)
def test_write_read_stream_round_trip(tmp_path, data, name, names, tol):
    if name.endswith((".wav", ".flac")):
        pytest.importorskip("soundfile")
    if ".h5" in name:
        pytest.importorskip("h5py")
    spec = str(tmp_path / name)
    write_table(spec, data, NAMES, samplerate=8000)
    sig = read_data(spec)
    assert sig.names == names
    np.testing.assert_allclose(sig.data, data, atol=tol, rtol=0)
    with open_source(spec) as src:
        rows = list(src)
    assert all(r.shape == (3,) and r.dtype == np.float64 for r in rows)
    np.testing.assert_array_equal(np.stack(rows), sig.data)
    if name.endswith((".wav", ".flac")) or ".h5" in name:
        assert sig.samplerate == 8000
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["x.csv", "x.npy", "x.jsonl", "x.h5:d"])
def test_columns_pick_by_name_or_position(tmp_path, data, name):
    if ".h5" in name:
        pytest.importorskip("h5py")
    spec = str(tmp_path / name)
    write_table(spec, data, NAMES)
    names = read_data(spec).names
    sig = read_data(spec, [names[2], "0"])
    assert sig.names == [names[2], names[0]]
    np.testing.assert_array_equal(sig.data, data[:, [2, 0]])
    with open_source(spec, [names[1]]) as src:
        assert src.names == [names[1]]
        np.testing.assert_array_equal(np.stack(list(src)), data[:, [1]])
    with pytest.raises(InputError, match="no column 'zz'"):
        read_data(spec, ["zz"])


def test_csv_time_column_is_detected_and_skipped(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("date,x,y\n2020-01-01 00:00,1,2\n2020-01-01 01:00,3,4\n\n")
    data, names = read_csv(p)
    assert names == ["x", "y"] and data.tolist() == [[1, 2], [3, 4]]
    p.write_text("time,x\n0.0,5\n0.5,6\n")  # numeric, but named like a time column
    assert read_data(p).names == ["x"]
    p.write_text("x,y\n1,2\n3,4\n")  # no time column
    assert read_data(p).names == ["x", "y"]
    with open_source(p) as src:
        assert [r.tolist() for r in src] == [[1, 2], [3, 4]]


def test_csv_errors_name_file_line_and_expectation(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("x,y\n1,2\n3\n")
    with pytest.raises(InputError, match=r"bad\.csv, line 3: expected 2 fields"):
        read_data(p)
    p.write_text("x,y\n1,2\n3,oops\n")
    with pytest.raises(InputError, match=r"bad\.csv, line 3: expected numbers"):
        read_data(p)
    with open_source(p) as src, pytest.raises(InputError, match="line 3"):
        list(src)
    p.write_text("x,y\n1,nan\n")
    with pytest.raises(InputError, match="line 2: values must be finite"):
        read_data(p)
    p.write_text("x,y\n")
    with pytest.raises(InputError, match="at least one data row"):
        read_data(p)
    with pytest.raises(InputError, match="missing.csv"):
        read_data(tmp_path / "missing.csv")


def test_hdf5_errors_name_the_dataset(tmp_path):
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "f.h5"
    with h5py.File(p, "w") as f:
        f["a/b"] = np.zeros((4, 2))
        f["c"] = np.zeros((2, 2, 2))
        f["s"] = np.array([b"x", b"y"])
    with pytest.raises(InputError, match=r"f\.h5: no dataset 'nope'.*a/b"):
        read_data(f"{p}:nope")
    with pytest.raises(InputError, match=r"f\.h5:c: expected a numeric dataset of shape \(T,\)"):
        read_data(f"{p}:c")
    with pytest.raises(InputError, match=r"f\.h5:s: expected a numeric"):
        read_data(f"{p}:s")
    with pytest.raises(InputError, match="expected a dataset path after ':'"):
        read_data(p)
    assert read_data(f"{p}:a/b").data.shape == (4, 2)
    assert read_data(f"{p}:/a/b").names == ["ch0", "ch1"]


def test_npy_refuses_pickles_and_bad_shapes(tmp_path):
    p = tmp_path / "o.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"o\.npy"):
        read_data(p)
    np.save(p, np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match=r"expected a numeric array of shape \(T,\)"):
        read_data(p)
    np.save(p, np.arange(5))
    assert read_data(p).data.shape == (5, 1)


def test_jsonl_on_stdin_accepts_arrays_numbers_and_objects():
    text = '[1, 2]\n\n{"x": [3, 4]}\n[5, 6]\n'
    with open_source("-", stdin=io.StringIO(text)) as src:
        assert src.names == ["ch0", "ch1"]
        assert [r.tolist() for r in src] == [[1, 2], [3, 4], [5, 6]]
    sig = read_data("-", stdin=io.StringIO('{"t": 1.5, "p": 2}\n{"t": 2.5, "p": 3}\n'))
    assert sig.names == ["t", "p"] and sig.data.tolist() == [[1.5, 2], [2.5, 3]]
    assert read_data("-", stdin=io.StringIO("7\n8\n")).data.tolist() == [[7], [8]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[1, 2]\n[1, "a"]\n', "line 2: expected numbers"),
        ("[1, 2]\n[1]\n", "line 2: expected 2 values, got 1"),
        ('{"a": 1}\n{"b": 1}\n', r"line 2: expected the keys \['a'\]"),
        ("[1, 2]\n{oops\n", "line 2: expected JSON"),
        ("[1, NaN]\n", "line 1: values must be finite"),
        ("\n\n", "expected at least one JSON line"),
    ],
)
def test_jsonl_errors_name_the_line(text, message):
    with pytest.raises(InputError, match=message):
        read_data("-", stdin=io.StringIO(text))


def test_jsonl_sink_writes_one_flushed_object_per_row():
    out = io.StringIO()
    with open_sink("-", ["step", "y"], stdout=out) as sink:
        sink.write([0, 1.5])
        assert out.getvalue() == '{"step": 0, "y": 1.5}\n'  # visible before the sink closes
        sink.write([1, 2.25])
    assert [json.loads(line) for line in out.getvalue().splitlines()][1] == {"step": 1, "y": 2.25}


@pytest.mark.parametrize("name", ["o.csv", "o.npy", "o.jsonl", "o.wav", "o.h5"])
def test_failed_write_leaves_no_file(tmp_path, name):
    if name.endswith(".wav"):
        pytest.importorskip("soundfile")
    if name.endswith(".h5"):
        pytest.importorskip("h5py")
    target = tmp_path / name
    with pytest.raises(RuntimeError), open_sink(target, ["a", "b"]) as sink:
        sink.write([0.1, 0.2])
        raise RuntimeError("the producer failed")
    assert not target.exists() and _leftovers(tmp_path) == []
    # an old file is kept as it was
    write_table(target, np.ones((2, 2)) * 0.5, ["a", "b"])
    before = target.read_bytes()
    with pytest.raises(InputError), open_sink(target, ["a", "b"]) as sink:
        sink.write([0.1])  # wrong row length
    assert target.read_bytes() == before and _leftovers(tmp_path) == []


def test_keyboard_interrupt_keeps_what_was_written(tmp_path):
    target = tmp_path / "o.csv"
    with pytest.raises(KeyboardInterrupt), open_sink(target, ["a"]) as sink:
        sink.write([1.0])
        raise KeyboardInterrupt
    assert target.read_text().splitlines() == ["a", "1"]


def test_atomic_write_and_locations(tmp_path):
    with pytest.raises(ValueError), atomic_write(tmp_path / "p.png") as tmp:
        tmp.write_bytes(b"half")
        raise ValueError
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="does not exist"):
        write_table(tmp_path / "no" / "x.csv", np.zeros((1, 1)), ["a"])
    loc = parse_location("run.hdf5:/grp/x")
    assert (loc.kind, loc.dataset, str(loc.path)) == ("hdf5", "grp/x", "run.hdf5")
    assert parse_location("-").kind == "jsonl" and parse_location("A.WAV").kind == "audio"
    with pytest.raises(InputError, match=r"suffix '\.txt'.*\.csv"):
        parse_location("data.txt")
    with pytest.raises(KizzasiError):
        parse_location("noext")


@pytest.mark.parametrize(
    ("text", "names", "rows"),
    [
        ("\ufefftime,temp\n0,1.5\n1,2.5\n", ["temp"], [[1.5], [2.5]]),
        ("\ufeffa,b\n1,2\n3,4\n", ["a", "b"], [[1, 2], [3, 4]]),
    ],
)
def test_csv_byte_order_mark_is_not_part_of_the_first_name(tmp_path, text, names, rows):
    p = tmp_path / "bom.csv"
    p.write_bytes(text.encode("utf-8"))
    sig = read_data(p)
    assert sig.names == names and sig.data.tolist() == rows
    with open_source(p) as src:
        assert src.names == names and [r.tolist() for r in src] == rows


def test_csv_empty_first_cell_is_a_missing_value_not_a_time_column(tmp_path):
    p = tmp_path / "gap.csv"
    p.write_text("a,b\n,2\n1,3\n")
    message = r"gap\.csv, line 2: missing value in column 'a'"
    with pytest.raises(InputError, match=message):
        read_data(p)
    with open_source(p) as src:
        assert src.names == ["a", "b"]  # channel a is kept
        with pytest.raises(InputError, match=message):
            list(src)
    p.write_text("a,b\n1,2\n3, \n")  # later rows: the same error, naming the column
    with pytest.raises(InputError, match=r"line 3: missing value in column 'b'"):
        read_data(p)
    p.write_text("time,b\n,2\n,3\n")  # an empty time cell is fine: the column is skipped
    assert read_data(p).data.tolist() == [[2], [3]]


def _spy_on_open(monkeypatch):
    from pathlib import Path

    opened, real_open = [], Path.open

    def spy(self, *args, **kwargs):
        f = real_open(self, *args, **kwargs)
        opened.append(f)
        return f

    monkeypatch.setattr(Path, "open", spy)
    return opened


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("big.jsonl", b"[1" + b"0" * 400 + b", 2]\n", r"big\.jsonl, line 1: .*too large"),
        ("big.jsonl", b"[1, 2]\n[-1" + b"0" * 400 + b", 2]\n", r"line 2: .*too large"),
        ("huge.jsonl", b"[1" + b"0" * 5000 + b"]\n", r"huge\.jsonl, line 1: expected JSON"),
        ("deep.jsonl", b"[" * 100_000 + b"\n", r"deep\.jsonl, line 1: expected JSON"),
        ("bad.jsonl", b"{oops\n[1]\n", r"bad\.jsonl, line 1: expected JSON"),
        ("bin.jsonl", b"[1]\n\xff\xfe\n", r"cannot read .*bin\.jsonl"),
        ("empty.jsonl", b"\n\n", "expected at least one JSON line"),
        ("bin.csv", b"\xff\xfe,x\n1,2\n", r"cannot read CSV .*bin\.csv"),
    ],
)
def test_read_errors_close_the_file(tmp_path, monkeypatch, name, content, message):
    p = tmp_path / name
    p.write_bytes(content)
    opened = _spy_on_open(monkeypatch)
    with pytest.raises(InputError, match=message):
        read_data(p)
    with pytest.raises(InputError, match=message):
        with open_source(p) as src:
            list(src)
    assert len(opened) == 2 and all(f.closed for f in opened)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
@pytest.mark.parametrize("name", ["o.csv", "o.npy", "o.jsonl", "o.wav", "o.h5", "o.png"])
def test_written_files_get_the_umask_mode_not_0600(tmp_path, name):
    if name.endswith(".wav"):
        pytest.importorskip("soundfile")
    if name.endswith(".h5"):
        pytest.importorskip("h5py")
    old = os.umask(0o022)
    try:
        if name.endswith(".png"):
            with atomic_write(tmp_path / name) as tmp:
                tmp.write_bytes(b"png")
        else:
            write_table(tmp_path / name, np.zeros((2, 2)), ["a", "b"])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert _leftovers(tmp_path) == []


def test_npy_empty_files_and_npz_archives_are_input_errors(tmp_path):
    p = tmp_path / "e.npy"
    p.write_bytes(b"")  # EOFError from np.load
    with pytest.raises(InputError, match=r"cannot read NPY file .*e\.npy"):
        read_data(p)
    np.savez(tmp_path / "z.npz", a=np.ones(3))
    os.replace(tmp_path / "z.npz", p)  # AttributeError: an NpzFile has no ndim
    with pytest.raises(InputError, match="NPZ archive"):
        open_source(p)


def test_hdf5_attributes_of_the_wrong_kind(tmp_path):
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "f.h5"
    with h5py.File(p, "w") as f:
        for name, rate in (("nan", np.nan), ("text", "fast"), ("many", [1, 2]), ("neg", -5.0)):
            f[name] = np.zeros((3, 2))
            f[name].attrs["samplerate"] = rate  # crashed later (int(nan)) or on float()
        f["cols"] = np.zeros((3, 2))
        f["cols"].attrs["columns"] = 5  # TypeError: len() of a scalar
    for name in ("nan", "text", "many", "neg"):
        with pytest.raises(InputError, match=rf"f\.h5:{name}: the 'samplerate' attribute"):
            read_data(f"{p}:{name}")
        with pytest.raises(InputError, match="samplerate"):
            open_source(f"{p}:{name}")
    assert read_data(f"{p}:cols").names == ["ch0", "ch1"]


@pytest.mark.parametrize("name", ["o.csv", "o.npy", "o.jsonl", "o.wav", "o.flac", "o.h5"])
def test_sinks_take_rows_of_finite_numbers_only(tmp_path, name):
    if name.endswith((".wav", ".flac")):
        pytest.importorskip("soundfile")
    if name.endswith(".h5"):
        pytest.importorskip("h5py")
    target = tmp_path / name
    # TypeError from len(), ValueError / TypeError at the flush, NaN written (AssertionError in
    # FLAC), a number past float64
    rows = [5, None, [1 + 1j, 1.0], [[1.0], 1.0], [np.nan, 1.0], [2**1100, 1], [None, 1.0]]
    for row in rows + ([] if name.endswith(".csv") else [["zz", 1.0]]):  # CSV: text is a cell
        with pytest.raises(InputError, match="expected a row|finite real number"):
            with open_sink(target, ["a", "b"]) as sink:
                sink.write(row)
        assert not target.exists() and _leftovers(tmp_path) == []
    for names, rate in ((["a", 1], None), ([], None), ("ab", None), (["a"], float("nan"))):
        with pytest.raises(InputError, match="names|samplerate"):
            open_sink(target, names, samplerate=rate)
    with pytest.raises(InputError, match=r"shape \(T,\) or \(T, channels\)"):
        write_table(target, np.array(5.0), ["a"])  # TypeError: iteration over a 0-d array
    write_table(target, np.array([[1, 0.5], [True, np.float32(2)]], dtype=object), ["a", "b"])
    assert read_data(target).data.shape == (2, 2)
