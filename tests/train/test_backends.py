"""Training on every backend: ``fit`` (next-step and forecast objectives) and ``update`` give, in
float64, the losses NumPy gives, for every architecture. The device backends' operators refuse an
autodiff tensor on their right, so this is where data that is not wrapped would fail."""

import numpy as np
import pytest

from kizzasi_lite import Kizzasi, KizzasiConfig, ModelType
from kizzasi_lite.backends import backend_name

SERIES = (np.sin(np.linspace(0.0, 30.0, 240))[:, None] * np.array([1.0, 2.0])).astype(np.float32)


def _trained(backend: str, mt: ModelType, objective: str) -> tuple[Kizzasi, dict]:
    extra = (
        {"forecast_horizon": 4, "forecast_lookback": 16}
        if objective == "forecast"
        else {"head": "gaussian"}
    )
    k = Kizzasi(
        KizzasiConfig(
            model_type=mt, input_dim=2, hidden_dim=16, state_dim=4, num_layers=1, head_dim=8,
            chunk_size=8, context_window=8, dtype="float64", backend=backend, seed=3, **extra,
        )
    )  # fmt: skip
    history = k.fit(SERIES, epochs=2, batch_size=8, objective=objective, verbose=False, seed=0)
    return k, history


@pytest.mark.parametrize("objective", ["next_step", "forecast"])
@pytest.mark.parametrize("mt", list(ModelType))
def test_fit_on_every_backend_matches_numpy(xp, mt, objective):
    name = backend_name(xp)
    if name == "numpy":
        pytest.skip("the reference itself")
    k, history = _trained(name, mt, objective)
    _, expected = _trained("numpy", mt, objective)
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-6)
    if objective == "next_step":  # online learning takes its gradient on the same backend
        for x in SERIES[:16]:
            y = k.update(x, every=8, buffer=8)
            assert y.shape == (2,) and np.all(np.isfinite(y))
