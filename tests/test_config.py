import json

import pytest

from kizzasi_lite import PRESETS, ConfigError, KizzasiConfig, KizzasiError, ModelType


def test_defaults_and_derived_fields():
    c = KizzasiConfig(input_dim=3)
    assert c.model_type is ModelType.MAMBA2
    assert c.output_dim == 3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"num_layers": -1}, "num_layers"),
        ({"input_dim": 2.5}, "input_dim"),
        ({"state_dim": True}, "state_dim"),
        ({"dtype": "float16"}, "dtype"),
        ({"backend": "jax"}, "backend"),
        ({"model_type": "lstm"}, "model_type"),
        ({"model_type": "transformer", "hidden_dim": 30, "head_dim": 16}, "head_dim"),
        ({"model_type": "mamba2", "hidden_dim": 32, "head_dim": 16, "n_groups": 3}, "n_groups"),
        ({"model_type": "s4d", "state_dim": 7}, "state_dim"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field) as info:
        KizzasiConfig(**changes)
    assert isinstance(info.value, KizzasiError)


def test_builder_and_replace():
    c = KizzasiConfig.builder().model_type("mamba").hidden_dim(32).num_layers(3).build()
    assert (c.model_type, c.hidden_dim, c.num_layers) == (ModelType.MAMBA, 32, 3)
    assert c.replace(hidden_dim=48).hidden_dim == 48
    with pytest.raises(ConfigError, match="unknown config field"):
        c.replace(hidden=4)
    with pytest.raises(AttributeError):
        KizzasiConfig.builder().hidden(4)


def test_json_round_trip():
    c = KizzasiConfig(model_type="rwkv", input_dim=2, hidden_dim=32, head_dim=16, seed=5)
    d = json.loads(json.dumps(c.to_dict()))
    assert KizzasiConfig.from_dict(d) == c
    with pytest.raises(ConfigError, match="unknown"):
        KizzasiConfig.from_dict({**d, "bogus": 1})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_build_their_backbone(name):
    c = PRESETS[name]()
    assert isinstance(c, KizzasiConfig)
    cfg = c.backbone_config()
    assert cfg.to_dict()


def test_audio_preset_context_follows_sample_rate():
    assert PRESETS["audio"](sample_rate=48_000).context_window == 4800
    with pytest.raises(ConfigError, match="sample_rate"):
        PRESETS["audio"](sample_rate=10)


@pytest.mark.parametrize("mt", list(ModelType))
def test_every_model_type_maps_to_a_backbone_config(mt):
    c = KizzasiConfig(model_type=mt, hidden_dim=32, head_dim=16, state_dim=8)
    assert c.backbone_config().to_dict()


@pytest.mark.parametrize(
    ("mt", "extra", "message"),
    [
        ("mamba", {"hidden_size": 32}, "derived from this config's own fields"),
        ("s4d", {"d_model": 16}, "derived from this config's own fields"),
        ("mamba2", {"nope": 1}, "mamba2 has no setting 'nope'"),
        ("s4d", {"use_bias": True}, "s4d has no setting 'use_bias'"),
        ("mamba2", {"time_step_limit": (0.0, "x")}, "time_step_limit"),
    ],
)
def test_extra_sets_only_the_architectures_own_free_settings(mt, extra, message):
    with pytest.raises(ConfigError, match=message):
        KizzasiConfig(model_type=mt, extra=extra)
    cfg = KizzasiConfig(model_type="mamba2", extra={"use_bias": True})
    assert cfg.backbone_config().use_bias is True


def test_from_dict_takes_only_a_dict_with_field_names():
    for bad in (None, 5, [("input_dim", 2)]):  # TypeError: not iterable / not a mapping
        with pytest.raises(ConfigError, match="dict of fields"):
            KizzasiConfig.from_dict(bad)
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['1', 'bogus'\]"):
        KizzasiConfig.from_dict({1: 2, "bogus": 3})  # TypeError from sorting int and str
