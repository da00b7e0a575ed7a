"""The ``kizzasi`` command: every subcommand, exit codes, one-line errors, clean stream endings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kizzasi_lite import Kizzasi
from kizzasi_lite.cli import main
from kizzasi_lite.io import read_data

pytest.importorskip("matplotlib")

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _signal(n: int = 400, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return np.stack([np.sin(0.2 * t), 0.5 * np.cos(0.05 * t) + 2.0], axis=1) + 0.02 * rng.normal(
        size=(n, 2)
    )  # (T, 2)


def _write_csv(path: Path, data: np.ndarray) -> Path:
    lines = ["time,temp,load"] + [f"{i * 0.5},{a},{b}" for i, (a, b) in enumerate(data.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model fitted through the CLI on a two-channel CSV with a time column."""
    folder = tmp_path_factory.mktemp("cli")
    csv = _write_csv(folder / "train.csv", _signal())
    model = folder / "model"
    argv = ["fit", str(csv), "--hidden-dim", "8", "--state-dim", "4", "--layers", "1",
            "--head-dim", "8", "--head", "gaussian", "--epochs", "2", "--time-budget", "3",
            "--batch-size", "8", "--window", "32", "--quiet", "--out", str(model)]  # fmt: skip
    assert main(argv) == 0
    return folder, csv, model, argv


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_prints_metrics_beside_the_baseline_and_saves(trained, capsys):
    folder, csv, model, argv = trained
    capsys.readouterr()
    code, out, err = run(argv, capsys)  # fitted again, into the same folder
    assert code == 0, err
    assert "repeat-last" in out and "next-step MSE" in out and "anomaly threshold" in out
    assert {"model.safetensors", "config.json", "training.json"} <= {
        p.name for p in model.iterdir()
    }
    k = Kizzasi.from_pretrained(model)
    assert k.config.input_dim == 2 and k.info["columns"] == ["temp", "load"]
    assert k.info["val_mse_repeat_last"] > 0


def test_info_shows_what_the_model_is(trained, capsys):
    _, _, model, _ = trained
    code, out, _ = run(["info", model], capsys)
    assert code == 0
    for word in ("architecture: mamba2", "parameters:", "state per stream:", "normalisation",
                 "temp", "guardrails:", "training history", "next_step"):  # fmt: skip
        assert word in out, word
    code, out, _ = run(["info", model, "--json"], capsys)
    d = json.loads(out)
    assert d["parameters"] == Kizzasi.from_pretrained(model).num_params
    assert d["state_bytes_per_stream"] > 0 and set(d["normalisation"]) == {"temp", "load"}


def test_forecast_writes_csv_and_plot(trained, capsys):
    folder, csv, model, _ = trained
    out_csv, png = folder / "f.csv", folder / "f.png"
    code, out, err = run(["forecast", model, csv, "--horizon", 12, "--samples", 8,
                          "--out", out_csv, "--plot", png], capsys)  # fmt: skip
    assert code == 0, err
    sig = read_data(out_csv)  # the step column is read as time and skipped
    assert sig.names == ["temp", "load", "temp_q05", "load_q05", "temp_q95", "load_q95"]
    assert sig.data.shape == (12, 6)
    assert np.all(sig.data[:, 2:4] <= sig.data[:, 4:6])
    assert out_csv.read_text().splitlines()[1].startswith("400,")
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run(["forecast", model, csv, "-n", 3], capsys)  # printed when no --out
    assert code == 0 and len(out.strip().splitlines()) == 1 + 1 + 3


def test_detect_writes_scores(trained, capsys):
    folder, csv, model, _ = trained
    out_csv, png = folder / "s.csv", folder / "a.png"
    code, out, err = run(["detect", model, csv, "--out", out_csv, "--plot", png,
                          "--plot-last", 100], capsys)  # fmt: skip
    assert code == 0, err
    sig = read_data(out_csv)
    assert sig.names[:3] == ["score", "nll", "anomaly"] and len(sig.data) == 400
    assert "steps score above" in out and png.is_file()
    code, out, _ = run(["detect", model, csv, "--threshold", 1e9], capsys)
    assert code == 0 and out.startswith("0 of 400 steps")


def test_stream_csv_to_csv_equals_the_sequence_path(trained, capsys):
    folder, csv, model, _ = trained
    out_csv = folder / "stream.csv"
    code, _, err = run(["stream", model, "--source", csv, "--sink", out_csv], capsys)
    assert code == 0 and "end of input after 400 samples" in err
    got = read_data(out_csv)  # step is skipped as the time column
    assert got.names == ["pred_temp", "pred_load", "score", "anomaly"]
    expected = Kizzasi.from_pretrained(model).forward(_signal())
    np.testing.assert_allclose(got.data[:, :2], expected, rtol=1e-5, atol=1e-5)
    assert got.data[0, 2] == 0.0 and np.all(got.data[1:, 2] > 0)


def test_stream_to_audio_writes_predictions_only(trained, capsys):
    pytest.importorskip("soundfile")
    folder, csv, model, _ = trained
    code, _, err = run(["stream", model, "--source", csv, "--sink", folder / "p.wav",
                        "--limit", 50], capsys)  # fmt: skip
    assert code == 0, err
    sig = read_data(folder / "p.wav")
    assert sig.data.shape == (50, 2) and sig.samplerate == 16000


