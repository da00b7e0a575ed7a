"""Audio next-sample prediction on a WAV file: learn a recording, predict each sample from the past.

Speech is predictable a sample ahead (that is what linear predictive coding exploits); here a
Mamba2 model learns it from the first part of the recording and predicts the rest one sample at a
time. The score is the prediction gain: the signal's power over the prediction error's, in dB,
beside repeating the last sample.

    python examples/audio_next_sample.py [recording.wav] [--small] [--out predicted.wav]

Without a path it uses Debian's alsa-utils recording /usr/share/sounds/alsa/Front_Center.wav
("front center", a human voice) when that is installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kizzasi_lite import Kizzasi, audio_preset
from kizzasi_lite.io import read_data, write_table

DEFAULT_WAV = Path("/usr/share/sounds/alsa/Front_Center.wav")


def to_rate(x: np.ndarray, rate: float, target: float) -> tuple[np.ndarray, float]:
    """Average ``x`` (T,) down by the whole factor nearest ``rate / target`` (a crude low-pass)."""
    k = max(1, int(round(rate / target)))
    n = len(x) // k * k
    return x[:n].reshape(-1, k).mean(axis=1), rate / k


def gain_db(x: np.ndarray, err: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x * x) / max(np.mean(err * err), 1e-20)))


def main(wav: str | Path | None = None, small: bool = False, out: str | None = None) -> dict:
    path = Path(wav) if wav else DEFAULT_WAV
    sig = read_data(path)  # (T, channels), float in [-1, 1]
    x, rate = to_rate(sig.data.mean(axis=1), sig.samplerate, 8000 if small else 16000)
    active = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    x = x[active[0] : active[-1] + 1]  # trim the silence around the speech
    split = int(0.7 * len(x))
    print(f"{path.name}: {len(sig.data)} samples at {sig.samplerate:.0f} Hz -> {len(x)} at "
          f"{rate:.0f} Hz; training on the first {split}")  # fmt: skip

    config = audio_preset(int(rate), hidden_dim=16 if small else 32, state_dim=16,
                          num_layers=1 if small else 2, head_dim=16, chunk_size=128)  # fmt: skip
    model = Kizzasi(config)
    model.fit(x[:split, None], epochs=30, window=128, windows_per_stream=1, batch_size=8,
              lr=1e-2 if small else 3e-3, time_budget=4 if small else 60, verbose=not small)  # fmt: skip

    # the held-out part, one sample at a time, carrying the state over from the training part
    model.reset()
    model.forward(x[:split, None])  # (same as stepping through it, faster)
    test = x[split:]
    pred = np.array([model.step(v[None])[0] for v in test[:-1]])  # (T-1,) next-sample predictions
    target = test[1:]
    g_model = gain_db(target, target - pred)
    g_last = gain_db(target, target - test[:-1])
    print(f"prediction gain on the held-out {len(test)} samples: model {g_model:.1f} dB, "
          f"repeat-last {g_last:.1f} dB")  # fmt: skip
    if out:
        write_table(out, pred[:, None], ["prediction"], samplerate=rate)
        print(f"wrote {out}")
    return {"gain_db": g_model, "repeat_last_db": g_last, "samples": len(test), "rate": rate}


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("wav", nargs="?", help=f"a WAV/FLAC recording (default: {DEFAULT_WAV})")
    p.add_argument("--small", action="store_true", help="small sizes, a few seconds")
    p.add_argument("--out", help="write the predicted signal here (WAV)")
    a = p.parse_args()
    if a.wav is None and not DEFAULT_WAV.is_file():
        p.error(
            f"give a WAV/FLAC recording: the default {DEFAULT_WAV} (Debian's alsa-utils) is not "
            "installed here"
        )
    main(a.wav, a.small, a.out)
