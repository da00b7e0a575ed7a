"""S4D: a stack of diagonal structured state-space layers (S4D-Lin / S4D-Inv), pre-norm residual.

Glossary (paper symbol -> code name):

- H (channels = model width)              -> ``cfg.d_model``, axis ``H``
- N (state size, real numbers per channel) -> ``cfg.d_state``; held as N/2 complex modes ``N2``
  (the other N/2 are their complex conjugates, hence the ``2 * Re`` below)
- Delta (step size, one per channel)       -> ``dt = exp(kernel.log_dt)``, log-uniform in
  ``[dt_min, dt_max]`` at init
- A = -exp(log_A_real) + i A_imag          -> ``kernel.log_A_real``, ``kernel.A_imag``;
  S4D-Lin: ``A_n = -1/2 + i pi n``; S4D-Inv: ``A_n = -1/2 + i N/pi (N/(2n+1) - 1)``
- A_bar = exp(Delta A)  (ZOH)              -> ``da_re, da_im``
- B_bar = (exp(Delta A) - 1) / A  (B = 1)  -> ``db_re, db_im``
- C (complex, stored as a real view)       -> ``kernel.C`` of shape (H, N/2, 2), last axis (re, im)
- D (skip)                                 -> ``D``
- K_bar_l = 2 Re sum_n C_n B_bar_n A_bar_n^l -> :func:`kernel`
- x_t (complex state)                      -> ``h_re, h_im`` of shape (B, H, N/2)
- u (layer input), y (layer output)        -> ``u``, ``y``

One S4D layer (exactly the state-spaces reference ``S4D.forward`` with dropout 0):
``y = GLU(W gelu(K_bar * u + D u) + b)`` where ``*`` is causal convolution, ``gelu`` the exact
(erf) GELU, ``W, b = output_linear.0`` (a Conv1d(H, 2H, 1)) and GLU halves the 2H channels.

The reference layer has no stack; ours is ``x = x + S4D(LayerNorm(x))`` per layer (pre-norm with
LayerNorm, weight and bias, as the state-spaces residual blocks) and a final LayerNorm ``norm_f``.

Sequence path: the convolution is exact and chunked. Inside a chunk of ``chunk_size`` steps the
output is a Toeplitz product with ``K_bar``; the state entering the chunk adds
``2 Re sum_n C_n A_bar_n^(t+1) h_n``, and the state leaving it is computed in closed form. Powers
``A_bar^l = exp(l Delta A)`` are evaluated directly (exp, cos, sin), never by division, so any decay
works. The step path is the ZOH recurrence ``h = A_bar h + B_bar u``, ``y = 2 Re(C h) + D u``.
Complex numbers are pairs of real arrays throughout.

References:
- A. Gu, A. Gupta, K. Goel, C. Re, "On the Parameterization and Initialization of Diagonal State
  Space Models", NeurIPS 2022 (arXiv:2206.11893).
- state-spaces/s4, ``models/s4/s4d.py`` (S4DKernel, S4D) and ``src/models/sequence/kernels/dplr.py``
  (the S4D-Inv formula).
- W. J. Cody / S. Moshier (Cephes ``ndtr.c``): the rational approximations used for ``erfc``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from kizzasi_lite.backends import namespace
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.models._common import (
    DictConfig,
    check_numbers,
    check_positive_int,
    find_prefix,
    merge_found,
    need,
    prepared,
    resolve_dtype,
    select_params,
)
from kizzasi_lite.nn import layer_norm, linear, sigmoid

INITS = ("lin", "inv")


@dataclass(frozen=True)
class Config(DictConfig):
    """S4D stack hyper-parameters (names follow the state-spaces reference ``S4D``/``S4DKernel``).

    ``d_model`` H, ``d_state`` N (even: N/2 complex modes), ``n_layer`` residual blocks,
    ``dt_min``/``dt_max`` the range of the log-uniform step size, ``init`` "lin" (S4D-Lin) or
    "inv" (S4D-Inv), ``layer_norm_epsilon`` of the LayerNorms, ``chunk_size`` the length of the
    chunks of the sequence path (speed only, not the result).
    """

    d_model: int = 64
    d_state: int = 64
    n_layer: int = 4
    dt_min: float = 0.001
    dt_max: float = 0.1
    init: str = "lin"
    layer_norm_epsilon: float = 1e-5
    chunk_size: int = 64

    def __post_init__(self) -> None:
        for name in ("d_model", "d_state", "n_layer", "chunk_size"):
            check_positive_int(name, getattr(self, name))
        check_numbers(self, "dt_min", "dt_max", "layer_norm_epsilon")
        if self.d_state % 2:
            raise ConfigError(f"d_state must be even (N/2 complex modes), got {self.d_state}")
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ConfigError(
                f"dt_min must satisfy 0 < dt_min <= dt_max, got dt_min={self.dt_min}, "
                f"dt_max={self.dt_max}"
            )
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {self.init!r}")
        if not self.layer_norm_epsilon > 0.0:
            raise ConfigError(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon}")


# ---------------------------------------------------------------------------------------------
# parameters


def _param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter name (checkpoint key) and its shape."""
    H, N2 = cfg.d_model, cfg.d_state // 2
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        shapes[p + "kernel.log_dt"] = (H,)
        shapes[p + "kernel.C"] = (H, N2, 2)
        shapes[p + "kernel.log_A_real"] = (H, N2)
        shapes[p + "kernel.A_imag"] = (H, N2)
        shapes[p + "D"] = (H,)
        shapes[p + "output_linear.0.weight"] = (2 * H, H, 1)
        shapes[p + "output_linear.0.bias"] = (2 * H,)
        shapes[p + "norm.weight"] = (H,)
        shapes[p + "norm.bias"] = (H,)
    shapes["norm_f.weight"] = (H,)
    shapes["norm_f.bias"] = (H,)
    return shapes