def test_stream_ctrl_c_keeps_what_was_written(trained, capsys, monkeypatch):
    folder, csv, model, _ = trained
    from kizzasi_lite import commands
    from kizzasi_lite.io import open_source as real_open

    def interrupted(*args, **kwargs):
        src = real_open(*args, **kwargs)
        rows = src._rows

        def three_then_ctrl_c():
            for i, r in enumerate(rows()):
                if i == 3:
                    raise KeyboardInterrupt
                yield r

        src._rows = three_then_ctrl_c
        return src

    monkeypatch.setattr(commands, "open_source", interrupted)
    out_csv = folder / "interrupted.csv"
    code, _, err = run(["stream", model, "--source", csv, "--sink", out_csv], capsys)
    assert code == 0 and "stopped by an interrupt after 3 samples" in err
    assert len(out_csv.read_text().splitlines()) == 1 + 3
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_tables_on_stdout_carry_no_messages(trained):
    folder, csv, model, _ = trained
    r = subprocess.run(
        [sys.executable, "-m", "kizzasi_lite", "forecast", str(model), str(csv), "-n", "3",
         "--out", "-"], capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]  # JSON lines, nothing else
    assert [row["step"] for row in rows] == [400, 401, 402]
    assert set(rows[0]) == {"step", "temp", "load"}
    assert "forecast: 3 steps" in r.stderr and "wrote" not in r.stderr + r.stdout


def test_stream_of_unnamed_channels_names_them_as_the_model_does(trained):
    _, _, model, _ = trained
    rows = "".join(json.dumps(x.tolist()) + "\n" for x in _signal(3))
    r = subprocess.run([sys.executable, "-m", "kizzasi_lite", "stream", str(model)], input=rows,
                       capture_output=True, text=True, env=ENV, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout.splitlines()[0])
    assert {"pred_temp", "pred_load"} <= set(first)


def test_a_bad_sample_ends_the_stream_keeping_the_rows_before_it(trained, tmp_path):
    _, _, model, _ = trained
    src, sink = tmp_path / "live.csv", tmp_path / "out.csv"
    rows = [f"{i},{a},{b}" for i, (a, b) in enumerate(_signal(6).tolist())]
    src.write_text("time,temp,load\n" + "\n".join(rows[:4] + ["4,1.0,abc"] + rows[5:]) + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "kizzasi_lite", "stream", str(model), "--source", str(src),
         "--sink", str(sink)], capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "line 6" in r.stderr and "kept the 4 rows" in r.stderr
    assert len(read_data(sink).data) == 4


