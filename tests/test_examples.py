"""Every script in examples/ runs, in its small mode, and shows what it claims."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from kizzasi_lite import Kizzasi

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SPEECH = [  # real speech recordings that may be installed; none is committed here
    os.environ.get("KIZZASI_TEST_WAV", ""),
    "/usr/share/sounds/alsa/Front_Center.wav",  # Debian alsa-utils: a voice saying "front center"
    "/usr/share/sounds/alsa/Rear_Center.wav",
]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quickstart(tmp_path):
    r = load("quickstart").main(small=True, out_dir=tmp_path)
    assert r["rollout"].shape == (24, 7) and r["reload_identical"]
    assert (tmp_path / "my_model" / "model.safetensors").is_file()
    assert np.isfinite(r["val_mse"]) and r["val_mse_repeat_last"] > 0


def test_industrial_anomaly(tmp_path):
    pytest.importorskip("matplotlib")
    r = load("industrial_anomaly").main(small=True, plot=str(tmp_path / "a.png"))
    assert sum(r["found"]) >= 6, r["found"]  # most injected faults are found
    assert r["false_alarms"] <= 0.05 * r["rows"]
    assert (tmp_path / "a.png").is_file()


def test_multistep_forecast(tmp_path):
    r = load("multistep_forecast").main(small=True, plot=str(tmp_path / "f.png"))
    assert r["direct"] < r["repeat-last"]  # the direct head beats repeating the last value
    assert all(np.isfinite(v) for v in r.values())


def test_audio_next_sample(tmp_path):
    pytest.importorskip("soundfile")
    wav = next((p for p in SPEECH if p and Path(p).is_file()), None)
    if wav is None:
        pytest.skip(
            "no speech recording here: install Debian's alsa-utils (it ships "
            "/usr/share/sounds/alsa/Front_Center.wav) or set KIZZASI_TEST_WAV to a WAV file"
        )
    r = load("audio_next_sample").main(wav, small=True, out=str(tmp_path / "p.wav"))
    assert np.isfinite(r["gain_db"]) and r["gain_db"] > r["repeat_last_db"] - 1.0
    assert (tmp_path / "p.wav").is_file()


def test_robotics_guardrails(tmp_path):
    if not hasattr(Kizzasi, "set_guardrails"):
        pytest.skip("Kizzasi.set_guardrails is not in this build yet")
    mod = load("robotics_guardrails")
    r = mod.main(small=True)
    lo, hi = mod.LIMITS[:, 0], mod.LIMITS[:, 1]
    assert np.all(r["guarded"] >= lo - 1e-9) and np.all(r["guarded"] <= hi + 1e-9)
    assert r["max_step"] <= mod.MAX_SPEED * (1 + 1e-9)
    assert r["raw_outside"] > 0 and r["moved"] > 0  # the limits did have work to do


def test_ett_benchmark_small(tmp_path):
    out = tmp_path / "ett.json"
    r = load("ett_benchmark").main(["--small", "--quiet", "--json", str(out)])
    row = r["rows"][0]
    assert out.is_file() and row["horizon"] == 24
    # the model starts at the least-squares highway, so even 3 steps keep it near the baseline
    assert row["kizzasi"][0] < 0.5 * row["repeat_last"][0]
    assert row["linear"][0] < row["repeat_last"][0]
