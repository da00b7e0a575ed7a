"""A corrupt checkpoint or config.json is a WeightsError naming the key, never a raw error."""

import json

import numpy as np
import pytest

from kizzasi_lite import WeightsError, load_backbone, save_backbone
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.models import Backbone, architecture
from kizzasi_lite.weights import load_file, save_file
from tests.models.test_edge_cases import SMALL

LAYERS = {"mamba": "num_hidden_layers", "mamba2": "num_hidden_layers", "rwkv4":
          "num_hidden_layers", "s4d": "n_layer", "transformer": "num_hidden_layers"}  # fmt: skip


def _saved(name, folder, layers=1):
    arch = architecture(name)
    kw = {**SMALL[name]}
    key = LAYERS.get(name, "n_layer")
    kw[key] = layers
    cfg = arch.Config(**kw)
    save_backbone(Backbone(name, cfg, arch.init_params(cfg, Generator(0, np))), folder)
    return load_file(folder / "model.safetensors")[0], json.loads(
        (folder / "config.json").read_text()
    )


def _load(folder, tensors, config_json):
    save_file(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config_json))
    return load_backbone(folder)


# the tensors whose sizes give the config, and their axes: an IndexError when they had fewer
SIZED = [
    ("mamba", "layers.0.mixer.in_proj.weight", 2),
    ("mamba", "layers.0.mixer.A_log", 2),
    ("mamba", "layers.0.mixer.dt_proj.weight", 2),
    ("mamba2", "layers.0.mixer.in_proj.weight", 2),
    ("mamba2", "layers.0.mixer.norm.weight", 1),
    ("rwkv4", "blocks.0.ln1.weight", 1),
    ("rwkv6", "blocks.0.att.time_maa_w2", 3),
    ("rwkv6", "blocks.0.att.time_decay_w1", 2),
    ("s4d", "layers.0.kernel.C", 3),
    ("s4d", "norm_f.weight", 1),
    ("transformer", "norm.weight", 1),
    ("transformer", "layers.0.self_attn.q_proj.weight", 2),
]
FEWER_AXES = [(n, k, s) for n, k, ndim in SIZED for s in [(), (3,)] if len(s) < ndim]


@pytest.mark.parametrize(("name", "key", "shape"), FEWER_AXES)
def test_a_tensor_with_too_few_axes_is_named(tmp_path, name, key, shape):
    tensors, config_json = _saved(name, tmp_path)
    assert len(tensors[key].shape) > len(shape)
    with pytest.raises(WeightsError, match=key.replace(".", r"\.")):
        _load(tmp_path, {**tensors, key: np.ones(shape, np.float32)}, config_json)


@pytest.mark.parametrize("name", ["s4d", "transformer"])
@pytest.mark.parametrize("value", ["abc", None, [2]])
def test_a_size_of_the_wrong_type_in_config_json_is_named(tmp_path, name, value):
    tensors, config_json = _saved(name, tmp_path)
    field = LAYERS[name]
    with pytest.raises(WeightsError, match=field):
        _load(tmp_path, tensors, {**config_json, field: value})


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_config_json_with_fewer_layers_than_the_weights_is_refused(tmp_path, name):
    # rwkv4 took config.json's count and dropped the layers beyond it without a word
    tensors, config_json = _saved(name, tmp_path, layers=2)
    with pytest.raises(WeightsError, match=LAYERS[name]):
        _load(tmp_path, tensors, {**config_json, LAYERS[name]: 1})


@pytest.mark.parametrize("n_groups", [0, "2", None])
def test_mamba_ssm_ngroups_must_be_a_positive_integer(tmp_path, n_groups):
    # config.json without state_size: n_groups splits the conv's B and C channels (0 divided)
    tensors, config_json = _saved("mamba2", tmp_path)
    del config_json["state_size"]
    with pytest.raises(WeightsError, match="n_groups"):
        _load(tmp_path, tensors, {**config_json, "n_groups": n_groups})


@pytest.mark.parametrize(("key", "value"), [("n_groups", 3), ("n_groups", 16), ("state_size", 3)])
def test_mamba2_group_sizes_that_do_not_divide_the_weights_are_named(tmp_path, key, value):
    # the weights hold n_groups * state_size = 8 (2 groups of 4) B and C channels
    tensors, config_json = _saved("mamba2", tmp_path)
    del config_json["state_size"]
    with pytest.raises(WeightsError, match=rf"= 8 .*{key}={value} does not divide"):
        _load(tmp_path, tensors, {**config_json, key: value})
