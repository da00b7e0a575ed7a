"""Helpers shared by the architecture modules (private to ``kizzasi_lite.models``).

- configs: positive-integer checks, :class:`DictConfig` (the config.json round trip, unknown keys
  ignored), dtype names;
- checkpoints: finding and stripping the prefix of a checkpoint's keys, counting its layers,
  selecting our parameters with their shapes checked (``WeightsError`` names the first missing
  or mis-shaped key), checking config.json against the sizes the tensors imply;
- the Mamba family (mamba, mamba2): shared config checks, the ``dt`` bias init, mamba_ssm's
  config.json names, the pre-norm residual stack both run (whole sequences in cache-sized time
  segments on NumPy, and the fast step's layer loop), the guard of the in-place blocked scans
  and :func:`scan_operation`, which records a recomputing scan on the autodiff tape;
- :func:`prepared`: the inference-only cache of what a single step derives from the weights.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any, Self

from kizzasi_lite.autodiff import Tensor, custom, plain
from kizzasi_lite.backends import (
    backend_name,
    dtype_of,
    loops_are_cheap,
    namespace,
    plain_numpy,
    spare_empty,
)
from kizzasi_lite.errors import ConfigError, InputError, WeightsError
from kizzasi_lite.nn import conv_taps, rms_norm

# ---------------------------------------------------------------------------------------------
# configs


def is_positive_int(value: Any) -> bool:
    """``value`` is an int (not a bool) >= 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(name: str, value: Any) -> None:
    """Raise ConfigError naming ``name`` unless ``value`` is a positive integer."""
    if not is_positive_int(value):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def check_numbers(cfg: Any, *names: str) -> None:
    """Raise ConfigError naming the first of ``names`` whose value on ``cfg`` is not a real
    number (an int or float, not a bool), before a range check compares it."""
    for name in names:
        v = getattr(cfg, name)
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise ConfigError(f"{name} must be a number, got {v!r}")


def check_sizes(cfg: Any, numbers: tuple[str, ...] = ()) -> None:
    """Every field of ``cfg`` a positive integer, except ``numbers``: positive numbers."""
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name in numbers:
            if not (isinstance(v, int | float) and v > 0):
                raise ConfigError(f"{f.name} must be a positive number, got {v!r}")
        else:
            check_positive_int(f.name, v)


