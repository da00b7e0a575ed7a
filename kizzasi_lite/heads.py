"""The predictor's math around the backbone, as pure functions of a parameter dict.

Inference calls them with backend arrays; training calls them with autodiff tensors. Units: ``x``
is in the user's units; ``z = (x - mean) / std`` is the standardized signal (statistics of the
training data, ``normalizer.*``); heads predict in ``z`` units.

Parameters (keys of the flat dict, shapes)::

    normalizer.mean, normalizer.std            (Din,)
    in_proj.weight (D, Din), in_proj.bias (D,)
    backbone.<architecture keys>
    head.weight (K * Dout, D), head.bias (K * Dout,)     K = 1 (point) or 2 (gaussian: mean, scale)
    when forecast_horizon H > 0, with L = forecast_lookback, P = forecast_patch, N = ceil(L / P):
    forecast.embed.weight (D, P * Din), forecast.embed.bias (D,)     patch tokens -> backbone
    forecast.weight (H * Dout, N * D), forecast.bias (H * Dout,)     flattened token states -> H
    forecast.highway.weight (H, L), forecast.highway.bias (H,)      per-channel linear map
"""

from __future__ import annotations

from typing import Any

from kizzasi_lite.backends import namespace
from kizzasi_lite.models import architecture
from kizzasi_lite.nn import linear, softplus

MIN_SCALE = 1e-3  # floor of the Gaussian head's standard deviation, in z units
REVIN_EPS = 1e-5


def standardize(params: dict, x: Any) -> Any:
    """User units -> z units (per channel)."""
    return (x - params["normalizer.mean"]) / params["normalizer.std"]


def unstandardize(params: dict, z: Any, scale: bool = False) -> Any:
    """z units -> user units; ``scale=True`` converts a standard deviation (no offset)."""
    if scale:
        return z * params["normalizer.std"]
    return z * params["normalizer.std"] + params["normalizer.mean"]


def backbone_params(params: dict) -> dict:
    """The ``backbone.*`` entries with the prefix stripped."""
    n = len("backbone.")
    return {k[n:]: v for k, v in params.items() if k.startswith("backbone.")}


def next_step(
    arch: str, cfg: Any, params: dict, z: Any, state: dict, *, residual: bool, gaussian: bool
) -> tuple[Any, Any, dict]:
    """One step: ``z`` (B, Din) -> mean (B, Dout), scale (B, Dout) or None, next state."""
    h, state = architecture(arch).step(cfg, backbone_params(params), _embed(params, z), state)
    mean, scale = _heads(params, h, z, residual, gaussian)
    return mean, scale, state


def next_sequence(
    arch: str, cfg: Any, params: dict, z: Any, state: dict, *, residual: bool, gaussian: bool
) -> tuple[Any, Any, dict]:
    """A sequence: ``z`` (B, T, Din) -> mean (B, T, Dout), scale or None, final state."""
    h, state = architecture(arch).forward(cfg, backbone_params(params), _embed(params, z), state)
    mean, scale = _heads(params, h, z, residual, gaussian)
    return mean, scale, state


def _embed(params: dict, z: Any) -> Any:
    return linear(z, params["in_proj.weight"], params["in_proj.bias"])  # (..., D)


def _heads(params: dict, h: Any, z: Any, residual: bool, gaussian: bool) -> tuple[Any, Any]:
    out = linear(h, params["head.weight"], params["head.bias"])  # (..., K * Dout)
    if gaussian:
        d = out.shape[-1] // 2
        mean, raw = out[..., :d], out[..., d:]
        scale = softplus(raw) + MIN_SCALE  # (..., Dout)
    else:
        mean, scale = out, None
    if residual:
        mean = mean + z  # predict the increment over the current sample
    return mean, scale


def forecast_direct(
    arch: str, cfg: Any, params: dict, z_window: Any, state: dict, *, patch: int, revin: bool
) -> Any:
    """Direct multi-horizon forecast from a look-back window.

    ``z_window`` (B, L, C) in z units, with C == Dout (the highway works per channel). Returns
    (B, H, C): a linear map of the (instance-normalized) window per channel, plus a correction
    read from the backbone's states over patch tokens (PatchTST's tokens and flatten head, Nie et
    al. ICLR 2023): the window is cut into N = ceil(L / P) patches of ``patch`` samples (the
    first sample repeated in front when P does not divide L), each patch of all channels is one
    token, and the N token states, flattened, map linearly to the H x C correction.
    """
    xp = namespace(z_window)
    b, length, c = z_window.shape
    if revin:
        mu = xp.mean(z_window, axis=1, keepdims=True)  # (B, 1, C)
        var = xp.mean((z_window - mu) * (z_window - mu), axis=1, keepdims=True)  # (B, 1, C)
        sd = xp.sqrt(var + REVIN_EPS)  # (B, 1, C)
        u = (z_window - mu) / sd  # (B, L, C)
    else:
        u = z_window
    n_tok = -(-length // patch)
    pad = n_tok * patch - length
    padded = u
    if pad:
        padded = xp.concat([xp.broadcast_to(u[:, :1, :], (b, pad, c)), u], axis=1)
    tokens = xp.reshape(padded, (b, n_tok, patch * c))  # (B, N, P*C), time-major inside a patch
    emb = linear(tokens, params["forecast.embed.weight"], params["forecast.embed.bias"])
    h, _ = architecture(arch).forward(cfg, backbone_params(params), emb, state)  # (B, N, D)
    xp = namespace(h, u)  # an autodiff namespace when either carries gradients
    flat = xp.reshape(h, (b, n_tok * h.shape[-1]))  # (B, N*D)
    w = params["forecast.highway.weight"]  # (H, L)
    horizon = w.shape[0]
    highway = linear(xp.permute_dims(u, (0, 2, 1)), w, params["forecast.highway.bias"])  # (B, C, H)
    corr = linear(flat, params["forecast.weight"], params["forecast.bias"])  # (B, H*C)
    xp = namespace(highway, corr)
    pred = xp.permute_dims(highway, (0, 2, 1)) + xp.reshape(corr, (b, horizon, c))  # (B, H, C)
    if revin:
        pred = pred * sd + mu
    return pred
