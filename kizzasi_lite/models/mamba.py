"""Mamba (S6), the selective state-space model, computed as transformers' ``MambaModel`` does.

Glossary (paper symbol -> name in the code):

- ``D`` (model width)              -> ``cfg.hidden_size``
- ``E`` (expansion), ``E*D``        -> ``cfg.expand``, ``cfg.intermediate_size`` (``d_inner``)
- ``N`` (state size)                -> ``cfg.state_size``
- ``R`` (rank of Delta)             -> ``cfg.time_step_rank``
- ``K`` (conv width)                -> ``cfg.conv_kernel``
- ``x``, ``z`` (SSM input, gate)    -> the two halves of ``in_proj``'s output: ``xs``, ``z``
- ``Delta = softplus(s_Delta(x))``  -> ``dt`` = softplus(dt_proj(dt_low)), (B, T, d_inner)
- ``A = -exp(A_log)``               -> ``a`` (d_inner, N)
- ``A_bar = exp(Delta A)``          -> ``da`` (B, T, d_inner, N)
- ``B_bar x = Delta B x``           -> ``dbx`` (B, T, d_inner, N)
- ``B``, ``C`` (selective)          -> ``bm``, ``cm`` (B, T, N), from ``x_proj``
- ``h_t = A_bar h_{t-1} + B_bar x`` -> the ssm state ``layers.{i}.ssm`` (B, d_inner, N)
- ``y = C h + D x``, ``y*silu(z)``  -> ``y``; ``D`` is the skip ``mixer.D`` (d_inner,)

A layer is ``h <- h + out_proj(mixer(RMSNorm(h)))``; the output is ``norm_f(h)``, the
``last_hidden_state`` of ``MambaModel`` for ``inputs_embeds=x``. The state of a layer is the last
``K-1`` conv inputs ``layers.{i}.conv`` (B, K-1, d_inner) and ``layers.{i}.ssm`` (B, d_inner, N).

References:

- A. Gu, T. Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (2023),
  arXiv:2312.00752, Algorithm 2 and Section 3.
- transformers ``models/mamba/modeling_mamba.py``: ``MambaMixer`` (slow path), ``MambaRMSNorm``,
  ``MambaBlock``, ``MambaModel``, ``MambaPreTrainedModel._init_weights`` (initialisation).
- state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py`` (the original layer).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from kizzasi_lite.backends import dtype_of, namespace
from kizzasi_lite.errors import ConfigError, WeightsError
from kizzasi_lite.nn import causal_conv1d, causal_conv1d_step, linear, rms_norm, silu, softplus
from kizzasi_lite.scan import scan_chunked


@dataclass(frozen=True)
class Config:
    """Mamba hyper-parameters, named as in transformers' ``MambaConfig`` (config.json).

    ``time_step_rank="auto"`` resolves to ``ceil(hidden_size / 16)``. ``chunk_size`` (ours, not
    in MambaConfig) is the chunk length of the scan in :func:`forward`; it changes rounding only.
    ``residual_in_fp32`` is accepted for compatibility and ignored: we compute in one dtype.
    """

    hidden_size: int = 768
    state_size: int = 16
    num_hidden_layers: int = 32
    expand: int = 2
    conv_kernel: int = 4
    time_step_rank: int | str = "auto"
    use_bias: bool = False
    use_conv_bias: bool = True
    layer_norm_epsilon: float = 1e-5
    hidden_act: str = "silu"
    initializer_range: float = 0.1
    residual_in_fp32: bool = True
    time_step_scale: float = 1.0
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_init_scheme: str = "random"
    time_step_floor: float = 1e-4
    rescale_prenorm_residual: bool = False
    chunk_size: int = 64

    def __post_init__(self) -> None:
        if self.time_step_rank == "auto":
            object.__setattr__(self, "time_step_rank", math.ceil(self.hidden_size / 16))
        for name in ("hidden_size", "state_size", "num_hidden_layers", "expand", "conv_kernel"):
            _check_positive_int(name, getattr(self, name))
        _check_positive_int("time_step_rank", self.time_step_rank)
        _check_positive_int("chunk_size", self.chunk_size)
        _check_common(self)
        if self.time_step_init_scheme not in ("random", "constant"):
            raise ConfigError(
                "time_step_init_scheme must be 'random' or 'constant', "
                f"got {self.time_step_init_scheme!r}"
            )

    @property
    def intermediate_size(self) -> int:
        """``d_inner = expand * hidden_size``."""
        return int(self.expand * self.hidden_size)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (config.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a dict such as a Hugging Face config.json; unknown keys are ignored."""
        return cls(**_known_fields(cls, d))


