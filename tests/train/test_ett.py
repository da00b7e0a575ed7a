"""A small version of the ETT benchmark: trained models beat repeat-last-value on held-out ETTh1."""

import numpy as np

from kizzasi_lite import Kizzasi, KizzasiConfig
from kizzasi_lite.data import ett_splits, load_ett
from kizzasi_lite.train.fit import forecast_mse


def test_next_step_model_beats_repeat_last_on_held_out_ett():
    data, _ = load_ett("ETTh1")
    s = ett_splits(data, "ETTh1", lookback=96)
    k = Kizzasi(
        KizzasiConfig(model_type="mamba2", input_dim=7, hidden_dim=32, num_layers=1, seed=0)
    )
    k.fit(
        s["train"], val_series=s["val"], epochs=5, batch_size=8, window=64,
        lr=5e-3, verbose=False, max_steps_per_epoch=60,
    )  # fmt: skip
    test = s["test"]
    pred = k.forward(test[:-1])
    mse_model = float(np.mean((pred - test[1:]) ** 2))
    mse_repeat = float(np.mean((test[:-1] - test[1:]) ** 2))
    assert mse_model < 0.9 * mse_repeat, (mse_model, mse_repeat)


def test_forecast_head_beats_repeat_last_on_held_out_ett():
    data, _ = load_ett("ETTh1")
    s = ett_splits(data, "ETTh1", lookback=96)
    k = Kizzasi(
        KizzasiConfig(
            model_type="mamba2", input_dim=1, hidden_dim=16, num_layers=1, forecast_horizon=24,
            revin=True, seed=0,
        )
    )  # fmt: skip
    channels = lambda z: [z[:, c : c + 1] for c in range(z.shape[1])]  # noqa: E731
    k.fit(
        channels(s["train"]), val_series=channels(s["val"][:600]), objective="forecast",
        epochs=2, batch_size=64, stride=4, verbose=False, max_steps_per_epoch=40,
    )  # fmt: skip
    test = channels(s["test"])
    ours = forecast_mse(k, test, stride=8)
    repeat = []
    for z in test:
        for t in range(0, len(z) - 96 - 24 + 1, 8):
            repeat.append(np.mean((z[t + 96 : t + 120] - z[t + 95]) ** 2))
    assert ours < 0.9 * float(np.mean(repeat)), (ours, float(np.mean(repeat)))