def known_fields(cls: type, d: dict[str, Any], *, drop_none: bool = False) -> dict[str, Any]:
    """The items of ``d`` that are fields of the dataclass ``cls`` (and not None if asked)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names and not (drop_none and v is None)}


class DictConfig:
    """Base of the frozen Config dataclasses: to and from a dict such as config.json."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (config.json)."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Build from a dict such as a Hugging Face config.json; unknown keys are ignored."""
        return cls(**known_fields(cls, d))


def resolve_dtype(xp: Any, dtype: Any) -> Any:
    """``dtype`` as a dtype object of ``xp``: None means float32, names are looked up."""
    if dtype is None:
        return xp.float32
    return dtype_of(xp, dtype) if isinstance(dtype, str) else dtype


# ---------------------------------------------------------------------------------------------
# checkpoints


def find_prefix(tensors: dict[str, Any], anchor: str, error: str) -> str:
    """The prefix before ``anchor`` (``""``, ``"backbone."``...): shortest key that is ``anchor``
    or ends in ``"." + anchor``. Raises ``WeightsError(error)`` when there is none."""
    hits = [k for k in tensors if k == anchor or k.endswith("." + anchor)]
    if not hits:
        raise WeightsError(error)
    return min(hits, key=len)[: -len(anchor)]


def strip_prefix(tensors: dict[str, Any], anchor: str = "norm_f.weight") -> dict[str, Any]:
    """The tensors with the prefix before ``anchor`` (e.g. ``"backbone."``) removed."""
    prefix = find_prefix(tensors, anchor, f"checkpoint has no {anchor!r} tensor (under any prefix)")
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def count_layers(tensors: dict[str, Any]) -> int:
    """Number of layers ``layers.{i}.*``: they must run from 0 without a gap."""
    ids = {int(m.group(1)) for k in tensors if (m := re.match(r"layers\.(\d+)\.", k))}
    if not ids:
        raise WeightsError("checkpoint has no 'layers.{i}.*' tensors")
    if ids != set(range(len(ids))):
        missing = min(set(range(max(ids) + 1)) - ids)
        raise WeightsError(f"checkpoint lacks layer {missing} ('layers.{missing}.*')")
    return len(ids)


def need(tensors: dict[str, Any], key: str, ndim: int | None = None) -> Any:
    """``tensors[key]``, or WeightsError naming the missing key, or (``ndim`` given) the key
    whose tensor has not ``ndim`` axes, before its sizes are read."""
    if key not in tensors:
        raise WeightsError(f"checkpoint is missing {key!r}")
    t = tensors[key]
    if ndim is not None and len(t.shape) != ndim:
        raise WeightsError(f"{key!r} has shape {tuple(t.shape)}, expected {ndim} axes")
    return t


def select_params(
    tensors: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    prefix: str = "",
    *,
    reshape_unit_axes: bool = False,
) -> dict[str, Any]:
    """Our params ``{name: tensors[prefix + name]}`` for every name of ``shapes``, checked.

    Raises WeightsError at the first missing or mis-shaped key, with the shape expected. With
    ``reshape_unit_axes``, a tensor that differs from its shape only by axes of size 1 (e.g.
    (C,) for (1, 1, C)) is reshaped. The arrays are returned as given otherwise.
    """
    out = {}
    for name, shape in shapes.items():
        key = prefix + name
        if key not in tensors:
            raise WeightsError(f"checkpoint is missing {key!r} (expected shape {shape})")
        t = tensors[key]
        got = tuple(t.shape)
        if got != shape:
            squeezed = [d for d in got if d != 1] == [d for d in shape if d != 1]
            if not (reshape_unit_axes and squeezed):
                raise WeightsError(f"{key!r} has shape {got}, expected shape {shape}")
            t = namespace(t).reshape(t, shape)
        out[name] = t
    return out


def _as_int(value: Any) -> int | None:
    """``int(value)`` (a number or a numeric string), or None where it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def merge_found(config_json: dict | None, found: dict[str, int]) -> dict[str, Any]:
    """config.json with the integer sizes ``found`` in the tensors; where it states one, they
    must agree (else WeightsError naming the field)."""
    d = dict(config_json or {})
    for name, value in found.items():
        said = d.get(name, value)
        if isinstance(said, bool) or _as_int(said) != int(value):  # "abc", None: never agree
            raise WeightsError(f"config.json says {name}={said!r} but the weights have {value}")
        d[name] = int(value)
    return d


# ---------------------------------------------------------------------------------------------
# the Mamba family (mamba, mamba2)


def check_mamba_common(cfg: Any) -> None:
    """Checks of the fields both Mamba configs share."""
    check_numbers(cfg, "layer_norm_epsilon", "time_step_min", "time_step_max", "time_step_floor")
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


def inverse_softplus_dt(cfg: Any, rng: Any, n: int, dtype: Any) -> Any:
    """Bias whose softplus is a log-uniform ``dt`` in [time_step_min, time_step_max], floored."""
    xp = rng.xp
    lo, hi = math.log(cfg.time_step_min), math.log(cfg.time_step_max)
    u = rng.uniform((n,), dtype=dtype)  # (n,)
    floor = xp.full((n,), cfg.time_step_floor, dtype=dtype)  # (n,)
    dt = xp.maximum(xp.exp(u * (hi - lo) + lo), floor)  # (n,)
    return dt + xp.log(-xp.expm1(-dt))  # (n,)


def check_numpy_backed(name: str, *arrays: Any) -> None:
    """InputError unless ``arrays`` are plain NumPy-backed arrays (``loops_are_cheap``): the
    blocked scans ``name`` write their states in place over views of their own buffers, which
    only NumPy's view semantics make correct."""
    if not loops_are_cheap(*arrays):
        raise InputError(
            f"{name} updates NumPy views in place: it takes plain numpy or array_api_strict "
            f"arrays, got {backend_name(namespace(*arrays))} arrays (use the chunked scan)"
        )


