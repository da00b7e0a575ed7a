"""Central finite differences against the autodiff gradients, in float64."""

from __future__ import annotations

import numpy as np

from kizzasi_lite.autodiff import value_and_grad
from kizzasi_lite.backends import namespace, to_numpy


def check_grad(fn, params, *, entries=3, eps=1e-3, rtol=1e-5, seed=0, keys=None):
    """Compare ``value_and_grad(fn, params)`` with central differences on a few entries of every
    parameter (all of them when the parameter is small). Returns the worst relative error."""
    rng = np.random.default_rng(seed)
    _, grads = value_and_grad(fn, params)
    # entries far below the largest gradient are compared against it (finite differences
    # cannot resolve them relative to themselves)
    top = max(float(np.max(np.abs(to_numpy(g)))) for g in grads.values())
    worst = 0.0
    for key in keys or sorted(params):
        p = to_numpy(params[key]).astype(np.float64)
        xp = namespace(params[key])
        g = to_numpy(grads[key])
        assert g.shape == p.shape, (key, g.shape, p.shape)
        flat = p.reshape(-1)
        picks = range(flat.size) if flat.size <= entries else rng.choice(flat.size, entries, False)
        scale = max(float(np.max(np.abs(g))), 1e-2 * top, 1e-8)
        for i in picks:
            # Richardson extrapolation of two central differences: error O(eps^4), so eps can
            # stay large enough for round-off not to matter
            d = [_central(fn, params, key, flat, p.shape, xp, i, h) for h in (eps / 2, eps)]
            fd = (4 * d[0] - d[1]) / 3
            a = float(g.reshape(-1)[i])
            err = abs(a - fd) / max(abs(fd), abs(a), 1e-3 * scale)
            worst = max(worst, err)
            assert err < rtol, (
                f"{key}[{i}]: autodiff {a!r} vs finite difference {fd!r} (rel {err:.2e})"
            )
    return worst


def _central(fn, params, key, flat, shape, xp, i, h):
    plus, minus = flat.copy(), flat.copy()
    plus[i] += h
    minus[i] -= h
    f_plus = float(to_numpy(fn({**params, key: xp.asarray(plus.reshape(shape))})))
    f_minus = float(to_numpy(fn({**params, key: xp.asarray(minus.reshape(shape))})))
    return (f_plus - f_minus) / (2 * h)
