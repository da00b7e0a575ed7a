"""Robotics: predict a robot arm's joint angles one control tick ahead, inside hard limits.

A Mamba model learns smooth 3-joint trajectories (sums of sinusoids, 100 Hz). At run time the
arm is driven harder than anything in training, so the raw predictions overshoot. Guardrails
hold every prediction inside the joint limits and below the per-tick speed limit, by projecting
it onto the set of allowed values (the closest allowed prediction, not a clamp that could break
another limit). Every prediction is checked.

    python examples/robotics_guardrails.py [--small] [--plot arm.png]
"""

from __future__ import annotations

import argparse

import numpy as np

from kizzasi_lite import Kizzasi, robotics_preset

JOINTS = ["shoulder", "elbow", "wrist"]
LIMITS = np.array([[-1.0, 1.0], [-0.2, 1.6], [-1.4, 1.4]])  # rad, per joint (lo, hi)
MAX_SPEED = 0.03  # rad per tick (3 rad/s at 100 Hz)


def trajectories(n: int, steps: int, gain: float, seed: int) -> np.ndarray:
    """``n`` smooth joint trajectories (n, steps, 3) at ``gain`` times the nominal amplitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) / 100.0  # seconds
    mid, half = LIMITS.mean(axis=1), (LIMITS[:, 1] - LIMITS[:, 0]) / 2
    out = []
    for _ in range(n):
        freq = rng.uniform(0.2, 0.8, size=(2, 3))  # Hz
        phase = rng.uniform(0, 2 * np.pi, size=(2, 3))
        wave = 0.6 * np.sin(2 * np.pi * freq[0] * t[:, None] + phase[0])
        wave += 0.25 * np.sin(2 * np.pi * freq[1] * t[:, None] + phase[1])
        out.append(mid + gain * half * wave)  # (steps, 3)
    return np.stack(out)


def guardrails():
    """Joint limits (a range per joint) and a speed limit (a rate limit on every joint)."""
    from kizzasi_lite.logic import GuardrailSet, Range, RateLimit

    g = GuardrailSet()
    for j, (lo, hi) in enumerate(LIMITS):
        g.add(Range(lo, hi, channel=j))
    g.add(RateLimit(MAX_SPEED))
    return g


def main(small: bool = False, plot: str | None = None) -> dict:
    train = trajectories(8 if small else 32, 400 if small else 1000, gain=0.9, seed=0)
    config = robotics_preset(3, hidden_dim=16 if small else 64, num_layers=1 if small else 2)
    model = Kizzasi(config)
    model.fit(list(train), epochs=3 if small else 10, window=64, batch_size=8,
              time_budget=3 if small else 60, verbose=not small)  # fmt: skip

    drive = trajectories(1, 300 if small else 1000, gain=1.35, seed=7)[0]  # harder than training
    model.reset()
    raw = model.forward(drive)  # (T, 3) what the network alone predicts
    model.set_guardrails(guardrails())
    model.reset()
    guarded = np.stack([model.step(x) for x in drive])  # (T, 3) one control tick at a time

    tol = 1e-9 * (1 + np.abs(LIMITS).max())
    outside = int(np.sum((raw < LIMITS[:, 0]) | (raw > LIMITS[:, 1])))
    assert np.all(guarded >= LIMITS[:, 0] - tol) and np.all(guarded <= LIMITS[:, 1] + tol)
    speed = np.abs(np.diff(guarded, axis=0)).max()
    assert speed <= MAX_SPEED * (1 + 1e-9)
    moved = int(np.sum(np.any(np.abs(guarded - raw) > 1e-9, axis=1)))
    print(f"raw predictions outside the joint limits: {outside} of {raw.size} values; guarded: 0")
    print(f"largest guarded step {speed:.4f} rad/tick (limit {MAX_SPEED}); guardrails moved "
          f"{moved} of {len(drive)} predictions")  # fmt: skip
    if plot:
        from kizzasi_lite.io.plot import plot_guarded

        plot_guarded(plot, drive, raw, guarded, names=JOINTS, lower=LIMITS[:, 0],
                     upper=LIMITS[:, 1], title="Joint predictions under guardrails")  # fmt: skip
        print(f"wrote {plot}")
    return {"raw_outside": outside, "max_step": float(speed), "moved": moved,
            "guarded": guarded, "raw": raw}  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--small", action="store_true", help="small sizes, a few seconds")
    p.add_argument("--plot", help="write a PNG of the joints, raw and guarded predictions")
    a = p.parse_args()
    main(a.small, a.plot)
