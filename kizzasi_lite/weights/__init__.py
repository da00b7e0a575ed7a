"""Weights on disk: safetensors + config.json, in our layout or a reference model's.

:func:`load_backbone` reads a folder holding ``model.safetensors`` (and ``config.json`` where the
format has one) written by us, by transformers (``MambaModel`` / ``MambaForCausalLM``,
``Mamba2Model``, ``RwkvModel``, ``LlamaModel``), or a BlinkDL RWKV x060 checkpoint converted to
safetensors, and returns a :class:`~kizzasi_lite.models.Backbone`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from kizzasi_lite.backends import dtype_of, get_namespace, to_numpy
from kizzasi_lite.errors import WeightsError
from kizzasi_lite.models import ARCHITECTURES, Backbone, architecture
from kizzasi_lite.weights.atomic import atomic_write
from kizzasi_lite.weights.safetensors import load_file, save_file

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

# transformers' config.json "model_type" -> our architecture
_HF_MODEL_TYPES = {"mamba": "mamba", "mamba2": "mamba2", "rwkv": "rwkv4", "llama": "transformer"}
# a key that only one layout has -> architecture (for checkpoints without config.json)
_KEY_MARKERS = (
    ("att.time_maa_x", "rwkv6"),
    ("kernel.log_A_real", "s4d"),
    ("attention.time_first", "rwkv4"),
    ("mixer.dt_bias", "mamba2"),
    ("mixer.x_proj.weight", "mamba"),
    ("self_attn.q_proj.weight", "transformer"),
)


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON to ``path`` through a temporary file and a rename."""
    with atomic_write(path, error=WeightsError) as tmp, tmp.open("w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object from ``path``; ``WeightsError`` names the file when it is not one."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_is_number(x) for x in v)


# training.json: key -> (check, what it must be); other keys are kept unchecked
_TRAINING_FIELDS = {
    "columns": (lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
                "a list of channel names"),
    "data": (lambda v: isinstance(v, str), "a string"),
    "samplerate": (lambda v: v is None or _is_number(v), "a number"),
    "trained": (lambda v: isinstance(v, bool), "true or false"),
    "error_scale": (lambda v: _numbers(v) and all(0 < x < math.inf for x in v),
                    "a list of numbers, finite and > 0 (one per channel)"),
    "anomaly_threshold": (lambda v: v is None or _is_number(v), "a number"),
    "anomaly_quantile": (_is_number, "a number"),
}  # fmt: skip
_RUN_LISTS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


def read_training_info(path: str | os.PathLike) -> dict:
    """Read ``training.json`` (training history, metrics, anomaly threshold) and check the types
    of the fields the package reads; ``WeightsError`` names the file and the field."""
    info = read_json(path)
    for key, value in info.items():
        if key in _TRAINING_FIELDS:
            ok, what = _TRAINING_FIELDS[key]
        elif key.startswith(("val_", "forecast_val_")):
            ok, what = _is_number, "a number"
        else:
            continue
        if not ok(value):
            raise WeightsError(f"{path}: {key!r} must be {what}, got {value!r:.80}")
    runs = info.get("history", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise WeightsError(
            f"{path}: 'history' must be a list of objects (one per training run), got {runs!r:.80}"
        )
    for i, run in enumerate(runs):
        if not isinstance(run.get("objective", ""), str):
            raise WeightsError(f"{path}: history[{i}]['objective'] must be a string")
        for key in _RUN_LISTS:
            if not _numbers(run.get(key, [])):
                raise WeightsError(
                    f"{path}: history[{i}][{key!r}] must be a list of numbers, got {run[key]!r:.80}"
                )
    return info


def detect_architecture(tensors: dict[str, Any], config_json: dict | None) -> str:
    """Which architecture a checkpoint holds, from config.json or, failing that, its key names."""
    if config_json:
        ours = config_json.get("kizzasi_architecture")
        if ours in ARCHITECTURES:
            return ours
        hf = _HF_MODEL_TYPES.get(config_json.get("model_type", ""))
        if hf:
            return hf
    for marker, arch in _KEY_MARKERS:
        if any(marker in k for k in tensors):
            return arch
    raise WeightsError(
        "cannot tell the architecture of this checkpoint: config.json has no known "
        f"'model_type' ({sorted(_HF_MODEL_TYPES)}) and no key matches a known layout; "
        f"first keys: {sorted(tensors)[:5]}"
    )


def load_backbone(path: str | os.PathLike, backend: str | None = None, dtype: str | None = None):
    """Load the backbone in folder ``path`` onto ``backend`` (default numpy) as ``dtype``.

    ``dtype`` is ``"float32"`` or ``"float64"``; None keeps float64 checkpoints in float64 and
    loads everything else as float32.
    """
    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    folder = weights.parent
    if not weights.is_file():
        raise WeightsError(f"no {WEIGHTS_NAME} in {folder}")
    tensors, _ = load_file(weights)
    config_json = read_json(folder / CONFIG_NAME) if (folder / CONFIG_NAME).is_file() else None
    arch = detect_architecture(tensors, config_json)
    module = architecture(arch)
    cfg = module.config_from_checkpoint(tensors, config_json)
    params = module.params_from_checkpoint(tensors, cfg)
    if dtype is None:
        floats = {str(v.dtype) for v in params.values()}
        dtype = "float64" if floats == {"float64"} else "float32"
    xp = get_namespace(backend)
    target = dtype_of(xp, dtype)
    params = {k: xp.asarray(to_numpy(v).astype(dtype), dtype=target) for k, v in params.items()}
    return Backbone(arch, cfg, params)


def save_backbone(backbone: Backbone, path: str | os.PathLike) -> None:
    """Save ``backbone`` into folder ``path`` as ``model.safetensors`` + ``config.json``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: to_numpy(v) for k, v in backbone.params.items()}, path / WEIGHTS_NAME)
    write_json_atomic(
        {"kizzasi_architecture": backbone.arch, **backbone.config.to_dict()}, path / CONFIG_NAME
    )


def check_params(expected: dict[str, tuple], given: dict[str, Any], source: str) -> None:
    """Raise ``WeightsError`` naming the first key missing from ``given``, unexpected, or of a wrong shape."""
    for key, shape in expected.items():
        if key not in given:
            raise WeightsError(f"{source}: missing tensor {key!r} (expected shape {tuple(shape)})")
        if tuple(given[key].shape) != tuple(shape):
            raise WeightsError(
                f"{source}: tensor {key!r} has shape {tuple(given[key].shape)}, "
                f"expected {tuple(shape)}"
            )
    extra = sorted(set(given) - set(expected))
    if extra:
        raise WeightsError(f"{source}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected)")


__all__ = [
    "check_params",
    "detect_architecture",
    "load_backbone",
    "load_file",
    "read_json",
    "read_training_info",
    "save_backbone",
    "save_file",
    "write_json_atomic",
]