# ---------------------------------------------------------------------------------------------
# helpers shared with mamba2 (private to the two Mamba modules)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_common(cfg: Any) -> None:
    """Checks of the fields both Mamba configs share."""
    if cfg.hidden_act != "silu":
        raise ConfigError(f"hidden_act must be 'silu', got {cfg.hidden_act!r}")
    if not cfg.layer_norm_epsilon > 0:
        raise ConfigError(f"layer_norm_epsilon must be > 0, got {cfg.layer_norm_epsilon!r}")
    if not 0 < cfg.time_step_min <= cfg.time_step_max:
        raise ConfigError(
            f"time_step_min must satisfy 0 < time_step_min <= time_step_max, "
            f"got {cfg.time_step_min!r} and {cfg.time_step_max!r}"
        )
    if not cfg.time_step_floor >= 0:
        raise ConfigError(f"time_step_floor must be >= 0, got {cfg.time_step_floor!r}")


def _known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _resolve_dtype(xp: Any, dtype: Any) -> Any:
    """``dtype`` as a dtype object of ``xp``: None means float32, names are looked up."""
    if dtype is None:
        return xp.float32
    return dtype_of(xp, dtype) if isinstance(dtype, str) else dtype


def _inverse_softplus_dt(cfg: Any, rng: Any, n: int, dtype: Any) -> Any:
    """Bias whose softplus is a log-uniform ``dt`` in [time_step_min, time_step_max], floored."""
    xp = rng.xp
    lo, hi = math.log(cfg.time_step_min), math.log(cfg.time_step_max)
    u = rng.uniform((n,), dtype=dtype)  # (n,)
    floor = xp.full((n,), cfg.time_step_floor, dtype=dtype)  # (n,)
    dt = xp.maximum(xp.exp(u * (hi - lo) + lo), floor)  # (n,)
    return dt + xp.log(-xp.expm1(-dt))  # (n,)