def test_stream_stdin_to_stdout_and_sigint(trained):
    _, _, model, _ = trained
    cmd = [sys.executable, "-m", "kizzasi_lite", "stream", str(model)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
    try:
        lines = []
        for x in _signal(5):
            proc.stdin.write(json.dumps({"temp": x[0], "load": x[1]}) + "\n")
            proc.stdin.flush()
            lines.append(json.loads(proc.stdout.readline()))  # answered before the next sample
        assert [r["step"] for r in lines] == [0, 1, 2, 3, 4]
        assert set(lines[0]) == {"step", "pred_temp", "pred_load", "score", "anomaly"}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by an interrupt after 5 samples" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "{folder}/nope"], "no such model folder"),
        (["info", "{csv}"], "is a file, not a model folder"),
        (["fit", "{csv}", "--out", "{csv}"], "is a file; give a folder"),  # before training
        (["forecast", "{model}", "{folder}/missing.csv", "-n", "2"], "missing.csv"),
        (["forecast", "{model}", "{folder}/x.txt", "-n", "2"], "cannot tell the file type"),
        (["forecast", "{model}", "{csv}", "-n", "2", "--columns", "temp"], "expects 2"),
        (["forecast", "{model}", "{csv}", "-n", "2", "--method", "direct"], "--forecast-horizon"),
        (["detect", "{model}", "{folder}/one.csv"], "line 3: expected 3 fields"),
        (
            ["stream", "{model}", "--source", "{csv}", "--sink", "{folder}/no/out.csv"],
            "does not exist",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_1(trained, argv, message):
    folder, csv, model, _ = trained
    (folder / "one.csv").write_text("time,temp,load\n0,1,2\n1,2\n")
    argv = [a.format(folder=folder, model=model, csv=csv) for a in argv]
    r = subprocess.run([sys.executable, "-m", "kizzasi_lite", *argv], capture_output=True,
                       text=True, env=ENV, timeout=60)  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"kizzasi {argv[0]}: error:") and message in r.stderr


@pytest.mark.parametrize(
    "argv",
    [[], ["fit"], ["fit", "x.csv"], ["forecast", "m", "d.csv", "--horizon", "0"],
     ["detect", "m", "d.csv", "--threshold", "abc"], ["nope"], ["fit", "x.csv", "--out", "m",
     "--val-fraction", "1.5"]],
)  # fmt: skip
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: kizzasi" in capsys.readouterr().err


def test_help_has_examples(capsys):
    for argv in (["--help"], ["fit", "--help"], ["stream", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_console_script_and_module_agree():
    r = subprocess.run([sys.executable, "-m", "kizzasi_lite", "--version"], capture_output=True,
                       text=True, env=ENV, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("kizzasi_lite ")
    script = Path(sys.executable).with_name("kizzasi")
    if script.exists():
        r2 = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
        assert r2.stdout == r.stdout


def test_demo_quick_writes_the_report(tmp_path, capsys):
    t0 = time.perf_counter()
    code, out, err = run(["demo", "--quick", "--out", tmp_path / "report"], capsys)
    assert code == 0, err
    assert time.perf_counter() - t0 < 60
    report = tmp_path / "report"
    page = (report / "index.html").read_text()
    for png in ("training.png", "forecast.png", "anomalies.png", "stream.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG" and png in page
    assert "stage timings:" in out and f"report: {(report / 'index.html').resolve()}" in out
    assert (report / "model" / "model.safetensors").is_file()
    summary = json.loads((report / "summary.json").read_text())
    assert len(summary["timings_s"]) == 6


def _guardrails_json(path: Path) -> Path:
    from kizzasi_lite.logic import GuardrailSet, Range, RateLimit

    rails = GuardrailSet().add(Range(-0.5, 0.5, channel=0), name="temp_range")
    rails.add(RateLimit(0.05, channel=1), name="load_rate")
    path.write_text(json.dumps(rails.to_dict()))
    return path


def test_stream_with_guardrails_keeps_every_prediction_inside(trained, capsys):
    if not hasattr(Kizzasi, "set_guardrails"):
        pytest.skip("Kizzasi.set_guardrails is not in this build yet")
    folder, csv, model, _ = trained
    rails, out_csv = _guardrails_json(folder / "g.json"), folder / "guarded.csv"
    code, _, err = run(["stream", model, "--source", csv, "--sink", out_csv, "--guardrails", rails],
                       capsys)  # fmt: skip
    assert code == 0, err
    assert "guardrails moved" in err and "temp_range" in err
    got = read_data(out_csv)
    temp, load = got.data[:, 0], got.data[:, 1]
    assert np.all(np.abs(temp) <= 0.5 * (1 + 1e-9))
    assert np.all(np.abs(np.diff(load)) <= 0.05 * (1 + 1e-9))
    assert got.data[:, got.names.index("guarded")].sum() > 0


def test_fit_saves_guardrails_and_info_shows_them(trained, capsys, tmp_path):
    if not hasattr(Kizzasi, "set_guardrails"):
        pytest.skip("Kizzasi.set_guardrails is not in this build yet")
    _, csv, _, argv = trained
    rails = _guardrails_json(tmp_path / "g.json")
    out = tmp_path / "guarded_model"
    argv = [*argv[: argv.index("--out")], "--guardrails", rails, "--out", out]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert (out / "guardrails.json").is_file()
    code, text, _ = run(["info", out], capsys)
    assert code == 0 and "temp_range" in text and "load_rate" in text
    code, _, err = run(["stream", out, "--source", csv, "--sink", tmp_path / "o.csv"], capsys)
    assert code == 0 and "guardrails moved" in err  # the saved guardrails apply by default


def test_bad_guardrails_file_is_a_one_line_error(trained, capsys, tmp_path):
    _, csv, model, _ = trained
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    code, _, err = run(["stream", model, "--source", csv, "--sink", tmp_path / "o.csv",
                        "--guardrails", bad], capsys)  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1 and "bad.json" in err
    bad.write_text("{oops")
    code, _, err = run(["stream", model, "--source", csv, "--sink", tmp_path / "o.csv",
                        "--guardrails", bad], capsys)  # fmt: skip
    assert code == 1 and "bad.json, line 1: expected JSON" in err


def test_info_on_a_run_with_no_losses_and_a_model_too_large_are_one_line(trained, capsys, tmp_path):
    import shutil

    folder, csv, model, argv = trained
    copy = tmp_path / "m"
    shutil.copytree(model, copy)
    (copy / "training.json").write_text('{"history": [{"objective": "next_step"}]}')
    code, out, err = run(["info", copy], capsys)  # TypeError: None formatted with .4g
    assert code == 0 and "final train loss n/a" in out, err
    argv = [*argv[: argv.index("--out")], "--model", "transformer", "--context-window",
            "99999999999999", "--out", tmp_path / "big"]  # fmt: skip
    code, _, err = run(argv, capsys)  # MemoryError for the KV cache, with a traceback
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("kizzasi fit: error: out of memory")


def test_an_hdf5_samplerate_that_is_not_a_number_is_one_line(capsys, tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = _signal(100)
        f["x"].attrs["samplerate"] = np.nan  # ValueError: int(nan) in --preset audio
    code, _, err = run(["fit", f"{tmp_path / 'd.h5'}:x", "--preset", "audio", "--out",
                        tmp_path / "m"], capsys)  # fmt: skip
    assert code == 1 and "the 'samplerate' attribute must be" in err
