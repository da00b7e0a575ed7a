"""Synthetic physics any reader can check: every architecture learns a damped oscillator and a
noisy multi-sine to a one-step error near the noise floor (in standardized units).

- Damped oscillator driven by white noise (the exact discretisation is an AR(2) process):
  x_t = 2 r cos(theta) x_{t-1} - r^2 x_{t-2} + sigma e_t. The best possible one-step error is the
  innovation variance sigma^2.
- Sum of three sines plus observation noise of standard deviation 0.05: the floor is the noise
  variance (the clean signal is predictable).
"""

import numpy as np
import pytest

from kizzasi_lite import Kizzasi, KizzasiConfig, ModelType

T, SPLIT = 4000, 3200


def oscillator(seed=0):
    rng = np.random.default_rng(seed)
    r, theta, sigma = 0.98, 0.25, 0.1
    x, e = np.zeros(T), rng.normal(size=T) * sigma
    for t in range(2, T):
        x[t] = 2 * r * np.cos(theta) * x[t - 1] - r * r * x[t - 2] + e[t]
    return x[:, None], sigma**2 / x[:SPLIT].var()


def multisine(seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    clean = np.sin(0.05 * t) + 0.6 * np.sin(0.13 * t + 1) + 0.3 * np.sin(0.31 * t + 2)
    x = clean + 0.05 * rng.normal(size=T)
    return x[:, None], 0.05**2 / x[:SPLIT].var()


@pytest.mark.parametrize("signal", [oscillator, multisine], ids=["oscillator", "multisine"])
@pytest.mark.parametrize("mt", list(ModelType))
def test_learns_to_near_the_noise_floor(mt, signal):
    x, floor = signal()
    k = Kizzasi(
        KizzasiConfig(
            model_type=mt, input_dim=1, hidden_dim=32, state_dim=16, num_layers=1, head_dim=16,
            context_window=64, seed=0,
        )
    )  # fmt: skip
    k.fit(x, epochs=30, batch_size=4, window=128, lr=1e-2, patience=30, verbose=False)
    ratio = k.info["val_mse"] / floor
    repeat = k.info["val_mse_repeat_last"] / floor
    print(
        f"{mt.value} {signal.__name__}: error / noise floor = {ratio:.2f} (repeat-last {repeat:.1f})"
    )
    # measured at this budget (30 epochs of 128-step windows, 4-17 s each): 1.01-1.76 on the
    # oscillator, 2.04-2.82 on the multi-sine, where repeat-last sits at 11 and 5.3 and a
    # least-squares AR(32) predictor at 0.98 and 1.98 (the multi-sine's floor needs ~100 samples
    # of memory); longer training keeps closing the gap
    assert ratio < (2.0 if signal is oscillator else 3.2), ratio
    assert ratio < 0.75 * repeat, (ratio, repeat)
