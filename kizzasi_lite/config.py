"""``KizzasiConfig``: what a predictor is made of, validated on construction, saved as config.json.

A frozen dataclass; change it with :meth:`KizzasiConfig.replace` or build it fluently with
``KizzasiConfig.builder().model_type("mamba").hidden_dim(128).build()``. Every invalid value raises
``ConfigError`` naming the field, what it must be, and what was given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kizzasi_lite.backends import BACKENDS
from kizzasi_lite.errors import ConfigError


class ModelType(StrEnum):
    """The architectures a predictor can use (values are the names used in config.json)."""

    MAMBA = "mamba"
    MAMBA2 = "mamba2"
    RWKV = "rwkv"  # RWKV v6 "Finch"
    RWKV4 = "rwkv4"
    S4D = "s4d"
    TRANSFORMER = "transformer"

    @property
    def architecture(self) -> str:
        """The module name in :mod:`kizzasi_lite.models`."""
        return "rwkv6" if self is ModelType.RWKV else self.value


_POSITIVE_INTS = (
    "input_dim",
    "output_dim",
    "hidden_dim",
    "state_dim",
    "num_layers",
    "context_window",
    "expand",
    "conv_kernel",
    "head_dim",
    "n_groups",
    "chunk_size",
    "ffn_mult",
    "forecast_lookback",
    "forecast_patch",
)


@dataclass(frozen=True)
class KizzasiConfig:
    """Configuration of a :class:`~kizzasi_lite.Kizzasi` predictor.

    Shared fields: ``model_type``, ``input_dim`` (channels in), ``output_dim`` (channels out;
    None means ``input_dim``), ``hidden_dim`` (model width D), ``state_dim`` (SSM state size N per
    channel; for RWKV and the Transformer it is unused), ``num_layers``, ``context_window`` (the
    Transformer's KV-cache length and the training window), ``dtype`` (``"float32"`` or
    ``"float64"``), ``backend`` (``"numpy"``, ``"array_api_strict"``, ``"mlx"``, ``"cupy"``),
    ``seed`` (initialisation).

    Per-architecture knobs: ``expand`` (Mamba/Mamba2 inner width = expand * hidden_dim),
    ``conv_kernel`` (Mamba/Mamba2 causal conv width), ``head_dim`` (Mamba2/RWKV6/Transformer head
    size), ``n_groups`` (Mamba2 B/C groups; Transformer KV heads = heads / n_groups),
    ``chunk_size`` (chunked scans), ``ffn_mult`` (RWKV/Transformer MLP width = ffn_mult * hidden),
    ``s4d_init`` (``"inv"`` or ``"lin"``).

    Heads: ``head`` is ``"point"`` (the next sample) or ``"gaussian"`` (mean and standard deviation
    per channel); ``forecast_horizon`` > 0 adds the direct multi-horizon head used by
    :meth:`~kizzasi_lite.Kizzasi.forecast`: a linear map of the look-back window of
    ``forecast_lookback`` samples per channel (LSTNet's "highway") plus a correction from the
    backbone run over patch tokens of ``forecast_patch`` samples (PatchTST's tokens); ``revin``
    normalizes each forecast window by its own mean and standard deviation (reversible instance
    normalization, Kim et al. ICLR 2022).
    """

    model_type: ModelType = ModelType.MAMBA2
    input_dim: int = 1
    output_dim: int | None = None
    hidden_dim: int = 64
    state_dim: int = 16
    num_layers: int = 2
    context_window: int = 1024
    dtype: str = "float32"
    backend: str = "numpy"
    seed: int = 0
    expand: int = 2
    conv_kernel: int = 4
    head_dim: int = 16
    n_groups: int = 1
    chunk_size: int = 64
    ffn_mult: int = 4
    s4d_init: str = "inv"
    head: str = "point"
    forecast_horizon: int = 0
    forecast_lookback: int = 96
    forecast_patch: int = 8
    revin: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "model_type", ModelType(self.model_type))
        except ValueError:
            raise ConfigError(
                f"model_type must be one of {[m.value for m in ModelType]}, got {self.model_type!r}"
            ) from None
        if self.output_dim is None:
            object.__setattr__(self, "output_dim", self.input_dim)
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.s4d_init not in ("inv", "lin"):
            raise ConfigError(f"s4d_init must be 'inv' or 'lin', got {self.s4d_init!r}")
        if self.head not in ("point", "gaussian"):
            raise ConfigError(f"head must be 'point' or 'gaussian', got {self.head!r}")
        fh = self.forecast_horizon
        if isinstance(fh, bool) or not isinstance(fh, int) or fh < 0:
            raise ConfigError(f"forecast_horizon must be a non-negative integer, got {fh!r}")
        if not isinstance(self.revin, bool):
            raise ConfigError(f"revin must be True or False, got {self.revin!r}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a dict, got {type(self.extra).__name__}")
        self._check_heads()
        if self.extra:
            self._check_extra()

    def _check_heads(self) -> None:
        mt, d = self.model_type, self.hidden_dim
        width = {ModelType.MAMBA2: self.expand * d, ModelType.RWKV: d, ModelType.TRANSFORMER: d}
        if mt in width and width[mt] % self.head_dim:
            what = "expand * hidden_dim" if mt is ModelType.MAMBA2 else "hidden_dim"
            raise ConfigError(
                f"head_dim must divide {what} = {width[mt]} for {mt.value}, got head_dim={self.head_dim}"
            )
        if mt in (ModelType.MAMBA2, ModelType.TRANSFORMER):
            heads = width[mt] // self.head_dim
            if heads % self.n_groups:
                raise ConfigError(
                    f"n_groups must divide the number of heads ({heads}) for {mt.value}, "
                    f"got n_groups={self.n_groups}"
                )
        if mt is ModelType.S4D and self.state_dim % 2:
            raise ConfigError(
                f"state_dim must be even for s4d (complex conjugate pairs), got {self.state_dim}"
            )

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``model_type`` as its string value)."""
        d = dataclasses.asdict(self)
        d["model_type"] = self.model_type.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KizzasiConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a dict of fields, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - names))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> KizzasiConfig:
        """A copy with ``changes`` applied (and validated)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def builder(cls) -> ConfigBuilder:
        """Fluent builder: ``KizzasiConfig.builder().hidden_dim(128).num_layers(4).build()``."""
        return ConfigBuilder()

    def backbone_config(self) -> Any:
        """The architecture's own ``Config`` for these settings."""
        from kizzasi_lite.models import architecture

        arch = self.model_type.architecture
        return architecture(arch).Config.from_dict({**_BACKBONE_FIELDS[arch](self), **self.extra})

    def _check_extra(self) -> None:
        """``extra`` may set only the architecture's own settings that no field of this config
        derives, to values its ``Config`` accepts."""
        from kizzasi_lite.models import architecture

        arch = self.model_type.architecture
        known = {f.name for f in dataclasses.fields(architecture(arch).Config)}
        derived = set(_BACKBONE_FIELDS[arch](self))
        for key in self.extra:
            if key not in known:
                raise ConfigError(
                    f"extra: {arch} has no setting {key!r}; it has {sorted(known - derived)}"
                )
            if key in derived:
                raise ConfigError(
                    f"extra: {key!r} is derived from this config's own fields "
                    "(hidden_dim, state_dim, num_layers, head_dim, ...): set those instead"
                )
        try:
            self.backbone_config()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"extra: {exc}") from None


