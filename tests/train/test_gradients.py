"""Loss gradients of every architecture against central finite differences, in float64.

The sequence length is longer than the chunk so the chunked/parallel paths are crossed, and the
window starts from a carried, non-zero state (truncated back-propagation through time).
"""

import numpy as np
import pytest

from kizzasi_lite import Kizzasi, KizzasiConfig, ModelType, heads
from kizzasi_lite.train.losses import gaussian_nll, mse
from tests.gradcheck import check_grad


@pytest.mark.parametrize("mt", list(ModelType))
@pytest.mark.parametrize("path", ["sequence", "step"])
def test_every_parameter_gradient_matches_finite_differences(mt, path):
    k = Kizzasi(
        KizzasiConfig(
            model_type=mt, input_dim=2, hidden_dim=16, state_dim=4, num_layers=2, head_dim=8,
            chunk_size=4, context_window=6, dtype="float64", head="gaussian", seed=1,
        )
    )  # fmt: skip
    rng = np.random.default_rng(0)
    # every weight away from its init (zeros and ones in the default init could hide mistakes)
    k.params = {
        key: k.xp.asarray(
            np.asarray(v) + (0.5 if key.startswith("head") else 0.05) * rng.normal(size=v.shape)
        )
        if not key.startswith("normalizer")
        else v
        for key, v in k.params.items()
    }
    k.forward(rng.normal(size=(2, 5, 2)))  # a carried, non-zero state
    state = k.state
    z = k.xp.asarray(rng.normal(size=(2, 11, 2)))
    cfg = k.backbone_config

    def loss(p):
        if path == "sequence":
            mean, scale, _ = heads.next_sequence(
                k.arch, cfg, p, z[:, :-1], state, residual=True, gaussian=True
            )
        else:
            means, scales, s = [], [], state
            for t in range(z.shape[1] - 1):
                m, sc, s = heads.next_step(k.arch, cfg, p, z[:, t], s, residual=True, gaussian=True)
                means.append(m)
                scales.append(sc)
            from kizzasi_lite.backends import namespace

            xp = namespace(*means)
            mean, scale = xp.stack(means, axis=1), xp.stack(scales, axis=1)
        return gaussian_nll(mean, scale, z[:, 1:]) + mse(mean, z[:, 1:])

    trainable = {key: v for key, v in k.params.items()}
    check_grad(
        loss,
        trainable,
        entries=2,
        rtol=1e-5,
        eps=1e-5,  # small enough that no step crosses a ReLU kink of the channel mixes
        keys=[key for key in trainable if not key.startswith("normalizer")],
    )


@pytest.mark.parametrize("mt", [ModelType.MAMBA2, ModelType.S4D])
@pytest.mark.parametrize(("patch", "revin"), [(3, True), (4, False)])
def test_forecast_head_gradient_matches_finite_differences(mt, patch, revin):
    """Through patch tokens (10 samples in patches of 3: two repeated in front), RevIN, the
    flatten head and the highway."""
    k = Kizzasi(
        KizzasiConfig(
            model_type=mt, input_dim=2, hidden_dim=8, state_dim=4, num_layers=1, head_dim=8,
            chunk_size=2, dtype="float64", forecast_horizon=3, forecast_lookback=10,
            forecast_patch=patch, revin=revin, seed=2,
        )
    )  # fmt: skip
    rng = np.random.default_rng(1)
    p0 = {
        key: k.xp.asarray(np.asarray(v) + 0.1 * rng.normal(size=v.shape))
        for key, v in k.params.items()
        if key.startswith(("forecast.", "backbone."))
    }
    z = k.xp.asarray(rng.normal(size=(3, 13, 2)))
    const = {key: v for key, v in k.params.items() if key not in p0}

    def loss(p):
        return mse(k._forecast_z({**const, **p}, z[:, :10]), z[:, 10:])

    check_grad(loss, p0, entries=2, rtol=1e-5, eps=1e-5)
