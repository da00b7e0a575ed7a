"""Edge cases every architecture shares: no streams at all, config values of the wrong type."""

import numpy as np
import pytest

from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import ConfigError
from kizzasi_lite.models import architecture

SMALL = {
    "mamba": dict(hidden_size=8, state_size=4, num_hidden_layers=1, conv_kernel=3, chunk_size=4),
    "mamba2": dict(hidden_size=8, state_size=4, num_heads=4, head_dim=4, n_groups=2,
                   num_hidden_layers=1, conv_kernel=3, chunk_size=4),
    "rwkv4": dict(hidden_size=8, num_hidden_layers=1, chunk_size=4),
    "rwkv6": dict(n_embd=8, n_layer=1, head_size=4, time_mix_extra_dim=4,
                  time_decay_extra_dim=4, chunk_size=4),
    "s4d": dict(d_model=8, d_state=4, n_layer=1, chunk_size=4),
    "transformer": dict(hidden_size=8, intermediate_size=12, num_hidden_layers=1,
                        num_attention_heads=2, chunk_size=4, context_window=5),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SMALL))
def test_no_streams_give_empty_outputs(name):
    # mamba2's forward (a maximum over no decays) and the transformer (a division by B * H * T,
    # a reshape with -1) raised NumPy errors on a batch of 0 streams
    arch = architecture(name)
    cfg = arch.Config(**SMALL[name])
    params = arch.init_params(cfg, Generator(0, np))
    state = arch.init_state(cfg, 0, xp=np)
    y, new = arch.step(cfg, params, np.zeros((0, 8), np.float32), state)
    assert y.shape == (0, 8) and new.keys() == state.keys()
    y, new = arch.forward(cfg, params, np.zeros((0, 7, 8), np.float32), state)
    assert y.shape == (0, 7, 8) and all(new[k].shape == state[k].shape for k in state)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("mamba", "layer_norm_epsilon"),
        ("mamba", "time_step_min"),
        ("mamba2", "time_step_floor"),
        ("mamba2", "time_step_limit"),
        ("s4d", "dt_min"),
        ("s4d", "layer_norm_epsilon"),
        ("transformer", "rope_theta"),
        ("transformer", "rms_norm_eps"),
    ],
)
@pytest.mark.parametrize("value", ["1e-5", None, [1]])
def test_a_number_of_the_wrong_type_is_a_config_error(name, field, value):
    # a TypeError from a comparison before: config.json is user input
    arch = architecture(name)
    with pytest.raises(ConfigError, match=field):
        arch.Config.from_dict({**SMALL[name], field: value})