def _kaiming_uniform(rng: Any, shape: tuple[int, ...], fan_in: int, dtype: Any) -> Any:
    """torch's ``kaiming_uniform_(a=sqrt(5))``: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(shape, -bound, bound, dtype=dtype)


def _strip_prefix(tensors: dict[str, Any], anchor: str = "norm_f.weight") -> dict[str, Any]:
    """The tensors with the prefix before ``anchor`` (e.g. ``"backbone."``) removed."""
    hits = [k for k in tensors if k == anchor or k.endswith("." + anchor)]
    if not hits:
        raise WeightsError(f"checkpoint has no {anchor!r} tensor (under any prefix)")
    prefix = min(hits, key=len)[: -len(anchor)]
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _count_layers(tensors: dict[str, Any]) -> int:
    ids = {int(m.group(1)) for k in tensors if (m := re.match(r"layers\.(\d+)\.", k))}
    if not ids:
        raise WeightsError("checkpoint has no 'layers.{i}.*' tensors")
    if ids != set(range(len(ids))):
        missing = min(set(range(max(ids) + 1)) - ids)
        raise WeightsError(f"checkpoint lacks layer {missing} ('layers.{missing}.*')")
    return len(ids)


def _need(tensors: dict[str, Any], key: str) -> Any:
    if key not in tensors:
        raise WeightsError(f"checkpoint is missing {key!r}")
    return tensors[key]


# state-spaces/mamba (mamba_ssm) config.json names -> Hugging Face names
_MAMBA_SSM_NAMES = {
    "d_model": "hidden_size",
    "n_layer": "num_hidden_layers",
    "d_state": "state_size",
    "d_conv": "conv_kernel",
    "expand": "expand",
    "dt_rank": "time_step_rank",
    "headdim": "head_dim",
    "ngroups": "n_groups",
    "chunk_size": "chunk_size",
    "norm_before_gate": "norm_before_gate",
    "dt_min": "time_step_min",
    "dt_max": "time_step_max",
    "dt_init_floor": "time_step_floor",
    "dt_limit": "time_step_limit",
    "bias": "use_bias",
    "conv_bias": "use_conv_bias",
}


def _hf_names(config_json: dict | None) -> dict[str, Any]:
    """config.json with mamba_ssm's names (``d_model``, ``ssm_cfg``...) translated to HF's."""
    d = dict(config_json or {})
    ssm_cfg = d.pop("ssm_cfg", None) or {}
    if d.get("d_intermediate") or d.get("attn_layer_idx"):
        raise ConfigError("d_intermediate / attn_layer_idx: MLP and attention blocks unsupported")
    if ssm_cfg.get("D_has_hdim") or ssm_cfg.get("rmsnorm") is False:
        raise ConfigError("ssm_cfg: D_has_hdim=True and rmsnorm=False are not supported")
    for old, new in _MAMBA_SSM_NAMES.items():
        for src in (d, ssm_cfg):
            if old in src and new not in d:
                d[new] = src[old]
    return d


def _merge_checked(cls: type, config_json: dict | None, inferred: dict[str, Any]) -> Any:
    """``cls`` from config_json with the fields inferred from the tensors; they must agree."""
    given = _hf_names(config_json)
    for name, value in inferred.items():
        said = given.get(name, "auto")  # absent, or "auto" (time_step_rank): nothing to check
        if said != "auto" and said != value:
            raise WeightsError(
                f"config.json says {name}={said!r} but the checkpoint tensors imply "
                f"{name}={value!r}"
            )
    return cls.from_dict({**given, **inferred})


def _select_params(tensors: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """The tensors named in ``shapes``, checked; raises WeightsError at the first mismatch."""
    out = {}
    for key, shape in shapes.items():
        if key not in tensors:
            raise WeightsError(f"checkpoint is missing {key!r} (expected shape {shape})")
        t = tensors[key]
        if tuple(t.shape) != shape:
            raise WeightsError(f"{key!r} has shape {tuple(t.shape)}, expected shape {shape}")
        out[key] = t
    return out


# ---------------------------------------------------------------------------------------------
# parameters and state


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter name (MambaModel's key without ``backbone.``) and its shape."""
    d, di, n, r, k = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.state_size,
        cfg.time_step_rank,
        cfg.conv_kernel,
    )
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        shapes[p + "norm.weight"] = (d,)
        shapes[p + "mixer.in_proj.weight"] = (2 * di, d)
        if cfg.use_bias:
            shapes[p + "mixer.in_proj.bias"] = (2 * di,)
        shapes[p + "mixer.conv1d.weight"] = (di, 1, k)
        if cfg.use_conv_bias:
            shapes[p + "mixer.conv1d.bias"] = (di,)
        shapes[p + "mixer.x_proj.weight"] = (r + 2 * n, di)
        shapes[p + "mixer.dt_proj.weight"] = (di, r)
        shapes[p + "mixer.dt_proj.bias"] = (di,)
        shapes[p + "mixer.A_log"] = (di, n)
        shapes[p + "mixer.D"] = (di,)
        shapes[p + "mixer.out_proj.weight"] = (d, di)
        if cfg.use_bias:
            shapes[p + "mixer.out_proj.bias"] = (d,)
    shapes["norm_f.weight"] = (d,)
    return shapes


