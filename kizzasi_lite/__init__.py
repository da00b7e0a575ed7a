"""kizzasi_lite: learn continuous signals and predict them step by step with state-space models.

The public surface: :class:`Kizzasi` (the stream predictor), :class:`KizzasiConfig` with
:class:`ModelType` and the presets, :func:`load_backbone` for reference checkpoints, and the errors.
"""

from kizzasi_lite.config import (
    PRESETS,
    KizzasiConfig,
    ModelType,
    audio_preset,
    control_preset,
    lightweight_preset,
    robotics_preset,
    sensor_preset,
    video_preset,
)
from kizzasi_lite.errors import (
    BackendUnavailableError,
    ConfigError,
    GuardrailInfeasibleError,
    InputError,
    KizzasiError,
    WeightsError,
)
from kizzasi_lite.predictor import Kizzasi
from kizzasi_lite.weights import load_backbone, save_backbone

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "BackendUnavailableError",
    "ConfigError",
    "GuardrailInfeasibleError",
    "InputError",
    "Kizzasi",
    "KizzasiConfig",
    "KizzasiError",
    "ModelType",
    "WeightsError",
    "audio_preset",
    "control_preset",
    "lightweight_preset",
    "load_backbone",
    "robotics_preset",
    "save_backbone",
    "sensor_preset",
    "video_preset",
]