def scan_path(*args: Any) -> str:
    """Which sequence path a recurrence over ``args`` takes: ``"recomputed"`` (NumPy-backed and
    differentiated: one operation, :func:`scan_operation`), ``"blocked"`` (NumPy-backed
    inference: a Python loop over steps) or ``"chunked"`` (the device backends)."""
    if not loops_are_cheap(*map(plain, args)):
        return "chunked"
    return "recomputed" if any(map(traced, args)) else "blocked"


# Numbers per block of states of an inference scan on NumPy-backed arrays (2 MiB of float32,
# 64 steps of the default preset): a block's states are written and read again while they are
# still in cache (a Mamba forward over 8192 steps takes ~10% less time than in blocks of 256).
_SCAN_BLOCK_NUMBERS = 1 << 19


def scan_block(state: Any) -> int:
    """Steps per block of an inference scan whose running state is ``state``."""
    return max(1, _SCAN_BLOCK_NUMBERS // max(1, math.prod(state.shape)))


def scan_operation(outputs: tuple, inputs: dict[str, Any], backward: Callable) -> tuple:
    """A scan's ``outputs`` (plain arrays: ``y`` and the last state's parts) as one
    differentiable operation of ``inputs`` (name -> array or autodiff tensor):
    ``backward(*grads)``, given one gradient per output (None: zero), returns every input's
    gradient by name. It runs once per output's gradient and serves the vector-Jacobian
    products of all the inputs."""
    memo: dict[str, Any] = {}

    def grads(j: int, g: Any) -> dict[str, Any]:
        key = (j, id(g))
        if memo.get("key") != key:
            given = [None] * len(outputs)
            given[j] = g
            memo.update(key=key, grads=backward(*given))
        return memo["grads"]

    return tuple(
        custom(out, [(u, lambda g, j=j, k=k: grads(j, g)[k]) for k, u in inputs.items()])
        for j, out in enumerate(outputs)
    )


# state-spaces/mamba (mamba_ssm) config.json names -> Hugging Face names
MAMBA_SSM_NAMES = {
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


def hf_names(config_json: dict | None) -> dict[str, Any]:
    """config.json with mamba_ssm's names (``d_model``, ``ssm_cfg``...) translated to HF's."""
    d = dict(config_json or {})
    ssm_cfg = d.pop("ssm_cfg", None) or {}
    if d.get("d_intermediate") or d.get("attn_layer_idx"):
        raise ConfigError("d_intermediate / attn_layer_idx: MLP and attention blocks unsupported")
    if ssm_cfg.get("D_has_hdim") or ssm_cfg.get("rmsnorm") is False:
        raise ConfigError("ssm_cfg: D_has_hdim=True and rmsnorm=False are not supported")
    for old, new in MAMBA_SSM_NAMES.items():
        for src in (d, ssm_cfg):
            if old in src and new not in d:
                d[new] = src[old]
    return d


def merge_checked(cls: type, config_json: dict | None, inferred: dict[str, Any]) -> Any:
    """``cls`` from config_json with the fields inferred from the tensors; they must agree."""
    given = hf_names(config_json)
    for name, value in inferred.items():
        said = given.get(name, "auto")  # absent, or "auto" (time_step_rank): nothing to check
        if said != "auto" and said != value:
            raise WeightsError(
                f"config.json says {name}={said!r} but the checkpoint tensors imply "
                f"{name}={value!r}"
            )
    return cls.from_dict({**given, **inferred})  # type: ignore[attr-defined]


def run_mamba_stack(
    cfg: Any, params: dict[str, Any], x: Any, state: dict[str, Any], mixer: Any
) -> tuple[Any, dict[str, Any]]:
    """``h <- h + mixer(RMSNorm(h))`` per layer, then ``norm_f``; ``x`` (B, [T,] D).

    ``mixer(cfg, params, i, u, conv, ssm) -> (out, conv, ssm)`` is one layer's mixer, the
    sequence or the single-step one; each layer's state is ``layers.{i}.conv`` and ``.ssm``.
    """
    eps = cfg.layer_norm_epsilon
    h, new_state = x, {}
    for i in range(cfg.num_hidden_layers):
        conv, ssm = state[f"layers.{i}.conv"], state[f"layers.{i}.ssm"]
        u = rms_norm(h, params[f"layers.{i}.norm.weight"], eps)  # (B, [T,] D)
        out, conv, ssm = mixer(cfg, params, i, u, conv, ssm)
        h = h + out  # (B, [T,] D)
        new_state[f"layers.{i}.conv"], new_state[f"layers.{i}.ssm"] = conv, ssm
    return rms_norm(h, params["norm_f.weight"], eps), new_state


# At inference on NumPy-backed arrays, a long sequence runs through the stack in segments of
# about this many numbers per activation (streams x steps x in_proj width: 2 MiB of float32), so
# that each layer's temporaries stay in cache instead of streaming through memory.
_SEGMENT_NUMBERS = 1 << 19


def run_mamba_sequence(
    cfg: Any, params: dict[str, Any], x: Any, state: dict[str, Any], mixer: Any
) -> tuple[Any, dict[str, Any]]:
    """:func:`run_mamba_stack` over a sequence ``x`` (B, T, D). At inference on NumPy-backed
    arrays, a sequence longer than a segment (a multiple of ``cfg.chunk_size`` steps, sized by
    ``_SEGMENT_NUMBERS``) goes through the whole stack one segment at a time, the state carried
    from each to the next: the same result as one pass (``forward``'s split property)."""
    bsz, t = x.shape[0], x.shape[1]
    width = params["layers.0.mixer.in_proj.weight"].shape[0]
    seg = max(1, _SEGMENT_NUMBERS // (max(bsz, 1) * width * cfg.chunk_size)) * cfg.chunk_size
    if t <= seg or not loops_are_cheap(x, *params.values()):
        return run_mamba_stack(cfg, params, x, state, mixer)
    ys = []
    for t0 in range(0, t, seg):
        y, state = run_mamba_stack(cfg, params, x[:, t0 : min(t0 + seg, t), :], state, mixer)
        ys.append(y)  # (B, seg, D)
    return namespace(x).concat(ys, axis=1), state


def run_mamba_step(
    cfg: Any, params: dict[str, Any], x: Any, state: dict[str, Any], *,
    prepare: Callable, fast_layer: Callable, plain: Callable,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """One step of a Mamba-family stack: at inference each layer is
    ``fast_layer(cfg, params, w, h, conv, ssm) -> (h, conv, ssm)`` (pre-norm, mixer and
    residual) with ``w``, layer ``i``'s entry of the list ``layers`` in what
    ``prepare(cfg, params) -> (layers, norm_f, layouts)`` derives from the weights (cached per
    weight set by :func:`prepared`); ``norm_f`` is the final norm's :func:`step_norm`, and
    ``layouts`` the projections' :func:`step_layouts`, which replace them in ``params``. Under
    autodiff the whole step is ``plain(cfg, params, x, state)``."""
    built = prepared(prepare, cfg, params, x, *state.values())
    if built is None:
        return plain(cfg, params, x, state)
    layers, norm_f, layouts = built
    params = {**params, **layouts} if layouts else params  # the projections laid out (in, out)
    h, new_state = x, {}
    for i, w in enumerate(layers):
        conv, ssm = f"layers.{i}.conv", f"layers.{i}.ssm"
        h, new_state[conv], new_state[ssm] = fast_layer(cfg, params, w, h, state[conv], state[ssm])
    return normed(h, norm_f), new_state


# Numbers of state per block of streams in :func:`in_stream_blocks`: 32 streams of the default
# preset's 8192 (1 MiB of float32), so that a block's temporaries stay in cache.
_STATE_BLOCK_NUMBERS = 1 << 18


def in_stream_blocks(update: Callable, state: Any, *args: Any) -> tuple:
    """``update(state, *args) -> (new_state, y)``, one step of a recurrence, for every stream.

    Many streams on NumPy-backed arrays go in blocks of streams (each argument's first axis): the
    temporaries of a block stay in cache, so the state crosses memory about twice (read, write)
    rather than once per elementwise op of ``update``. The outputs come from :func:`spare_empty`;
    on NumPy, every block after the first is written into them by ``update(state, *args,
    out=(new_state, y))`` (the block's rows, written in place, nothing returned), otherwise each
    block's results are copied in. Off NumPy all streams go at once.
    """
    bsz, per_stream = state.shape[0], math.prod(state.shape[1:])
    if bsz * per_stream <= 2 * _STATE_BLOCK_NUMBERS or not loops_are_cheap(state, *args):
        return update(state, *args)
    xp, step, outs = namespace(state), max(1, _STATE_BLOCK_NUMBERS // per_stream), []
    into = backend_name(xp) == "numpy"
    for b0 in range(0, bsz, step):
        rows = slice(b0, min(b0 + step, bsz))
        block = [a[rows, ...] for a in args]
        if outs and into:
            update(state[rows, ...], *block, out=tuple(o[rows, ...] for o in outs))
            continue
        parts = update(state[rows, ...], *block)
        if not outs:
            outs = [spare_empty(xp, (bsz, *q.shape[1:]), q.dtype) for q in parts]
        for out, q in zip(outs, parts, strict=True):
            out[rows, ...] = q
    return tuple(outs)


def step_norm(weight: Any, eps: float) -> tuple[Any, Any, Any]:
    """An RMSNorm's ``(weight * sqrt(C), C * eps, xp)`` for :func:`normed`: new arrays, (C,) and
    0-d (at a step's sizes an op with a 0-d array costs half one with a Python float), and
    their namespace."""
    c, xp = weight.shape[-1], namespace(weight)
    return weight * math.sqrt(c), xp.asarray(eps * c, dtype=weight.dtype), xp


# A step reads each projection's weights once, and between two steps other work evicts them from
# the cache, so they come from memory. Read from memory, NumPy's ``x @ W.T`` over the checkpoint's
# (out, in) layout (OpenBLAS's dot-product gemv) took ~1.8x as long as ``x @ W_t`` over a contiguous
# (in, out) copy (its column gemv): 91 against 52 us for (1088, 256) float32 weights (medians,
# with 250 us of other work between reads). The copies double the projections' memory, so a step
# takes them only for NumPy weights of at most this many bytes in all.
_TRANSPOSED_BYTES = 64 << 20


def step_layouts(suffixes: tuple[str, ...], cfg: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Each weight of ``params`` whose name ends in one of ``suffixes`` (the (out, in) weights a
    step reads through ``linear``) as the transpose of a contiguous (in, out) copy: the same
    values, laid out for the column gemv. Weights laid out so already are left out (nothing to
    copy), and ``{}`` is returned unless the weights are NumPy arrays whose copies total at most
    ``_TRANSPOSED_BYTES``. Bound to an architecture's ``suffixes`` once (``functools.partial``)
    for :func:`with_step_layouts`, or called by a step's ``prepare``."""
    names = [k for k in params if k.endswith(suffixes)]
    if not names or not plain_numpy(*(params[k] for k in names)):
        return {}
    import numpy as np  # the weights are NumPy arrays

    todo = {k: params[k] for k in names if not params[k].mT.flags.c_contiguous}
    if sum(w.nbytes for w in todo.values()) > _TRANSPOSED_BYTES:
        return {}
    return {k: np.array(w.mT, order="C").mT for k, w in todo.items()}  # new arrays, not views


def fold_into_in_proj(
    layouts: dict[str, Any], params: dict[str, Any], prefix: str, norm: tuple, halved: slice
) -> tuple:
    """Fold what a Mamba-family step multiplies by around ``in_proj`` into its copy in
    ``layouts`` (:func:`step_layouts`, NumPy, ours to change; (out, in)): each input column by
    the pre-norm's scaled weight (``norm``, :func:`step_norm`), and the output rows ``halved``
    (a gate's input, for :func:`~kizzasi_lite.nn.silu_of_half`) by 0.5; with a bias, a copy of
    it with those rows halved joins ``layouts``. Returns ``norm`` without its weight, for
    :func:`normed`: two array calls fewer a step's layer, the same values up to rounding."""
    w_in = layouts[prefix + "in_proj.weight"]
    w_in *= norm[0]
    w_in[halved, :] *= 0.5
    bias = params.get(prefix + "in_proj.bias")
    if bias is not None:
        parts = [bias[: halved.start], bias[halved] * 0.5, bias[halved.stop :]]
        layouts[prefix + "in_proj.bias"] = norm[2].concat(parts)
    return (None, *norm[1:])


def with_step_layouts(layouts: Callable, cfg: Any, params: dict, x: Any, state: dict) -> dict:
    """``params`` for one step, its projections' weights replaced by what ``layouts`` (a
    :func:`step_layouts` partial) gives, made once per set of weights (:func:`prepared`);
    ``params`` itself under autodiff or where there are no copies."""
    views = prepared(layouts, cfg, params, x, *state.values())
    return {**params, **views} if views else params


def normed(x: Any, norm: tuple[Any, Any, Any]) -> Any:
    """``rms_norm(x, weight, eps)`` over the last axis as ``x * w' / sqrt(x.x + C eps)`` with
    ``(w', C eps, xp) = norm`` (:func:`step_norm`): four array calls, not six; three with
    ``w'`` None, where the projection after the norm has the weight folded in."""
    scaled_weight, eps, xp = norm
    y = x if scaled_weight is None else x * scaled_weight
    return y / xp.sqrt(xp.vecdot(x, x)[..., None] + eps)


def halved_taps(weight: Any) -> Any:
    """:func:`~kizzasi_lite.nn.conv_taps` halved (SiLU's input comes out halved, for
    :func:`~kizzasi_lite.nn.silu_of_half`): a new array (K, C)."""
    return conv_taps(weight) * 0.5


# ---------------------------------------------------------------------------------------------
# the single step's cache of values derived from the weights (inference only)

_PREPARED: dict[tuple, tuple[list, Any]] = {}


def traced(a: Any) -> bool:
    """Whether ``a`` is an autodiff tensor (being differentiated). ``isinstance``, not the
    class flag ``backends.namespace`` looks for: a step asks this of every state array, and a
    missing class attribute costs ~0.7 us a lookup, ``isinstance`` ~0.05."""
    return isinstance(a, Tensor)


def prepared(build: Callable, cfg: Any, params: dict[str, Any], *arrays: Any) -> Any:
    """``build(cfg, params)``, computed once per config and set of parameter arrays; None under
    autodiff.

    A step of a small model costs about one microsecond per array call, so what it derives from
    the weights alone (``-exp(A_log)``, transposed conv taps, ``D[:, None]``) is computed once.
    The cache is keyed on ``cfg`` (hashable), the parameter names and the *identity* of the
    arrays, and holds only weak references to them: an entry is dropped as soon as one of its
    arrays is freed, so an id found here always names the array the entry was computed from.
    Parameters are never mutated in place (DESIGN.md), so new weights are new arrays, and new
    arrays a new entry: a predictor that replaces ``params`` or an optimizer that builds new
    arrays needs no invalidation.

    ``build`` must return new arrays, never views of ``params`` (a view would keep its array,
    and so the entry, alive); they are small, but for the projections' copies
    (:func:`step_layouts`, at most ``_TRANSPOSED_BYTES`` in all). Returns None and caches
    nothing when a parameter or one of ``arrays`` (the step's input and state) is an autodiff
    tensor, or when the backend's arrays take no weak references: the caller then runs the
    plain step.
    """
    if any(map(traced, arrays)):
        return None
    values = params.values()
    key = (build, cfg, tuple(params), tuple(map(id, values)))
    hit = _PREPARED.get(key)
    if hit is not None:
        return hit[1]
    if any(map(traced, values)):
        return None

    def drop(_: Any) -> None:
        _PREPARED.pop(key, None)

    try:
        refs = [weakref.ref(v, drop) for v in values]
    except TypeError:  # arrays without weak references: no cache
        return None
    value = build(cfg, params)
    _PREPARED[key] = (refs, value)
    return value