def _a_imag(cfg: Config, xp: Any, dtype: Any) -> Any:
    """Imaginary parts of A at init, (N/2,): S4D-Lin ``pi n`` or S4D-Inv ``N/pi (N/(2n+1) - 1)``."""
    n = xp.arange(cfg.d_state // 2, dtype=dtype)  # (N2,)
    if cfg.init == "lin":
        return math.pi * n
    N = float(cfg.d_state)
    return N / math.pi * (N / (2.0 * n + 1.0) - 1.0)


def init_params(cfg: Config, rng: Any, dtype: Any = None) -> dict[str, Any]:
    """Fresh weights as the reference initialises them; keys are the checkpoint names.

    ``rng`` is a :class:`kizzasi_lite.backends.random.Generator`; ``dtype`` a dtype of its
    namespace or its name (default float32).
    """
    xp = rng.xp
    dtype = resolve_dtype(xp, dtype)
    H, N2 = cfg.d_model, cfg.d_state // 2
    bound = 1.0 / math.sqrt(H)  # torch Conv1d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    zeros_hn = xp.zeros((H, N2), dtype=dtype)  # (H, N2)
    params: dict[str, Any] = {}
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        lo, hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
        params[p + "kernel.log_dt"] = rng.uniform((H,), lo, hi, dtype=dtype)  # (H,)
        # torch.randn(cfloat): real and imaginary parts each of variance 1/2
        params[p + "kernel.C"] = rng.normal((H, N2, 2), std=math.sqrt(0.5), dtype=dtype)
        params[p + "kernel.log_A_real"] = zeros_hn + math.log(0.5)  # (H, N2)
        params[p + "kernel.A_imag"] = zeros_hn + _a_imag(cfg, xp, dtype)  # (H, N2)
        params[p + "D"] = rng.normal((H,), dtype=dtype)  # (H,)
        w = rng.uniform((2 * H, H, 1), -bound, bound, dtype=dtype)  # (2H, H, 1)
        params[p + "output_linear.0.weight"] = w
        params[p + "output_linear.0.bias"] = rng.uniform((2 * H,), -bound, bound, dtype=dtype)
        params[p + "norm.weight"] = xp.ones((H,), dtype=dtype)  # (H,)
        params[p + "norm.bias"] = xp.zeros((H,), dtype=dtype)  # (H,)
    params["norm_f.weight"] = xp.ones((H,), dtype=dtype)  # (H,)
    params["norm_f.bias"] = xp.zeros((H,), dtype=dtype)  # (H,)
    return params


# ---------------------------------------------------------------------------------------------
# state


def init_state(cfg: Config, batch: int, *, xp: Any, dtype: Any = None) -> dict[str, Any]:
    """Zero state: per layer the complex SSM state as ``h_re``, ``h_im`` of shape (B, H, N/2)."""
    dtype = resolve_dtype(xp, dtype)
    shape = (batch, cfg.d_model, cfg.d_state // 2)
    state = {}
    for i in range(cfg.n_layer):
        state[f"layers.{i}.h_re"] = xp.zeros(shape, dtype=dtype)  # (B, H, N2)
        state[f"layers.{i}.h_im"] = xp.zeros(shape, dtype=dtype)  # (B, H, N2)
    return state


def state_numel(cfg: Config) -> int:
    """Numbers in the state of one stream: ``n_layer * d_model * d_state`` (N/2 complex each)."""
    return cfg.n_layer * cfg.d_model * cfg.d_state


# ---------------------------------------------------------------------------------------------
# the diagonal SSM


def _discretize(params: dict[str, Any], prefix: str) -> dict[str, Any]:
    """ZOH discretisation of one layer: ``Delta A``, ``A_bar``, ``B_bar`` and ``C`` as re/im pairs.

    All arrays are (H, N/2). ``exp(Delta A) - 1`` uses ``expm1`` so small steps keep precision.
    """
    xp = namespace(params[prefix + "D"])
    dt = xp.exp(params[prefix + "kernel.log_dt"])[:, None]  # (H, 1)
    a_re = -xp.exp(params[prefix + "kernel.log_A_real"])  # (H, N2)
    a_im = params[prefix + "kernel.A_imag"]  # (H, N2)
    x, y = a_re * dt, a_im * dt  # (H, N2): Delta A
    r = xp.exp(x)  # (H, N2)
    da_re, da_im = r * xp.cos(y), r * xp.sin(y)  # (H, N2): A_bar
    s = xp.sin(0.5 * y)  # (H, N2)
    n_re = xp.expm1(x) * xp.cos(y) - 2.0 * s * s  # (H, N2): Re(exp(Delta A) - 1)
    den = a_re * a_re + a_im * a_im  # (H, N2), > 0 since Re A < 0
    db_re = (n_re * a_re + da_im * a_im) / den  # (H, N2)
    db_im = (da_im * a_re - n_re * a_im) / den  # (H, N2)
    c = params[prefix + "kernel.C"]  # (H, N2, 2)
    return dict(x=x, y=y, da_re=da_re, da_im=da_im, db_re=db_re, db_im=db_im,
                c_re=c[..., 0], c_im=c[..., 1])  # fmt: skip


def _powers(ssm: dict[str, Any], length: int) -> tuple[Any, Any]:
    """``A_bar^l = exp(l Delta A)`` for ``l = 0 .. length-1``: re, im of shape (H, N/2, length)."""
    xp = namespace(ssm["x"])
    l = xp.arange(length, dtype=ssm["x"].dtype)  # (L,)
    mag = xp.exp(ssm["x"][..., None] * l)  # (H, N2, L)
    ang = ssm["y"][..., None] * l  # (H, N2, L)
    return mag * xp.cos(ang), mag * xp.sin(ang)  # (H, N2, L) each


def _kernel_from(ssm: dict[str, Any], p_re: Any, p_im: Any) -> Any:
    """``K_bar_l = 2 Re sum_n C_n B_bar_n A_bar_n^l`` from powers (H, N/2, L) -> (H, L)."""
    xp = namespace(p_re)
    cb_re = ssm["c_re"] * ssm["db_re"] - ssm["c_im"] * ssm["db_im"]  # (H, N2)
    cb_im = ssm["c_re"] * ssm["db_im"] + ssm["c_im"] * ssm["db_re"]  # (H, N2)
    return 2.0 * xp.sum(cb_re[..., None] * p_re - cb_im[..., None] * p_im, axis=1)  # (H, L)


def kernel(params: dict[str, Any], prefix: str, length: int) -> Any:
    """The convolution kernel ``K_bar`` (H, length) of the layer whose keys start with ``prefix``.

    Equals the reference ``S4DKernel.forward(L=length)``.
    """
    ssm = _discretize(params, prefix)
    return _kernel_from(ssm, *_powers(ssm, length))


def _toeplitz(k: Any) -> Any:
    """Lower-triangular Toeplitz matrices ``T[h, t, s] = k[h, t - s]`` (0 for s > t): (H, L, L)."""
    # Tiling v = [k, 0 * L] and re-reading it in rows of 2L - 1 gives M[i, j] = v[(j - i) mod 2L],
    # i.e. k[j - i] for j >= i and 0 below; its transpose is T. Only concat/reshape/slices, so
    # the autodiff namespace differentiates it (it has no rule for ``take``).
    xp = namespace(k)
    H, L = k.shape
    v = xp.concat([k, xp.zeros((H, L), dtype=k.dtype)], axis=1)  # (H, 2L)
    tiled = xp.reshape(xp.broadcast_to(v[:, None, :], (H, L, 2 * L)), (H, 2 * L * L))
    m = xp.reshape(tiled[:, : L * (2 * L - 1)], (H, L, 2 * L - 1))  # (H, L, 2L-1)
    return xp.matrix_transpose(m[:, :, :L])  # (H, L, L)


def ssm_forward(
    params: dict[str, Any], prefix: str, u: Any, h_re: Any, h_im: Any, chunk_size: int = 64
) -> tuple[Any, Any, Any]:
    """The SSM part of one layer over a sequence (without ``D``): ``K_bar * u`` plus the state.

    ``u`` (B, T, H); ``h_re``, ``h_im`` (B, H, N/2) the state before ``u``. Returns ``y``
    (B, T, H) and the state after the last step. Exact chunked convolution (see module doc).
    """
    xp = namespace(u, params[prefix + "D"])
    T = u.shape[1]
    if T == 0:
        return u, h_re, h_im
    ssm = _discretize(params, prefix)
    L = min(chunk_size, T)
    p_re, p_im = _powers(ssm, L + 1)  # (H, N2, L+1)
    toe = _toeplitz(_kernel_from(ssm, p_re[..., :L], p_im[..., :L]))  # (H, L, L)
    c_re, c_im = ssm["c_re"][..., None], ssm["c_im"][..., None]  # (H, N2, 1)
    m_re = c_re * p_re[..., 1:] - c_im * p_im[..., 1:]  # (H, N2, L): C A_bar^(t+1)
    m_im = c_re * p_im[..., 1:] + c_im * p_re[..., 1:]  # (H, N2, L)
    db_re, db_im = ssm["db_re"][..., None], ssm["db_im"][..., None]  # (H, N2, 1)
    ys = []
    for t0 in range(0, T, L):
        c = min(L, T - t0)
        u_h = xp.permute_dims(u[:, t0 : t0 + c, :], (2, 0, 1))  # (H, B, c)
        hr = xp.permute_dims(h_re, (1, 0, 2))  # (H, B, N2)
        hi = xp.permute_dims(h_im, (1, 0, 2))  # (H, B, N2)
        y = xp.matmul(u_h, xp.matrix_transpose(toe[:, :c, :c]))  # (H, B, c)
        y = y + 2.0 * (xp.matmul(hr, m_re[..., :c]) - xp.matmul(hi, m_im[..., :c]))  # (H, B, c)
        ys.append(xp.permute_dims(y, (1, 2, 0)))  # (B, c, H)
        # state after the chunk: A_bar^c h + sum_s A_bar^(c-1-s) B_bar u_s
        q_re = xp.flip(p_re[..., :c], axis=-1)  # (H, N2, c)
        q_im = xp.flip(p_im[..., :c], axis=-1)  # (H, N2, c)
        g_re = q_re * db_re - q_im * db_im  # (H, N2, c)
        g_im = q_re * db_im + q_im * db_re  # (H, N2, c)
        in_re = xp.matmul(u_h, xp.matrix_transpose(g_re))  # (H, B, N2)
        in_im = xp.matmul(u_h, xp.matrix_transpose(g_im))  # (H, B, N2)
        dc_re, dc_im = p_re[:, None, :, c], p_im[:, None, :, c]  # (H, 1, N2): A_bar^c
        new_re = dc_re * hr - dc_im * hi + in_re  # (H, B, N2)
        new_im = dc_re * hi + dc_im * hr + in_im  # (H, B, N2)
        h_re = xp.permute_dims(new_re, (1, 0, 2))  # (B, H, N2)
        h_im = xp.permute_dims(new_im, (1, 0, 2))  # (B, H, N2)
    return xp.concat(ys, axis=1), h_re, h_im  # (B, T, H)


def ssm_step(
    params: dict[str, Any], prefix: str, u: Any, h_re: Any, h_im: Any
) -> tuple[Any, Any, Any]:
    """One ZOH step (without ``D``): ``h = A_bar h + B_bar u``, ``y = 2 Re sum_n C_n h_n``.

    ``u`` (B, H); ``h_re``, ``h_im`` (B, H, N/2). Returns ``y`` (B, H) and the new state.
    """
    return _ssm_update(_discretize(params, prefix), u, h_re, h_im)


def _ssm_update(ssm: dict[str, Any], u: Any, h_re: Any, h_im: Any) -> tuple[Any, Any, Any]:
    """:func:`ssm_step` on a discretised layer ``ssm`` (``da``, ``db``, ``c`` re/im, (H, N/2))."""
    xp = namespace(u, ssm["da_re"])
    uu = u[..., None]  # (B, H, 1)
    new_re = ssm["da_re"] * h_re - ssm["da_im"] * h_im + ssm["db_re"] * uu  # (B, H, N2)
    new_im = ssm["da_re"] * h_im + ssm["da_im"] * h_re + ssm["db_im"] * uu  # (B, H, N2)
    y = 2.0 * xp.sum(ssm["c_re"] * new_re - ssm["c_im"] * new_im, axis=-1)  # (B, H)
    return y, new_re, new_im


def _prepare_step(cfg: Config, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Per layer, the discretised SSM a step uses (cached by ``prepared``): new arrays only."""
    keys = ("da_re", "da_im", "db_re", "db_im", "c_re", "c_im")
    layers = []
    for i in range(cfg.n_layer):
        ssm = _discretize(params, f"layers.{i}.")
        layers.append({k: ssm[k] * 1.0 for k in keys})  # C's parts are views: copied
    return layers


# ---------------------------------------------------------------------------------------------
# pointwise parts: exact GELU and the GLU output transform

# Cephes ndtr.c coefficients: erf on |z| < 1, erfc on 1 <= |z| < 8 and on |z| >= 8
# fmt: off
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)
_ERFC_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
           6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_ERFC_S = (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
           1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)
# fmt: on


@functools.cache
def _coefficients(xp: Any, dtype: Any, rows: tuple[tuple[float, ...], ...], ndim: int) -> Any:
    """The rows as one array (len(rows), n, 1 * ndim), shorter rows padded with leading zeros;
    made once per namespace, dtype and rows."""
    n = max(map(len, rows))
    padded = [[0.0] * (n - len(r)) + list(r) for r in rows]
    return xp.reshape(xp.asarray(padded, dtype=dtype), (len(rows), n) + (1,) * ndim)


def _polyvals(rows: tuple[tuple[float, ...], ...], x: Any) -> Any:
    """Horner's rule for several polynomials of one argument at once (highest power first):
    (len(rows), *x.shape). Leading zeros padding the shorter rows leave the values exact; one
    pair of array calls per power serves all the rows."""
    c = _coefficients(namespace(x), x.dtype, rows, x.ndim)  # (k, n, 1, ...)
    y = x * c[:, 0, ...] + c[:, 1, ...]  # (k, ...); x on the left, for autodiff tensors
    for j in range(2, c.shape[1]):
        y = y * x + c[:, j, ...]
    return y


def erfc(z: Any) -> Any:
    """Complementary error function, elementwise, to double precision (Cephes' approximations).

    The array API standard has no ``erf``; this uses only exp, clip and where, and evaluates
    the numerators and denominators of a range together (:func:`_polyvals`).
    """
    xp = namespace(z)
    az = xp.abs(z)  # (...) like z, and so is every array below
    zs = xp.clip(z, -1.0, 1.0)  # each branch sees only its own range: no overflow, no warnings
    small = _polyvals((_ERF_T, _ERF_U), zs * zs)  # (2, ...)
    erf_small = zs * small[0, ...] / small[1, ...]
    zb = xp.clip(az, 1.0, 30.0)  # erfc(30) underflows to 0 in float64
    big = _polyvals((_ERFC_P, _ERFC_Q, _ERFC_R, _ERFC_S), zb)  # (4, ...)
    tail = xp.exp(-zb * zb) * xp.where(
        zb < 8.0, big[0, ...] / big[1, ...], big[2, ...] / big[3, ...]
    )  # erfc(|z|)
    tail = xp.where(z < 0.0, 2.0 - tail, tail)
    return xp.where(az < 1.0, 1.0 - erf_small, tail)


def gelu(x: Any) -> Any:
    """Exact GELU ``x Phi(x) = x/2 erfc(-x/sqrt 2)`` (torch ``nn.GELU()``), precise for x << 0."""
    return 0.5 * x * erfc(x * (-1.0 / math.sqrt(2.0)))  # (...) like x


def _output(params: dict[str, Any], prefix: str, y: Any) -> Any:
    """``GLU(Conv1d(H, 2H, 1)(gelu(y)))`` on channels-last ``y`` (..., H) -> (..., H)."""
    w = params[prefix + "output_linear.0.weight"]  # (2H, H, 1)
    z = linear(gelu(y), w[..., 0], params[prefix + "output_linear.0.bias"])  # (..., 2H)
    H = w.shape[1]
    return z[..., :H] * sigmoid(z[..., H:])  # (..., H)


def layer_forward(
    params: dict[str, Any], prefix: str, u: Any, h_re: Any, h_im: Any, chunk_size: int = 64
) -> tuple[Any, Any, Any]:
    """One S4D layer (the reference ``S4D.forward``) on ``u`` (B, T, H) from state ``h``."""
    y, h_re, h_im = ssm_forward(params, prefix, u, h_re, h_im, chunk_size)  # (B, T, H)
    y = y + u * params[prefix + "D"]  # (B, T, H)
    return _output(params, prefix, y), h_re, h_im


def layer_step(
    params: dict[str, Any], prefix: str, u: Any, h_re: Any, h_im: Any, ssm: Any = None
) -> tuple[Any, Any, Any]:
    """One time step of :func:`layer_forward`: ``u`` (B, H) -> (B, H) and the new state
    (``ssm``: the layer discretised beforehand, else discretised here)."""
    ssm = _discretize(params, prefix) if ssm is None else ssm
    y, h_re, h_im = _ssm_update(ssm, u, h_re, h_im)  # (B, H)
    y = y + u * params[prefix + "D"]  # (B, H)
    return _output(params, prefix, y), h_re, h_im


# ---------------------------------------------------------------------------------------------
# the stack


def _norm(cfg: Config, params: dict[str, Any], prefix: str, x: Any) -> Any:
    return layer_norm(x, params[prefix + "weight"], params[prefix + "bias"], cfg.layer_norm_epsilon)


def step(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """One time step of the stack: ``x`` (B, d_model) -> ``y`` (B, d_model) and the next state.

    At inference the layers' discretisations are computed once per set of weights
    (``prepared``); under autodiff, every step.
    """
    layers = prepared(_prepare_step, cfg, params, x, *state.values())
    new_state = {}
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        u = _norm(cfg, params, p + "norm.", x)  # (B, H)
        ssm = None if layers is None else layers[i]
        out, h_re, h_im = layer_step(params, p, u, state[p + "h_re"], state[p + "h_im"], ssm)
        x = x + out  # (B, H)
        new_state[p + "h_re"], new_state[p + "h_im"] = h_re, h_im
    return _norm(cfg, params, "norm_f.", x), new_state  # (B, H)


def forward(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """A whole sequence: ``x`` (B, T, d_model) -> ``y`` (B, T, d_model) and the final state.

    ``state`` (default zeros) is the state before ``x``; chunked exact convolution per layer.
    """
    xp = namespace(x)
    if state is None:
        state = init_state(cfg, x.shape[0], xp=xp, dtype=x.dtype)
    new_state = {}
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        u = _norm(cfg, params, p + "norm.", x)  # (B, T, H)
        out, h_re, h_im = layer_forward(
            params, p, u, state[p + "h_re"], state[p + "h_im"], cfg.chunk_size
        )
        x = x + out  # (B, T, H)
        new_state[p + "h_re"], new_state[p + "h_im"] = h_re, h_im
    return _norm(cfg, params, "norm_f.", x), new_state  # (B, T, H)


# ---------------------------------------------------------------------------------------------
# checkpoints


def _prefix(tensors: dict[str, Any]) -> str:
    """The prefix the checkpoint puts before our names ("" or e.g. "model.", "backbone.")."""
    error = "checkpoint has no 'norm_f.weight' (expected shape (d_model,))"
    return find_prefix(tensors, "norm_f.weight", error)


def config_from_checkpoint(tensors: dict[str, Any], config_json: dict | None = None) -> Config:
    """Config from checkpoint shapes (d_model, d_state, n_layer) and ``config_json`` (the rest).

    Raises ``WeightsError`` when ``config_json`` disagrees with the shapes.
    """
    pre = _prefix(tensors)
    d_model = int(need(tensors, pre + "norm_f.weight", 1).shape[0])
    n_layer = 0
    while f"{pre}layers.{n_layer}.kernel.C" in tensors:
        n_layer += 1
    if n_layer == 0:
        raise WeightsError(f"checkpoint has no '{pre}layers.0.kernel.C' (expected (H, N/2, 2))")
    d_state = 2 * int(need(tensors, f"{pre}layers.0.kernel.C", 3).shape[1])
    found = {"d_model": d_model, "d_state": d_state, "n_layer": n_layer}
    return Config.from_dict(merge_found(config_json, found))


def params_from_checkpoint(tensors: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Our params from checkpoint tensors: strip the prefix, check every key and shape.

    Raises ``WeightsError`` naming the first missing or mis-shaped key and its expected shape.
    """
    return select_params(tensors, _param_shapes(cfg), _prefix(tensors))


__all__ = [
    "Config", "config_from_checkpoint", "erfc", "forward", "gelu", "init_params", "init_state",
    "kernel", "layer_forward", "layer_step", "params_from_checkpoint", "ssm_forward", "ssm_step",
    "state_numel", "step",
]  # fmt: skip
