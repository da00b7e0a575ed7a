"""Shared set-up of the benchmarks: backbones of the default preset's size, inputs, states.

Every architecture is built at the default preset's size (hidden 256, state 16, 4 layers,
float32, NumPy) from :class:`kizzasi_lite.KizzasiConfig`, so the suite measures what a user of
the presets runs. The Transformer keeps a 256-step KV window here (its state grows with it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kizzasi_lite import KizzasiConfig, ModelType
from kizzasi_lite.backends import get_namespace
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.models import Backbone, architecture

ARCHS = ("mamba2", "mamba", "rwkv6", "rwkv4", "s4d", "transformer")
HIDDEN, STATE, LAYERS, WINDOW = 256, 16, 4, 256
XP = get_namespace("numpy")


def preset(arch: str, **overrides: Any) -> KizzasiConfig:
    """The default preset's size for architecture ``arch`` (``rwkv6`` is ModelType.RWKV)."""
    model_type = ModelType.RWKV if arch == "rwkv6" else ModelType(arch)
    fields = dict(hidden_dim=HIDDEN, state_dim=STATE, num_layers=LAYERS, context_window=WINDOW)
    return KizzasiConfig(model_type=model_type, **{**fields, **overrides})


def backbone(arch: str, **overrides: Any) -> Backbone:
    """A freshly initialised float32 NumPy backbone of ``arch`` at the preset's size."""
    cfg = preset(arch, **overrides).backbone_config()
    module = architecture(arch)
    return Backbone(arch, cfg, module.init_params(cfg, Generator(0, XP), XP.float32))


def signal(*shape: int, seed: int = 0) -> Any:
    """Standard normal float32 data of ``shape`` in the NumPy namespace."""
    return XP.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))
