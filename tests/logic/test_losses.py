"""Constraint losses: gradients, multipliers, and training that respects a bound before projection."""

from __future__ import annotations

import numpy as np

from kizzasi_lite.autodiff import value_and_grad
from kizzasi_lite.backends import get_namespace, namespace, to_numpy
from kizzasi_lite.logic import (
    ConstraintAwareLoss,
    GuardrailSet,
    LagrangianRelaxation,
    LessThan,
    Linear,
    RateLimit,
)
from tests.gradcheck import check_grad


def mse(pred, target):
    xp = namespace(pred)
    d = pred - target
    return xp.mean(d * d)


def test_constraint_aware_loss_gradients(np_xp):
    rng = np.random.default_rng(0)
    rails = GuardrailSet().add([LessThan(0.5), Linear([1.0, -1.0], 0.2), RateLimit(0.3)])
    target = np_xp.asarray(rng.normal(size=(4, 6, 2)))
    loss = ConstraintAwareLoss(mse, rails, weight=3.0)
    params = {"p": np_xp.asarray(rng.normal(size=(4, 6, 2)))}  # a (B, T, C) sequence
    check_grad(lambda q: loss(q["p"], target), params, entries=16, rtol=1e-5)
    value = float(loss(params["p"], target))
    expect = float(mse(params["p"], target)) + 3.0 * float(
        np.mean(to_numpy(rails.violation(params["p"], squared=True)))
    )
    assert abs(value - expect) < 1e-12


def test_lagrangian_multipliers_rise_while_violated(np_xp):
    relax = LagrangianRelaxation(LessThan(1.0), learning_rate=0.5)
    (name,) = relax.multipliers
    assert relax.multipliers[name] == 0.0
    over = np_xp.asarray([[2.0], [1.5]])
    for k in range(1, 4):
        v = relax.update(over)
        assert v[name] == 0.75 and relax.multipliers[name] == 0.5 * 0.75 * k
    under = np_xp.asarray([[0.0], [0.5]])
    relax.update(under)
    assert relax.multipliers[name] == 0.5 * 0.75 * 3  # stays, never below zero
    penalty, grads = value_and_grad(lambda q: relax(q["y"]), {"y": over})
    assert float(penalty) == relax.multipliers[name] * 0.75
    np.testing.assert_allclose(to_numpy(grads["y"]), [[0.5625], [0.5625]])


def _train(loss_fn, x, t, steps=300, lr=0.05, relax=None):
    """Adam on a linear map ``y = x W + b`` through the autodiff namespace."""
    xp = get_namespace("numpy")
    params = {"W": xp.zeros((x.shape[1], 1)), "b": xp.zeros((1,))}
    m = {k: xp.zeros_like(v) for k, v in params.items()}
    v = {k: xp.zeros_like(p) for k, p in params.items()}
    for i in range(1, steps + 1):

        def objective(p):
            pred = x @ p["W"] + p["b"]
            out = loss_fn(pred, t)
            return out + relax(pred) if relax is not None else out

        _, g = value_and_grad(objective, params)
        for k in params:
            m[k] = 0.9 * m[k] + 0.1 * g[k]
            v[k] = 0.999 * v[k] + 0.001 * g[k] * g[k]
            step = (m[k] / (1 - 0.9**i)) / (xp.sqrt(v[k] / (1 - 0.999**i)) + 1e-8)
            params[k] = params[k] - lr * step
        if relax is not None:
            relax.update(x @ params["W"] + params["b"])
    return params


def test_training_with_the_constraint_loss_violates_the_bound_less_often():
    xp = get_namespace("numpy")
    rng = np.random.default_rng(0)
    w_true = np.array([[0.6], [-0.4], [0.3]])

    def data(n):
        x = rng.normal(size=(n, 3))
        return xp.asarray(x), xp.asarray(0.9 + x @ w_true + 0.1 * rng.normal(size=(n, 1)))

    x, t = data(512)
    x_test, _ = data(2000)
    bound = GuardrailSet().add(LessThan(1.0))
    rates = {}
    plain = _train(mse, x, t)
    hinge = _train(ConstraintAwareLoss(mse, bound, weight=20.0, squared=False), x, t)
    lagr = _train(mse, x, t, relax=LagrangianRelaxation(bound, learning_rate=5.0))
    for name, p in [("plain", plain), ("penalty", hinge), ("lagrangian", lagr)]:
        pred = to_numpy(x_test @ p["W"] + p["b"])
        rates[name] = float(np.mean(pred > 1.0 + 1e-3))
    assert rates["plain"] > 0.3  # the targets often exceed the bound
    assert rates["penalty"] < rates["plain"] / 8  # far less often, before any projection
    assert rates["lagrangian"] < rates["plain"] / 8
