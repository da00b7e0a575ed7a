"""The architectures, one module each, and the :class:`Backbone` that binds one to its weights.

Every architecture module ``kizzasi_lite.models.<name>`` provides the same pure functions:

- ``Config``: a frozen dataclass; field names follow the Hugging Face ``config.json`` of that
  architecture where one exists; ``Config.from_dict(d)`` ignores unknown keys.
- ``init_params(cfg, rng, dtype) -> dict``: fresh weights, keys = checkpoint (safetensors) names.
- ``init_state(cfg, batch, *, xp, dtype) -> dict``: the zero state of ``batch`` streams.
- ``step(cfg, params, x, state) -> (y, state)``: ``x`` (B, D) -> ``y`` (B, D), O(1) in time.
- ``forward(cfg, params, x, state=None) -> (y, state)``: ``x`` (B, T, D) -> ``y`` (B, T, D).
- ``config_from_checkpoint(tensors, config_json) -> Config`` and
  ``params_from_checkpoint(tensors, cfg) -> dict``: read a reference checkpoint's layout.
- ``state_numel(cfg) -> int``: numbers held in the state of one stream (the formula).

``y`` is the last hidden state after the final norm, as the reference models return it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from kizzasi_lite.backends import namespace

ARCHITECTURES = ("mamba", "mamba2", "rwkv6", "rwkv4", "s4d", "transformer")


def architecture(name: str) -> Any:
    """The module of architecture ``name`` (one of :data:`ARCHITECTURES`)."""
    if name not in ARCHITECTURES:
        from kizzasi_lite.errors import ConfigError

        raise ConfigError(f"architecture must be one of {ARCHITECTURES}, got {name!r}")
    return importlib.import_module(f"kizzasi_lite.models.{name}")


@dataclass
class Backbone:
    """An architecture bound to its config and weights: ``init_state``, ``step``, ``forward``."""

    arch: str
    config: Any
    params: dict[str, Any]

    @property
    def module(self) -> Any:
        return architecture(self.arch)

    @property
    def xp(self) -> Any:
        return namespace(*self.params.values())

    @property
    def dtype(self) -> Any:
        return next(iter(self.params.values())).dtype

    def init_state(self, batch: int = 1) -> dict[str, Any]:
        """Zero state for ``batch`` independent streams."""
        return self.module.init_state(self.config, batch, xp=self.xp, dtype=self.dtype)

    def step(self, x: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """One time step: ``x`` (B, D) -> ``y`` (B, D) and the next state."""
        return self.module.step(self.config, self.params, x, state)

    def forward(self, x: Any, state: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """A whole sequence: ``x`` (B, T, D) -> ``y`` (B, T, D) and the final state."""
        return self.module.forward(self.config, self.params, x, state)

    @property
    def num_params(self) -> int:
        """Number of scalar parameters."""
        total = 0
        for p in self.params.values():
            n = 1
            for s in p.shape:
                n *= s
            total += n
        return total

    def state_numel(self) -> int:
        """Numbers held in the state of one stream (the architecture's formula)."""
        return self.module.state_numel(self.config)
