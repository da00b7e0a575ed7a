"""The predictor facade: every model type, validation, state handling, files."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizzasi_lite import (
    ConfigError,
    InputError,
    Kizzasi,
    KizzasiConfig,
    KizzasiError,
    ModelType,
    WeightsError,
)

SMALL = dict(hidden_dim=32, state_dim=8, num_layers=2, head_dim=16, context_window=32)


def small(mt, **kw):
    return Kizzasi(KizzasiConfig(model_type=mt, input_dim=3, **{**SMALL, **kw}))


def randomize_head(k, seed=0):
    """A zero head hides the backbone; give it weights so outputs depend on the architecture."""
    rng = np.random.default_rng(seed)
    for name in ("head.weight", "head.bias"):
        shape = k.params[name].shape
        k.params[name] = k.xp.asarray(rng.normal(size=shape).astype(k.config.dtype))
    return k


@pytest.mark.parametrize("mt", list(ModelType))
def test_step_loop_equals_forward(mt):
    k = randomize_head(small(mt, dtype="float64"))
    xs = np.random.default_rng(1).normal(size=(2, 9, 3))
    seq = k.forward(xs)
    k.reset()
    steps = np.stack([k.step(xs[:, t]) for t in range(9)], axis=1)
    np.testing.assert_allclose(steps, seq, rtol=1e-10, atol=1e-10)


def test_model_type_really_selects_the_architecture():
    xs = np.random.default_rng(2).normal(size=(6, 3))
    outs = {}
    for mt in ModelType:
        k = randomize_head(small(mt))
        assert k.arch == mt.architecture
        assert any(key.startswith("backbone.") for key in k.params)
        outs[mt] = k.forward(xs)
    values = list(outs.values())
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            assert not np.allclose(values[i], values[j])


def test_seed_makes_initialisation_reproducible():
    a, b, c = (small("mamba2", seed=s) for s in (3, 3, 4))
    for key in a.params:
        np.testing.assert_array_equal(np.asarray(a.params[key]), np.asarray(b.params[key]))
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)


def test_untrained_model_repeats_the_last_value_and_predict_n_rolls_out():
    k = small("mamba")
    x = np.array([1.0, -2.0, 3.0], np.float32)
    np.testing.assert_allclose(k.step(x), x, rtol=1e-6)
    path = k.predict_n(np.stack([x, x]), 4)
    assert path.shape == (4, 3)
    np.testing.assert_allclose(path, np.tile(x, (4, 1)), rtol=1e-6)


def test_predict_n_advances_state_by_the_observation_only():
    k = randomize_head(small("mamba2", dtype="float64"))
    hist = np.random.default_rng(3).normal(size=(5, 3))
    k.predict_n(hist, 7)
    after = k.state
    ref = randomize_head(small("mamba2", dtype="float64"))
    ref.forward(hist)
    for key, v in ref.state.items():
        np.testing.assert_allclose(np.asarray(after[key]), np.asarray(v), rtol=1e-12)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros(4), "shape"),
        (np.zeros((2, 2, 3)), "shape"),
        (np.array([1.0, np.nan, 0.0]), "finite"),
        (np.array([1.0, np.inf, 0.0]), "finite"),
        (np.array(["a", "b", "c"]), "real numbers"),
        (np.array([True, False, True]), "real numbers"),
        ("abc", "real numbers"),
        (np.array([1e300, 0.0, 0.0]), "fit in float32"),  # finite, but inf in the model's dtype
    ],
)
def test_bad_input_raises_and_leaves_state_unchanged(bad, message):
    k = randomize_head(small("rwkv"))
    k.step(np.ones(3))
    before = {key: np.array(v) for key, v in k.state.items()}
    with pytest.raises(InputError, match=message) as info:
        k.step(bad)
    assert isinstance(info.value, KizzasiError)
    for key, v in k.state.items():
        np.testing.assert_array_equal(np.asarray(v), before[key])


def test_batch_size_change_needs_reset():
    k = small("s4d")
    k.step(np.ones((2, 3)))
    with pytest.raises(InputError, match="reset"):
        k.step(np.ones((4, 3)))
    k.reset()
    assert k.step(np.ones((4, 3))).shape == (4, 3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(
        st.one_of(
            st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
            st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5),
            st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_property_state_is_exactly_as_before_a_failing_call(data):
    k = randomize_head(small("mamba"))
    for x in data:
        before = None if k.state is None else {key: np.array(v) for key, v in k.state.items()}
        try:
            y = k.step(x)
        except KizzasiError:
            if before is None:
                assert k.state is None
            else:
                for key, v in k.state.items():
                    np.testing.assert_array_equal(np.asarray(v), before[key])
        else:  # an accepted input leaves a usable predictor
            assert np.all(np.isfinite(y))
            assert all(np.all(np.isfinite(np.asarray(v))) for v in k.state.values())


@pytest.mark.filterwarnings("error")  # no NumPy overflow warning before the InputError
@pytest.mark.parametrize("mt", list(ModelType))
def test_an_input_that_overflows_the_model_is_an_input_error_without_warnings(mt):
    k = randomize_head(small(mt))
    k.step(np.ones(3))
    before = {key: np.array(v) for key, v in k.state.items()}
    with pytest.raises(InputError, match="overflowed"):
        k.step(np.array([3e38, 0.0, 0.0]))  # float32, but the model's arithmetic overflows
    for key, v in k.state.items():
        np.testing.assert_array_equal(np.asarray(v), before[key])


@pytest.mark.parametrize("mt", list(ModelType))
def test_save_and_load_round_trip_is_exact(tmp_path, mt):
    k = randomize_head(small(mt))
    xs = np.random.default_rng(4).normal(size=(5, 3))
    k.forward(xs)
    k.save_pretrained(tmp_path / "m", include_state=True)
    back = Kizzasi.from_pretrained(tmp_path / "m")
    assert back.config == k.config
    for key in k.params:
        np.testing.assert_array_equal(np.asarray(back.params[key]), np.asarray(k.params[key]))
    for key in k.state:
        np.testing.assert_array_equal(np.asarray(back.state[key]), np.asarray(k.state[key]))
    x = np.ones(3)
    np.testing.assert_array_equal(back.step(x), k.step(x))


def test_mismatched_weights_name_the_tensor(tmp_path):
    small("mamba").save_pretrained(tmp_path / "a")
    bigger = Kizzasi(KizzasiConfig(model_type="mamba", input_dim=3, **{**SMALL, "hidden_dim": 48}))
    bigger.save_pretrained(tmp_path / "b")
    (tmp_path / "a" / "model.safetensors").write_bytes(
        (tmp_path / "b" / "model.safetensors").read_bytes()
    )
    with pytest.raises(WeightsError, match="shape"):
        Kizzasi.from_pretrained(tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError):
        Kizzasi.from_pretrained(tmp_path / "a")


def test_no_pickle_anywhere_in_the_package():
    import pathlib

    import kizzasi_lite

    root = pathlib.Path(kizzasi_lite.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, path


@pytest.mark.parametrize("mt", list(ModelType))
def test_long_streams_and_huge_inputs_stay_finite(mt):
    k = randomize_head(small(mt))
    rng = np.random.default_rng(5)
    xs = rng.uniform(-1, 1, size=(4, 2000, 3))
    y = k.forward(xs)
    assert np.all(np.isfinite(y))
    for scale in (1e3, 1e6):
        y = k.forward(xs[:, :50] * scale)
        assert np.all(np.isfinite(y))
        assert np.all(np.isfinite(k.step(np.full((4, 3), -scale))))


def test_predict_n_takes_one_stream_and_any_integer_count():
    k = small("s4d")
    k.step(np.ones(3))
    before = {key: np.array(v) for key, v in k.state.items()}
    for bad in (np.ones((2, 4, 3)), np.ones((0, 3))):
        with pytest.raises(InputError, match="one stream"):
            k.predict_n(bad, 2)
    for key, v in k.state.items():
        np.testing.assert_array_equal(np.asarray(v), before[key])
    assert k.predict_n(np.ones(3), np.int64(2)).shape == (2, 3)


def test_score_one_scores_against_the_newest_prediction_and_last_raw_has_the_output_shape():
    k = randomize_head(small("mamba", dtype="float64"))
    k.score_one(np.zeros(3))
    y = k.step(np.full(3, 5.0))  # a step in between: score_one must score against its prediction
    assert k.last_raw.shape == y.shape == (3,)
    ref = randomize_head(small("mamba", dtype="float64"))
    ref.score_one(np.zeros(3))
    ref.score_one(np.full(3, 5.0))
    assert k.score_one(y) == pytest.approx(ref.score_one(y), rel=1e-9)
    k.step(np.ones((1, 3)))
    assert k.last_raw.shape == (1, 3)


def test_state_entries_must_be_arrays():
    k = small("s4d")
    with pytest.raises(InputError, match="batch axis"):
        k.state = {"kernel": 1.0}


def test_predict_n_refuses_a_bad_seed_or_temperature_and_a_roll_out_that_overflows():
    k = small("mamba", head="gaussian")
    k.step(np.ones(3))
    before = {key: np.array(v) for key, v in k.state.items()}
    for seed in ("abc", -1, 1.5, True):  # were TypeError / ValueError from NumPy
        with pytest.raises(InputError, match="seed"):
            k.predict_n(np.ones(3), 2, samples=2, seed=seed)
    with pytest.raises(InputError, match="temperature"):  # returned inf and NaN paths
        k.predict_n(np.ones(3), 3, samples=2, temperature=float("inf"))
    with pytest.raises(InputError, match="overflowed"):  # finite, but the noise overflows
        k.predict_n(np.ones(3), 3, samples=2, temperature=1e308, seed=0)
    for key, v in k.state.items():
        np.testing.assert_array_equal(np.asarray(v), before[key])
    assert k.predict_n(np.ones(3), 2, samples=2, temperature=np.float32(0.5)).shape == (2, 2, 3)


def test_from_pretrained_names_a_config_or_error_scale_of_the_wrong_kind(tmp_path):
    import json

    small("s4d").save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    for bad in (5, "abc", [1, 2], None):  # were TypeError / ValueError from dict()
        (tmp_path / "config.json").write_text(json.dumps({**cfg, "kizzasi_lite": bad}))
        with pytest.raises(WeightsError, match="not a kizzasi_lite config"):
            Kizzasi.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    for scale, message in (([1.0, 1.0], "3 values"), ([0, 0, 0], "> 0")):  # NaN scores, a crash
        (tmp_path / "training.json").write_text(json.dumps({"error_scale": scale}))
        with pytest.raises(WeightsError, match=message):
            Kizzasi.from_pretrained(tmp_path)


def test_a_config_too_large_to_allocate_is_a_config_error(monkeypatch):
    with pytest.raises(ConfigError, match="cannot allocate"):  # was NumPy's ValueError
        Kizzasi(KizzasiConfig(model_type="mamba", hidden_dim=10**20))

    def no_memory(self):
        raise MemoryError("Unable to allocate 93.1 TiB")

    monkeypatch.setattr(Kizzasi, "_init_params", no_memory)
    with pytest.raises(ConfigError, match="cannot allocate.*93.1 TiB"):
        Kizzasi(KizzasiConfig(model_type="mamba", state_dim=10**11))