def init_params(cfg: Config, rng: Any, dtype: Any = None) -> dict[str, Any]:
    """Fresh weights initialised as ``MambaPreTrainedModel._init_weights`` does.

    ``rng`` is a :class:`kizzasi_lite.backends.random.Generator` (its ``xp`` is the namespace).
    in_proj / x_proj ~ N(0, initializer_range); dt_proj.weight ~ U(+-R^-0.5 * time_step_scale)
    (or that constant); dt_proj.bias = softplus^-1(log-uniform dt); A_log = log(1..N);
    D = 1; conv and out_proj: kaiming-uniform; biases 0; norms 1.
    """
    xp = rng.xp
    dtype = _resolve_dtype(xp, dtype)
    d, di, n, r, k = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.state_size,
        cfg.time_step_rank,
        cfg.conv_kernel,
    )
    std = cfg.initializer_range
    dt_std = r**-0.5 * cfg.time_step_scale
    out_scale = 1.0 / math.sqrt(cfg.num_hidden_layers) if cfg.rescale_prenorm_residual else 1.0
    a_log_row = xp.log(xp.arange(1, n + 1, dtype=dtype))  # (N,)
    params: dict[str, Any] = {}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        params[p + "norm.weight"] = xp.ones((d,), dtype=dtype)  # (D,)
        params[p + "mixer.in_proj.weight"] = rng.normal((2 * di, d), std=std, dtype=dtype)
        if cfg.use_bias:
            params[p + "mixer.in_proj.bias"] = xp.zeros((2 * di,), dtype=dtype)  # (2Di,)
        params[p + "mixer.conv1d.weight"] = _kaiming_uniform(rng, (di, 1, k), k, dtype)
        if cfg.use_conv_bias:
            params[p + "mixer.conv1d.bias"] = xp.zeros((di,), dtype=dtype)  # (Di,)
        params[p + "mixer.x_proj.weight"] = rng.normal((r + 2 * n, di), std=std, dtype=dtype)
        if cfg.time_step_init_scheme == "constant":
            params[p + "mixer.dt_proj.weight"] = xp.full((di, r), dt_std, dtype=dtype)  # (Di, R)
        else:
            params[p + "mixer.dt_proj.weight"] = rng.uniform((di, r), -dt_std, dt_std, dtype=dtype)
        params[p + "mixer.dt_proj.bias"] = _inverse_softplus_dt(cfg, rng, di, dtype)  # (Di,)
        params[p + "mixer.A_log"] = xp.ones((di, n), dtype=dtype) * a_log_row  # (Di, N)
        params[p + "mixer.D"] = xp.ones((di,), dtype=dtype)  # (Di,)
        w_out = _kaiming_uniform(rng, (d, di), di, dtype)  # (D, Di)
        params[p + "mixer.out_proj.weight"] = w_out * out_scale
        if cfg.use_bias:
            params[p + "mixer.out_proj.bias"] = xp.zeros((d,), dtype=dtype)  # (D,)
    params["norm_f.weight"] = xp.ones((d,), dtype=dtype)  # (D,)
    return params


def init_state(cfg: Config, batch: int, *, xp: Any, dtype: Any = None) -> dict[str, Any]:
    """Zero state: per layer ``conv`` (B, K-1, d_inner) and ``ssm`` (B, d_inner, N)."""
    dtype = _resolve_dtype(xp, dtype)
    di, k, n = cfg.intermediate_size, cfg.conv_kernel, cfg.state_size
    state = {}
    for i in range(cfg.num_hidden_layers):
        state[f"layers.{i}.conv"] = xp.zeros((batch, k - 1, di), dtype=dtype)  # (B, K-1, Di)
        state[f"layers.{i}.ssm"] = xp.zeros((batch, di, n), dtype=dtype)  # (B, Di, N)
    return state


