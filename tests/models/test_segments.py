"""Mamba and Mamba-2 ``forward`` at inference runs a long sequence in time segments
(``models._common.run_mamba_sequence``): the result is that of one pass."""

import pytest

from kizzasi_lite.backends import loops_are_cheap
from kizzasi_lite.models import _common, mamba, mamba2
from tests.conftest import assert_close, rand
from tests.models.common import assert_states_close, perturbed_params, random_state

CONFIGS = {
    "mamba": mamba.Config(
        hidden_size=8, state_size=4, num_hidden_layers=2, conv_kernel=3, chunk_size=4
    ),
    "mamba2": mamba2.Config(
        hidden_size=8, state_size=4, num_heads=4, head_dim=4, n_groups=2,
        num_hidden_layers=2, conv_kernel=3, chunk_size=4,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_segmented_forward_equals_one_pass(xp, name, monkeypatch):
    arch, cfg = {"mamba": mamba, "mamba2": mamba2}[name], CONFIGS[name]
    params = perturbed_params(arch, cfg, xp, "float64")
    x = rand(xp, (2, 37, cfg.hidden_size), seed=1, dtype="float64")
    s0 = random_state(arch, xp, cfg, 2, "float64")
    y_one, s_one = arch.forward(cfg, params, x, s0)  # 37 steps fit one segment
    width = params["layers.0.mixer.in_proj.weight"].shape[0]
    segment = 2 * cfg.chunk_size  # 8 steps: four full segments and a short one
    monkeypatch.setattr(_common, "_SEGMENT_NUMBERS", 2 * width * segment)
    calls = []
    stack = _common.run_mamba_stack
    monkeypatch.setattr(
        _common, "run_mamba_stack", lambda *a: calls.append(a[2].shape[1]) or stack(*a)
    )
    y, s = arch.forward(cfg, params, x, s0)
    assert calls == ([8, 8, 8, 8, 5] if loops_are_cheap(x) else [37])
    assert_close(y, y_one, xp=xp, rtol=1e-12, atol=1e-12)
    assert_states_close(s, s_one, xp=xp, rtol=1e-12, atol=1e-12)
