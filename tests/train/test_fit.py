"""fit, the Gaussian head, sampling, forecasting, online updates, anomaly scores, resuming."""

import numpy as np
import pytest

from kizzasi_lite import ConfigError, InputError, Kizzasi, KizzasiConfig
from kizzasi_lite.train import AdamW, clip_by_global_norm, cosine_schedule


def sine(T=1200, channels=2, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    return np.sin(0.1 * t * (1 + np.arange(channels))) + noise * rng.normal(size=(T, channels))


def small(**kw):
    base = dict(model_type="mamba2", input_dim=2, hidden_dim=16, num_layers=1, head_dim=8, seed=0)
    return Kizzasi(KizzasiConfig(**{**base, **kw}))


def test_fit_learns_records_history_and_is_reproducible():
    x = sine()
    a, b = small(), small()
    ha = a.fit(x, epochs=3, batch_size=4, window=32, verbose=False)
    hb = b.fit(x, epochs=3, batch_size=4, window=32, verbose=False)
    assert ha == {**hb, "seconds": ha["seconds"]}
    assert a.info["val_mse"] < 0.5 * a.info["val_mse_repeat_last"]
    for key in a.params:
        np.testing.assert_array_equal(np.asarray(a.params[key]), np.asarray(b.params[key]))
    assert a.info["trained"] and len(a.info["history"]) == 1


def test_normalisation_comes_from_the_training_part_only():
    x = sine()
    x[-200:] += 100.0  # a shift in the validation part must not leak into the statistics
    k = small()
    k.fit(x, epochs=1, batch_size=4, window=32, val_fraction=0.2, verbose=False)
    np.testing.assert_allclose(np.asarray(k.params["normalizer.mean"]), x[:960].mean(0), rtol=1e-5)


def test_fit_rejects_bad_options_and_data():
    k = small()
    with pytest.raises(ConfigError, match="objective"):
        k.fit(sine(), objective="classify")
    with pytest.raises(ConfigError, match="forecast_horizon"):
        k.fit(sine(), objective="forecast")
    with pytest.raises(InputError, match="shape"):
        k.fit(np.zeros((100, 3)))
    with pytest.raises(InputError, match="finite"):
        k.fit(np.full((100, 2), np.nan))
    for name in ("stride", "windows_per_stream"):
        with pytest.raises(ConfigError, match=name):
            k.fit(sine(), **{name: 0})
    with pytest.raises(InputError, match="validation series has 1 sample"):
        k.fit(sine(), val_series=sine()[:1])
    before = {key: np.array(v) for key, v in k.params.items()}
    with pytest.raises(InputError, match="shorter than window"):  # after the normalisation
        k.fit(sine(T=40), window=64, val_fraction=0.0, verbose=False)
    for key, v in k.params.items():  # a failed fit leaves the model as it was
        np.testing.assert_array_equal(np.asarray(v), before[key])


def test_every_epoch_trains_on_the_newest_samples():
    # 1000 steps in streams of 4 windows of 128: 7 whole windows, so 3 would be left over
    from kizzasi_lite.train.fit import _Task

    k = small(input_dim=1)
    k.params = {**k.params, "normalizer.mean": k.xp.asarray([0.0], dtype=k.xp.float32)}
    task = _Task(k, "next_step", "mse", 128)
    series = np.arange(1000.0)[:, None]
    for seed in range(5):
        rng = np.random.default_rng(seed)
        seen = np.concatenate([b.ravel() for b in task.batches([series], 8, 4, 1, rng)])
        assert seen.max() == 999.0  # the last sample (normalizer std is 1: z = x)
        assert len(np.unique(seen)) >= 1000 - 128  # all but at most the random offset


def test_gaussian_head_samples_trajectories_with_temperature():
    k = small(head="gaussian")
    k.fit(sine(), epochs=2, batch_size=4, window=32, verbose=False)
    hist = sine()[:50]
    paths = k.predict_n(hist, 8, samples=5, seed=1)
    assert paths.shape == (5, 8, 2)
    assert np.std(paths[:, -1, 0]) > 0
    k.reset()  # predict_n advances the state by the history it observes
    cold = k.predict_n(hist, 8, samples=5, temperature=0.0, seed=1)
    np.testing.assert_allclose(cold, np.broadcast_to(cold[0], cold.shape), rtol=1e-5)
    k.reset()
    mean = k.predict_n(hist, 8)
    np.testing.assert_allclose(cold[0], mean, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="gaussian"):
        small().predict_n(hist, 3, samples=2)


def test_forecast_head_and_resume(tmp_path):
    x = sine(T=800, channels=1)
    k = small(input_dim=1, forecast_horizon=12, forecast_lookback=24)
    k.fit(x, objective="forecast", epochs=2, batch_size=16, stride=2, verbose=False)
    y = k.forecast(x[:100], 12)
    assert y.shape == (12, 1)
    repeat = np.mean((x[100:112] - x[99]) ** 2)
    assert np.mean((y - x[100:112]) ** 2) < repeat
    with pytest.raises(InputError, match="horizon"):
        k.forecast(x[:100], 13)
    with pytest.raises(InputError, match="at least 24"):
        k.forecast(x[:10])
    k.save_pretrained(tmp_path)
    back = Kizzasi.from_pretrained(tmp_path)
    np.testing.assert_array_equal(back.forecast(x[:100]), k.forecast(x[:100]))
    before = np.asarray(back.params["normalizer.mean"]).copy()
    back.fit(x, objective="forecast", epochs=1, batch_size=16, stride=4, verbose=False)
    np.testing.assert_array_equal(np.asarray(back.params["normalizer.mean"]), before)
    assert len(back.info["history"]) == 2


def test_online_update_adapts_with_bounded_memory():
    x = sine(T=600)
    k = small()
    k.fit(x[:300], epochs=1, batch_size=4, window=32, verbose=False)
    before = {key: np.asarray(v).copy() for key, v in k.params.items()}
    for row in x[300:500]:
        y = k.update(row, every=8, buffer=64)
        assert y.shape == (2,)
    assert k._online.data.shape == (64, 2)
    assert any(not np.array_equal(before[key], np.asarray(k.params[key])) for key in before)
    state = {key: np.array(v) for key, v in k.state.items()}
    with pytest.raises(InputError, match="one sample of one stream"):
        k.update(x[:2])  # a batch: refused before it steps
    for key, v in k.state.items():
        np.testing.assert_array_equal(np.asarray(v), state[key])


def test_scores_flag_an_injected_spike():
    x = sine(T=1500)
    k = small()
    k.fit(x[:1000], epochs=4, batch_size=4, window=32, verbose=False)
    assert k.info["anomaly_threshold"] > 0
    test = x[1000:].copy()
    test[300] += 3.0
    s = k.score(test)
    assert s["score"].shape == (500,) and s["prediction"].shape == (500, 2)
    # the spike is the error at 300, and the prediction made from it the error at 301
    assert int(np.argmax(s["score"])) in (300, 301)
    flagged = k.detect(test)
    assert 300 in flagged and len(flagged) < 25
    k.reset()
    online = [k.score_one(row) for row in test[:310]]
    assert online[0] == 0.0 and int(np.argmax(online)) in (300, 301)
    np.testing.assert_allclose(online[1:], s["score"][1:310], rtol=1e-3, atol=1e-4)


def test_optimizer_pieces():
    assert cosine_schedule(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert cosine_schedule(100, 100, 1.0, 10) == pytest.approx(0.1)
    g = {"a": np.array([3.0, 4.0])}
    clipped, norm = clip_by_global_norm(g, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.8])
    opt = AdamW(lr=0.1, weight_decay=0.1)
    p = {"w": np.array([1.0]), "bias": np.array([1.0])}
    out = opt.update(p, {"w": np.array([1.0]), "bias": np.array([1.0])})
    # the first Adam step moves by lr; decay applies to weights, not biases
    np.testing.assert_allclose(out["w"], [1.0 * (1 - 0.01) - 0.1], rtol=1e-6)
    np.testing.assert_allclose(out["bias"], [0.9], rtol=1e-6)


def test_forecast_patch_tokens_match_a_loop_over_patches():
    """The window is cut into ceil(L / P) patches, the first sample repeated in front, each patch
    of all channels one token (time-major); the N token states, flattened, feed the correction."""
    from kizzasi_lite.models import architecture

    k = small(input_dim=2, forecast_horizon=4, forecast_lookback=10, forecast_patch=4, seed=3)
    rng = np.random.default_rng(0)
    k.params = {
        key: np.asarray(v) + 0.1 * rng.normal(size=v.shape).astype(v.dtype)
        if key.startswith("forecast.")
        else v
        for key, v in k.params.items()
    }
    z = rng.normal(size=(2, 10, 2)).astype(np.float32)
    got = np.asarray(k._forecast_z(k.params, z))
    p = {key: np.asarray(v, dtype=np.float64) for key, v in k.params.items()}
    padded = np.concatenate([z[:, :1], z[:, :1], z], axis=1)  # 12 samples: 3 patches of 4
    tokens = np.stack([padded[:, 4 * i : 4 * i + 4].reshape(2, 8) for i in range(3)], axis=1)
    emb = tokens @ p["forecast.embed.weight"].T + p["forecast.embed.bias"]
    backbone = {key[9:]: v for key, v in k.params.items() if key.startswith("backbone.")}
    h, _ = architecture(k.arch).forward(
        k.backbone_config, backbone, emb.astype(np.float32), k.zero_state(2)
    )
    corr = np.asarray(h, dtype=np.float64).reshape(2, -1) @ p["forecast.weight"].T
    corr = (corr + p["forecast.bias"]).reshape(2, 4, 2)
    for c in range(2):
        hw = z[:, :, c] @ p["forecast.highway.weight"].T + p["forecast.highway.bias"]
        np.testing.assert_allclose(got[:, :, c], hw + corr[:, :, c], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("revin", [False, True])
def test_forecast_highway_starts_at_its_least_squares_optimum(revin):
    """The highway's start minimizes the training MSE in z units: its gradient there is ~1e-5 of
    the gradient at the untrained (repeat-last) highway, also under RevIN (where the fit is
    weighted by the window's variance)."""
    from kizzasi_lite.autodiff import value_and_grad
    from kizzasi_lite.train.fit import _init_highway, _set_normalizer
    from kizzasi_lite.train.losses import mse

    rng = np.random.default_rng(0)
    t = np.arange(600)
    x = np.sin(t / 7.0)[:, None] * (1 + 0.5 * np.sin(t / 53.0))[:, None] + 0.1 * rng.normal(
        size=(600, 1)
    )
    k = small(input_dim=1, forecast_horizon=5, forecast_lookback=16, revin=revin, dtype="float64")
    _set_normalizer(k, [x])
    before = dict(k.params)
    _init_highway(k, [x], 1)
    z = (x - np.asarray(k.params["normalizer.mean"])) / np.asarray(k.params["normalizer.std"])
    win = np.stack([z[s : s + 21] for s in range(len(z) - 20)])
    keys = ("forecast.highway.weight", "forecast.highway.bias")

    def loss(p):
        return mse(k._forecast_z({**k.params, **p}, win[:, :16]), win[:, 16:])

    def grad_norm(params):
        _, grads = value_and_grad(loss, {key: params[key] for key in keys})
        return np.sqrt(sum(float(np.sum(np.asarray(g) ** 2)) for g in grads.values()))

    assert grad_norm(k.params) < 1e-5 * grad_norm(before)


def test_a_constraint_aware_loss_trains_the_raw_predictions_inside():
    from kizzasi_lite.logic import ConstraintAwareLoss, LessThan
    from kizzasi_lite.train.losses import mse

    x = sine(T=1500)
    over = {}
    for name, loss in (
        ("mse", "mse"),
        ("penalised", ConstraintAwareLoss(mse, LessThan(0.5, 0), 20.0)),
    ):
        k = small()
        k.fit(x, epochs=4, batch_size=8, window=64, loss=loss, verbose=False)
        y = k.forward(x[-300:])  # unguarded: the network's own predictions
        over[name] = float(np.mean(np.maximum(y[:, 0] - 0.5, 0.0)))
    assert over["penalised"] < 0.5 * over["mse"]
    with pytest.raises(ConfigError, match="likelihood"):
        small(head="gaussian").fit(x, loss=lambda p, t: mse(p, t))
    with pytest.raises(ConfigError, match="callable"):
        small().fit(x, loss="rmse")


def test_a_step_whose_gradient_overflows_is_skipped(monkeypatch):
    from kizzasi_lite.train import fit as fit_module

    real, calls = fit_module._Task.gradient, []

    def overflowing(self, keys, batch):
        value, grads = real(self, keys, batch)
        calls.append(1)
        if len(calls) == 2:  # one step's gradient is inf
            grads = {k: g * np.inf for k, g in grads.items()}
        return value, grads

    monkeypatch.setattr(fit_module._Task, "gradient", overflowing)
    k = small()
    history = k.fit(sine(), epochs=2, batch_size=4, window=32, verbose=False)
    assert len(calls) > 2  # training went on after it, from finite weights
    assert np.all(np.isfinite(history["train_loss"])) and np.all(np.isfinite(history["val_loss"]))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in k.params.values())


@pytest.mark.parametrize(
    "options",
    [
        {"window": 0},  # was taken as "no window given": the default, silently
        {"window": 2.5},
        {"patience": 0},  # stopped after the first epoch however it improved
        {"max_steps_per_epoch": -1},  # one step per epoch
        {"lr": float("nan")},  # NaN weights, then the start point kept without a word
        {"lr": -1e-3},
        {"clip": float("nan")},
        {"weight_decay": -0.1},
        {"time_budget": -1.0},
        {"val_fraction": "0.2"},  # a TypeError from a comparison
        {"seed": 1.5},  # a TypeError from NumPy's SeedSequence
    ],
)
def test_fit_rejects_every_bad_number_before_training(options):
    k = small()
    name = next(iter(options))
    with pytest.raises(ConfigError, match=name):
        k.fit(sine(T=200), epochs=1, verbose=False, **options)


def test_fit_takes_numpy_numbers_as_python_ones(tmp_path):
    """Counts and rates of NumPy types (an ``np.int64`` epoch count from a sweep, an
    ``np.float32`` rate) train as the same Python numbers do; they were refused."""
    py = dict(epochs=2, batch_size=4, window=32, lr=3e-3, clip=1.0, val_fraction=0.25, seed=3)
    as_np = {k: (np.int64(v) if isinstance(v, int) else np.float64(v)) for k, v in py.items()}
    as_np["lr"] = np.float32(2**-8)  # exactly representable: the same rate in both runs
    py["lr"] = 2**-8
    a, b = small(), small()
    ha = a.fit(sine(T=400), verbose=False, **py)
    hb = b.fit(sine(T=400), verbose=False, **as_np)
    assert ha == {**hb, "seconds": ha["seconds"]}
    assert all(type(v) is float for v in hb["lr"])
    b.save_pretrained(tmp_path / "m")  # training.json holds Python numbers only
    assert Kizzasi.from_pretrained(tmp_path / "m").info["trained"]


def test_fit_reads_a_path_in_any_format_it_knows(tmp_path):
    """A ``.npy`` path is read as the array it holds (it was parsed as CSV and refused)."""
    x = sine(T=300)
    np.save(tmp_path / "x.npy", x)
    a, b = small(), small()
    ha = a.fit(x, epochs=1, batch_size=4, window=32, verbose=False)
    hb = b.fit(str(tmp_path / "x.npy"), epochs=1, batch_size=4, window=32, verbose=False)
    assert ha == {**hb, "seconds": ha["seconds"]}
    with pytest.raises(InputError, match="suffix '.txt'"):
        small().fit(tmp_path / "x.txt")


def test_an_interrupted_fit_leaves_the_model_as_it_was():
    from kizzasi_lite.train.losses import mse

    k, calls = small(), []

    def loss(pred, target):  # Ctrl-C in the middle of the first epoch
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return mse(pred, target)

    before = dict(k.params)
    with pytest.raises(KeyboardInterrupt):
        k.fit(sine(T=400), epochs=1, window=16, loss=loss, verbose=False)
    assert k.params.keys() == before.keys()
    assert all(k.params[key] is before[key] for key in before)  # normalizer.* included


def test_fit_on_empty_series_says_so_without_numpy_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Mean of empty slice" before the error, until now
        with pytest.raises(InputError, match="training samples"):
            small().fit(np.zeros((0, 2)), verbose=False)


def test_scores_of_an_empty_series_are_empty():
    k = small()
    s = k.score(np.zeros((0, 2)))
    assert s["score"].shape == (0,) and s["nll"].shape == (0,)
    assert s["prediction"].shape == (0, 2) and s["sigma"].shape == (0, 2)
    assert k.detect(np.zeros((0, 2)), threshold=1.0).shape == (0,)


def test_update_detect_and_fit_refuse_arguments_of_the_wrong_kind():
    k = small()
    k.step(np.ones(2))
    before = {key: np.array(v) for key, v in k.state.items()}
    params = dict(k.params)
    for options in ({"lr": float("nan")}, {"lr": -1.0}, {"every": 1.5}, {"buffer": 8.5},
                    {"buffer": None}, {"every": "2"}):  # fmt: skip
        # lr NaN made every weight NaN; the others were TypeErrors or silently accepted
        with pytest.raises(ConfigError, match=next(iter(options))):
            k.update(np.ones(2), **options)
    with pytest.raises(InputError):  # ValueError from np.shape
        k.update([[1.0, 2.0], [1.0]])
    for key, v in k.state.items():
        np.testing.assert_array_equal(np.asarray(v), before[key])
    assert all(k.params[key] is params[key] for key in params)
    for threshold in ("abc", [1.0], float("nan"), True):  # ValueError / TypeError / nothing flagged
        with pytest.raises(InputError, match="threshold"):
            k.detect(np.ones((5, 2)), threshold)
    assert k.detect(np.ones((5, 2)), np.float32(-1.0)).tolist() == [0, 1, 2, 3, 4]
    for series in (None, 1.0, True, object()):  # TypeError: not iterable
        with pytest.raises(InputError, match="series must be"):
            k.fit(series, verbose=False)


def test_fit_takes_plain_lists_and_checks_freeze_and_loss():
    x = sine(T=120)
    for series, d in ((x.tolist(), 2), (x[:, 0].tolist(), 1)):  # were "series[0] ... got (2,)"
        k = small(input_dim=d)
        k.fit(series, epochs=1, window=16, verbose=False)
        assert k.info["trained"]
    k = small()
    for freeze in (None, 5, ("head", 3)):  # TypeError: not iterable
        with pytest.raises(ConfigError, match="freeze"):
            k.fit(x, epochs=1, freeze=freeze, verbose=False)
    with pytest.raises(ConfigError, match="loss"):  # TypeError: unhashable
        k.fit(x, epochs=1, loss=["mse"], verbose=False)
    before = {key: np.array(v) for key, v in k.params.items()}
    # one prefix, not its letters ('b' froze the whole backbone)
    k.fit(x, epochs=1, window=16, freeze="backbone.layers", val_fraction=0, verbose=False)
    layers = [key for key in before if key.startswith("backbone.layers")]
    assert all(np.array_equal(before[key], k.params[key]) for key in layers)
    assert not np.array_equal(before["backbone.norm_f.weight"], k.params["backbone.norm_f.weight"])


def test_scores_of_an_input_that_overflows_are_refused_and_forecast_takes_numpy_ints():
    k = small(input_dim=1, forecast_horizon=4, forecast_lookback=8)
    k.params["head.weight"] = k.xp.asarray(np.ones((1, 16), np.float32))
    with pytest.raises(InputError, match="overflowed"):  # were NaN scores
        k.score(np.array([[3e38], [-3e38], [3e38]]))
    assert k.forecast(np.ones((10, 1)), np.int64(4)).shape == (4, 1)  # "must be in [1, 4], got 4"
