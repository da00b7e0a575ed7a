"""The benchmark tooling's arithmetic (asv_bench/costs.py, compare.py): counts, not timings.

Nothing here times anything; ``make test`` checks that the asv suite loads with ``asv check``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from kizzasi_lite import KizzasiConfig
from kizzasi_lite.backends import get_namespace
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.models import Backbone, architecture

BENCH = Path(__file__).resolve().parent.parent / "asv_bench"


def _module(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


costs = _module("costs")
compare = _module("compare")
ARCHS = ("mamba2", "mamba", "rwkv4", "transformer")


def _backbone(arch: str, **kw) -> Backbone:
    cfg = KizzasiConfig(model_type=arch, hidden_dim=32, state_dim=4, num_layers=2, **kw)
    bcfg = cfg.backbone_config()
    xp = get_namespace("numpy")
    return Backbone(arch, bcfg, architecture(arch).init_params(bcfg, Generator(0, xp), xp.float32))


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_match_the_model(arch):
    bb = _backbone(arch, context_window=8)
    total, matmul = costs.param_counts(bb.params)
    assert total == bb.num_params
    linear = sum(
        v.size for k, v in bb.params.items() if v.ndim == 2 and k.endswith(".weight")
    )  # every linear layer is a 2-D ".weight" in these layouts
    assert matmul == linear


@pytest.mark.parametrize("arch", ARCHS)
def test_state_bytes_per_stream_equal_the_formula(arch):
    bb = _backbone(arch, context_window=8)
    state = bb.init_state(1)
    floats = sum(v.nbytes for k, v in state.items() if k != "pos")
    assert floats == costs.FLOAT_BYTES * (bb.state_numel() - (1 if arch == "transformer" else 0))


def test_step_bytes_are_weights_plus_state_in_and_out():
    bb = _backbone("mamba2")
    w = costs.step_work("mamba2", bb.config, bb.params, bb.state_numel(), batch=3)
    assert w.weight_bytes == 4 * bb.num_params
    assert w.state_bytes == 2 * 4 * 3 * bb.state_numel()
    assert w.bytes == w.weight_bytes + w.state_bytes + 2 * 4 * 3 * 32
    _, p_mm = costs.param_counts(bb.params)
    assert w.flops > 3 * 2 * p_mm  # the matmuls of 3 streams and the state update on top


def test_transformer_attention_flops_count_the_causal_window():
    bb = _backbone("transformer", context_window=4)
    _, p_mm = costs.param_counts(bb.params)
    fwd = costs.forward_work("transformer", bb.config, bb.params, bb.state_numel(), 1, 6)
    keys = 1 + 2 + 3 + 4 + 4 + 4  # min(t + 1, W) for t < 6
    c = bb.config
    attention = 4 * keys * c.num_attention_heads * c.head_dim * c.num_hidden_layers
    assert fwd.flops == 2 * p_mm * 6 + attention


def test_floor_is_the_larger_of_compute_and_memory_time():
    w = costs.Work(flops=2e9, bytes=1e9, weight_bytes=1e9, state_bytes=0.0)
    assert w.floor(peak_flops=1e9, bandwidth=1e10) == (2.0, "compute")
    assert w.floor(peak_flops=1e10, bandwidth=1e9) == (1.0, "memory")


def test_targets_read_the_rows():
    row = {
        "arch": "mamba2",
        "case": "step_b1",
        "speedup": 25.0,
        "ours_fraction_of_floor": 0.6,
        "ours_fraction_of_peak": 0.01,
    }
    [(name, met, figures)] = compare.targets([row])
    assert met and "25.00x" in figures
    [(_, met, _)] = compare.targets([{**row, "ours_fraction_of_floor": 0.3}])
    assert not met


def test_quick_arguments_parse():
    args = compare._parse(["--quick", "--archs", "mamba2,rwkv4", "--threads", "1"])
    assert args.archs == ["mamba2", "rwkv4"] and args.threads == 1 and args.repeats == 3
    with pytest.raises(SystemExit):
        compare._parse(["--archs", "nope"])