class ConfigBuilder:
    """Collects field values one call at a time; :meth:`build` validates them all."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in {f.name for f in dataclasses.fields(KizzasiConfig)}:
            raise AttributeError(f"KizzasiConfig has no field {name!r}")

        def setter(value: Any) -> ConfigBuilder:
            self._values[name] = value
            return self

        return setter

    def build(self) -> KizzasiConfig:
        return KizzasiConfig(**self._values)


def _mamba(c: KizzasiConfig) -> dict:
    return {
        "hidden_size": c.hidden_dim,
        "state_size": c.state_dim,
        "num_hidden_layers": c.num_layers,
        "expand": c.expand,
        "conv_kernel": c.conv_kernel,
        "chunk_size": c.chunk_size,
    }


def _mamba2(c: KizzasiConfig) -> dict:
    return {
        **_mamba(c),
        "num_heads": c.expand * c.hidden_dim // c.head_dim,
        "head_dim": c.head_dim,
        "n_groups": c.n_groups,
    }


def _rwkv6(c: KizzasiConfig) -> dict:
    return {
        "n_embd": c.hidden_dim,
        "n_layer": c.num_layers,
        "head_size": c.head_dim,
        "dim_ffn": c.ffn_mult * c.hidden_dim,
        "chunk_size": c.chunk_size,
    }


def _rwkv4(c: KizzasiConfig) -> dict:
    return {
        "hidden_size": c.hidden_dim,
        "num_hidden_layers": c.num_layers,
        "attention_hidden_size": c.hidden_dim,
        "intermediate_size": c.ffn_mult * c.hidden_dim,
    }


def _s4d(c: KizzasiConfig) -> dict:
    return {
        "d_model": c.hidden_dim,
        "d_state": c.state_dim,
        "n_layer": c.num_layers,
        "init": c.s4d_init,
    }


def _transformer(c: KizzasiConfig) -> dict:
    heads = c.hidden_dim // c.head_dim
    return {
        "hidden_size": c.hidden_dim,
        "intermediate_size": c.ffn_mult * c.hidden_dim,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads // c.n_groups,
        "head_dim": c.head_dim,
        "context_window": c.context_window,
    }


_BACKBONE_FIELDS = {
    "mamba": _mamba,
    "mamba2": _mamba2,
    "rwkv6": _rwkv6,
    "rwkv4": _rwkv4,
    "s4d": _s4d,
    "transformer": _transformer,
}


# ---------------------------------------------------------------------- presets
def audio_preset(sample_rate: int = 16_000, **overrides: Any) -> KizzasiConfig:
    """Mono audio, next-sample prediction: Mamba2, hidden 128, state 32, 4 layers, head_dim 32,
    chunk 256, context_window = 0.1 s of samples (``sample_rate // 10``)."""
    if not isinstance(sample_rate, int) or sample_rate < 1000:
        raise ConfigError(f"sample_rate must be an integer >= 1000 Hz, got {sample_rate!r}")
    base = dict(
        model_type=ModelType.MAMBA2,
        input_dim=1,
        hidden_dim=128,
        state_dim=32,
        num_layers=4,
        head_dim=32,
        chunk_size=256,
        context_window=sample_rate // 10,
    )
    return KizzasiConfig(**{**base, **overrides})


def sensor_preset(num_channels: int = 7, **overrides: Any) -> KizzasiConfig:
    """Multi-channel telemetry (e.g. the 7 ETT channels): Mamba2, hidden 64, state 16, 2 layers,
    context_window 512."""
    base = dict(
        model_type=ModelType.MAMBA2,
        input_dim=num_channels,
        hidden_dim=64,
        state_dim=16,
        num_layers=2,
        context_window=512,
    )
    return KizzasiConfig(**{**base, **overrides})


def robotics_preset(num_joints: int = 7, **overrides: Any) -> KizzasiConfig:
    """Robot joint states (one channel per joint): Mamba, hidden 128, state 16, 3 layers,
    context_window 256 (a few seconds at a 100 Hz control rate)."""
    base = dict(
        model_type=ModelType.MAMBA,
        input_dim=num_joints,
        hidden_dim=128,
        state_dim=16,
        num_layers=3,
        context_window=256,
    )
    return KizzasiConfig(**{**base, **overrides})


def video_preset(embedding_dim: int = 512, **overrides: Any) -> KizzasiConfig:
    """Frame embeddings: Mamba2, hidden 256, state 64, 4 layers, head_dim 64, context_window 256."""
    base = dict(
        model_type=ModelType.MAMBA2,
        input_dim=embedding_dim,
        hidden_dim=256,
        state_dim=64,
        num_layers=4,
        head_dim=64,
        context_window=256,
    )
    return KizzasiConfig(**{**base, **overrides})


def control_preset(num_channels: int = 4, **overrides: Any) -> KizzasiConfig:
    """Low-latency control loops: S4D, hidden 64, state 16, 2 layers (the cheapest step)."""
    base = dict(
        model_type=ModelType.S4D,
        input_dim=num_channels,
        hidden_dim=64,
        state_dim=16,
        num_layers=2,
        context_window=128,
    )
    return KizzasiConfig(**{**base, **overrides})


def lightweight_preset(input_dim: int = 1, **overrides: Any) -> KizzasiConfig:
    """Smallest useful model (microcontrollers, the browser): Mamba2, hidden 32, state 8,
    1 layer, head_dim 16."""
    base = dict(
        model_type=ModelType.MAMBA2,
        input_dim=input_dim,
        hidden_dim=32,
        state_dim=8,
        num_layers=1,
        head_dim=16,
        context_window=256,
    )
    return KizzasiConfig(**{**base, **overrides})


PRESETS = {
    "audio": audio_preset,
    "sensor": sensor_preset,
    "robotics": robotics_preset,
    "video": video_preset,
    "control": control_preset,
    "lightweight": lightweight_preset,
}