def state_numel(cfg: Config) -> int:
    """Numbers in one stream's state: ``L * d_inner * (K - 1 + N)``."""
    di = cfg.intermediate_size
    return cfg.num_hidden_layers * di * (cfg.conv_kernel - 1 + cfg.state_size)


# ---------------------------------------------------------------------------------------------
# the mixer: sequence path and single step side by side


def _selective_params(cfg: Config, params: dict[str, Any], p: str, xs: Any) -> tuple[Any, ...]:
    """``Delta`` (..., Di), ``B`` and ``C`` (..., N) from the conv output ``xs`` (..., Di)."""
    r, n = cfg.time_step_rank, cfg.state_size
    x_dbl = linear(xs, params[p + "x_proj.weight"])  # (..., R + 2N)
    dt_low, bm, cm = x_dbl[..., :r], x_dbl[..., r : r + n], x_dbl[..., r + n :]
    dt_w, dt_b = params[p + "dt_proj.weight"], params[p + "dt_proj.bias"]
    dt = softplus(linear(dt_low, dt_w, dt_b))  # (..., Di)
    return dt, bm, cm  # (..., Di), (..., N), (..., N)


def _mixer_seq(
    cfg: Config, params: dict[str, Any], i: int, u: Any, conv: Any, ssm: Any
) -> tuple[Any, Any, Any]:
    """Mixer over a sequence: ``u`` (B, T, D) -> (B, T, D), with conv and ssm states in/out."""
    xp = namespace(u)
    p, di = f"layers.{i}.mixer.", cfg.intermediate_size
    xz = linear(u, params[p + "in_proj.weight"], params.get(p + "in_proj.bias"))  # (B, T, 2Di)
    xs, z = xz[..., :di], xz[..., di:]
    xs, conv = causal_conv1d(xs, params[p + "conv1d.weight"], params.get(p + "conv1d.bias"), conv)
    xs = silu(xs)  # (B, T, Di)
    dt, bm, cm = _selective_params(cfg, params, p, xs)
    a = -xp.exp(params[p + "A_log"])  # (Di, N)
    da = xp.exp(xp.expand_dims(dt, axis=-1) * a)  # (B, T, Di, N)
    dbx = xp.expand_dims(dt * xs, axis=-1) * xp.expand_dims(bm, axis=2)  # (B, T, Di, N)
    hs, ssm = scan_chunked(da, dbx, ssm, chunk=cfg.chunk_size)  # (B, T, Di, N), (B, Di, N)
    y = xp.matmul(hs, xp.expand_dims(cm, axis=-1))[..., 0]  # (B, T, Di)
    y = (y + xs * params[p + "D"]) * silu(z)  # (B, T, Di)
    out = linear(y, params[p + "out_proj.weight"], params.get(p + "out_proj.bias"))  # (B, T, D)
    return out, conv, ssm


def _mixer_step(
    cfg: Config, params: dict[str, Any], i: int, u: Any, conv: Any, ssm: Any
) -> tuple[Any, Any, Any]:
    """One step of the mixer: ``u`` (B, D) -> (B, D), with conv and ssm states in/out."""
    xp = namespace(u)
    p, di = f"layers.{i}.mixer.", cfg.intermediate_size
    xz = linear(u, params[p + "in_proj.weight"], params.get(p + "in_proj.bias"))  # (B, 2Di)
    xs, z = xz[..., :di], xz[..., di:]
    w, b = params[p + "conv1d.weight"], params.get(p + "conv1d.bias")
    xs, conv = causal_conv1d_step(xs, w, b, conv)  # (B, Di), (B, K-1, Di)
    xs = silu(xs)  # (B, Di)
    dt, bm, cm = _selective_params(cfg, params, p, xs)
    a = -xp.exp(params[p + "A_log"])  # (Di, N)
    da = xp.exp(xp.expand_dims(dt, axis=-1) * a)  # (B, Di, N)
    dbx = xp.expand_dims(dt * xs, axis=-1) * xp.expand_dims(bm, axis=1)  # (B, Di, N)
    ssm = da * ssm + dbx  # (B, Di, N)
    y = xp.matmul(ssm, xp.expand_dims(cm, axis=-1))[..., 0]  # (B, Di)
    y = (y + xs * params[p + "D"]) * silu(z)  # (B, Di)
    out = linear(y, params[p + "out_proj.weight"], params.get(p + "out_proj.bias"))  # (B, D)
    return out, conv, ssm


def _run(cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any], mixer: Any):
    eps = cfg.layer_norm_epsilon
    h, new_state = x, {}
    for i in range(cfg.num_hidden_layers):
        conv, ssm = state[f"layers.{i}.conv"], state[f"layers.{i}.ssm"]
        u = rms_norm(h, params[f"layers.{i}.norm.weight"], eps)  # (B, [T,] D)
        out, conv, ssm = mixer(cfg, params, i, u, conv, ssm)
        h = h + out  # (B, [T,] D)
        new_state[f"layers.{i}.conv"], new_state[f"layers.{i}.ssm"] = conv, ssm
    return rms_norm(h, params["norm_f.weight"], eps), new_state


def step(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """One time step, O(1) in time: ``x`` (B, D) -> ``y`` (B, D) after ``norm_f``, new state."""
    return _run(cfg, params, x, state, _mixer_step)


def forward(
    cfg: Config, params: dict[str, Any], x: Any, state: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """A sequence by the chunked scan: ``x`` (B, T, D) -> ``y`` (B, T, D), final state.

    ``state`` (default zeros) is the state before ``x``; the returned one is the state after it,
    so ``forward(x[:, :k])`` then ``forward(x[:, k:], state)`` equals ``forward(x)``.
    """
    if state is None:
        state = init_state(cfg, x.shape[0], xp=namespace(x), dtype=x.dtype)
    return _run(cfg, params, x, state, _mixer_seq)


# ---------------------------------------------------------------------------------------------
# reference checkpoints (transformers MambaModel / MambaForCausalLM, mamba_ssm)


def config_from_checkpoint(tensors: dict[str, Any], config_json: dict | None = None) -> Config:
    """The Config of a checkpoint: sizes from the tensor shapes, the rest from ``config_json``.

    Accepts MambaModel keys, or ``backbone.``-prefixed ones (MambaForCausalLM, mamba_ssm).
    Raises WeightsError when config.json contradicts the tensors.
    """
    t = _strip_prefix(tensors)
    in_proj = _need(t, "layers.0.mixer.in_proj.weight")
    hidden, di = int(in_proj.shape[1]), int(in_proj.shape[0]) // 2
    if di % hidden:
        raise WeightsError(f"in_proj gives d_inner={di}, not a multiple of hidden_size={hidden}")
    dt_w = _need(t, "layers.0.mixer.dt_proj.weight")
    inferred = {
        "hidden_size": hidden,
        "expand": di // hidden,
        "state_size": int(_need(t, "layers.0.mixer.A_log").shape[1]),
        "num_hidden_layers": _count_layers(t),
        "conv_kernel": int(_need(t, "layers.0.mixer.conv1d.weight").shape[-1]),
        "time_step_rank": int(dt_w.shape[1]),
        "use_bias": "layers.0.mixer.in_proj.bias" in t,
        "use_conv_bias": "layers.0.mixer.conv1d.bias" in t,
    }
    return _merge_checked(Config, config_json, inferred)


def params_from_checkpoint(tensors: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Our params from checkpoint tensors (any prefix; embeddings and lm_head are skipped).

    The arrays are returned as given (same namespace and dtype). Raises WeightsError naming the
    first missing or mis-shaped key and the shape expected.
    """
    return _select_params(_strip_prefix(tensors), param_shapes(cfg))


__all__ = [
    "Config",
    "config_from_checkpoint",
    "forward",
    "init_params",
    "init_state",
    "param_shapes",
    "params_from_checkpoint",
    "state_numel",
    "step",
]
