"""kizzasi_lite on NumPy against transformers on CPU torch, and both against the machine's limits.

One process, for the default preset (Mamba2, hidden 256, state 16, 4 layers, float32) and for
Mamba, RWKV-4 and the Transformer at the same size, with the *same weights* on both sides (the
reference model is built with transformers, saved, and loaded with ``load_backbone``):

- ``step_b1``, ``step_b64``, ``step_b1024``: one step of 1, 64, 1024 streams (transformers with its
  cache: ``DynamicCache`` for Mamba/Mamba2/Llama, the ``state`` list for RWKV). The Transformer
  steps with ``--context`` tokens in its cache (ours: a full window of that size; theirs: the
  cache cropped back to ``context - 1`` tokens after each untimed step), and skips 1024 streams
  (its KV cache would be several GB). transformers' batched RWKV step is wrong (it broadcasts
  the (B, C) token-shift state against the (B, 1, C) input and returns (B, B, C)); it is probed
  with 2 streams and, being wrong, not timed for more than one stream.
- ``forward_T<n>``: one sequence of ``n`` steps, no gradient (the Transformer attends causally over
  the whole sequence on both sides).
- ``train``: one training step with the optimizer on a batch of ``--train-batch`` windows of
  ``--train-len`` steps, MSE of the last hidden state against a fixed target. Ours:
  ``value_and_grad`` + ``AdamW.update`` on the backbone; theirs: torch autograd + ``torch.optim.AdamW``
  (weight decay 0 on both).

Every time is the median over ``--repeats`` blocks of calls (each block lasts about 0.2 s or one
call; a case whose call takes over 2 s gets at most 3 blocks); the blocks of ours and theirs
alternate, so that a slow spell of a shared machine slows both sides alike. The machine's single-precision matmul peak (NumPy ``a @ b``, n = 2048) and memory bandwidth
(NumPy copy of 256 MiB, read + write counted) are measured in the same run; the roofline floor and
the FLOP and byte counts are documented in ``costs.py``. So are NumPy's float32 ``exp`` and product
per number (in cache): not limits of the roofline, but the price of the elementwise passes that
NumPy makes one at a time (Mamba's ``exp(dt A)`` over (T, d_inner, N), every SiLU).

    .venv/bin/python asv_bench/compare.py --threads 1 --json out.json   # all (~30 min on 2 cores)
    .venv/bin/python asv_bench/compare.py --archs mamba2 --batches 1,64 --forward-lens 4096
    .venv/bin/python asv_bench/compare.py --quick --archs mamba2       # a smoke run (~15 s)

``--threads`` sets the BLAS / OpenMP / torch thread count for both sides (and for the peak); on a
shared machine, 1 avoids the thread-contention stalls of small multi-threaded matmuls.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import costs  # noqa: E402  (the sibling module, importable when run as a script)

ARCHS = ("mamba2", "mamba", "rwkv4", "transformer")
HIDDEN, STATE, LAYERS = 256, 16, 4


# ---------------------------------------------------------------------------------- timing
def measure(
    call: Callable[[], Any],
    repeats: int,
    after: Callable[[], Any] | None = None,
    block_seconds: float = 0.2,
    slow_seconds: float = 2.0,
) -> dict[str, float]:
    """Seconds per ``call()``: median (and min, max) over ``repeats`` blocks of calls.

    ``after`` runs untimed after every call (e.g. to crop a cache back). One warm-up call first;
    its time sets the block length (calls of more than ``slow_seconds`` get at most 3 repeats).
    The garbage collector is off while timing, as in asv.
    """
    return measure_pair(call, None, repeats, None, after, block_seconds, slow_seconds)[0]


def measure_pair(
    ours: Callable[[], Any],
    theirs: Callable[[], Any] | None,
    repeats: int,
    after_theirs: Callable[[], Any] | None = None,
    after_ours: Callable[[], Any] | None = None,
    block_seconds: float = 0.2,
    slow_seconds: float = 2.0,
) -> tuple[dict[str, float], dict[str, float] | None]:
    """:func:`measure` of ``ours`` and ``theirs`` (None: not timed) in alternating blocks (ours,
    theirs, ours, ...), so that a slow spell of a shared machine slows both sides alike and the
    ratio of the medians stays fair. ``after_*`` run untimed after each call of that side."""
    sides = [(ours, after_ours)] + ([(theirs, after_theirs)] if theirs is not None else [])
    plans = []
    for call, after in sides:  # one warm-up call each sets the block length
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        if after is not None:
            after()
        inner = max(1, min(2000, int(block_seconds / max(first, 1e-7))))
        plans.append((call, after, inner, first > slow_seconds))
    if any(slow for *_, slow in plans):  # a call of seconds: fewer repeats keep the run to minutes
        repeats = min(repeats, 3)
    blocks: list[list[float]] = [[] for _ in plans]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for times, (call, after, inner, _) in zip(blocks, plans, strict=True):
                total = 0.0
                for _ in range(inner):
                    t0 = time.perf_counter()
                    call()
                    total += time.perf_counter() - t0
                    if after is not None:
                        after()
                times.append(total / inner)
    finally:
        if enabled:
            gc.enable()
    out = [
        {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "repeats": repeats,
            "calls_per_repeat": inner,
        }
        for times, (_, _, inner, _) in zip(blocks, plans, strict=True)
    ]
    return out[0], (out[1] if theirs is not None else None)


def machine_limits(np: Any, repeats: int) -> dict[str, float]:
    """Measured float32 matmul peak (FLOP/s) and memory bandwidth (bytes/s, copy read + write),
    and NumPy's float32 ``exp`` and product (seconds a number, over 1 MiB, which stays in cache):
    not roofline limits, but what the elementwise passes of a case cost on this machine."""
    rng = np.random.default_rng(0)
    n = 2048
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    mm = measure(lambda: a @ b, repeats, block_seconds=0.0)
    out = {"matmul_n": n, "matmul_peak_flops": 2 * n**3 / mm["median_s"]}
    for label, nbytes in (("bandwidth", 256 << 20), ("bandwidth_8MiB", 8 << 20)):
        src = np.ones(nbytes // 4, dtype=np.float32)
        dst = np.empty_like(src)
        t = measure(lambda src=src, dst=dst: np.copyto(dst, src), repeats)
        out[label] = 2 * nbytes / t["median_s"]
    x = rng.uniform(-4.0, 0.0, 1 << 18).astype(np.float32)
    y = np.empty_like(x)
    for label, call in (
        ("exp_s", lambda: np.exp(x, out=y)),
        ("mul_s", lambda: np.multiply(x, x, out=y)),
    ):
        out[label] = measure(call, repeats)["median_s"] / x.size
    return out


# ---------------------------------------------------------------------------------- models
def reference_model(arch: str, transformers: Any, ours: Any, attn: str) -> Any:
    """A transformers model whose config matches our backbone config ``ours``."""
    if arch == "mamba2":
        cfg = transformers.Mamba2Config(
            hidden_size=ours.hidden_size, state_size=ours.state_size,
            num_hidden_layers=ours.num_hidden_layers, num_heads=ours.num_heads,
            head_dim=ours.head_dim, n_groups=ours.n_groups, expand=ours.expand,
            conv_kernel=ours.conv_kernel, chunk_size=ours.chunk_size, vocab_size=8,
        )  # fmt: skip
        return transformers.Mamba2Model(cfg)
    if arch == "mamba":
        cfg = transformers.MambaConfig(
            hidden_size=ours.hidden_size, state_size=ours.state_size,
            num_hidden_layers=ours.num_hidden_layers, expand=ours.expand,
            conv_kernel=ours.conv_kernel, time_step_rank=ours.time_step_rank, vocab_size=8,
        )  # fmt: skip
        return transformers.MambaModel(cfg)
    if arch == "rwkv4":
        cfg = transformers.RwkvConfig(
            hidden_size=ours.hidden_size, num_hidden_layers=ours.num_hidden_layers,
            attention_hidden_size=ours.attention_hidden_size,
            intermediate_size=ours.intermediate_size, vocab_size=8, rescale_every=0,
            context_length=1 << 16,
        )  # fmt: skip
        return transformers.RwkvModel(cfg)
    cfg = transformers.LlamaConfig(
        hidden_size=ours.hidden_size, intermediate_size=ours.intermediate_size,
        num_hidden_layers=ours.num_hidden_layers, num_attention_heads=ours.num_attention_heads,
        num_key_value_heads=ours.num_key_value_heads, head_dim=ours.head_dim,
        rms_norm_eps=ours.rms_norm_eps, vocab_size=8, max_position_embeddings=1 << 16,
        attn_implementation=attn,
    )  # fmt: skip
    return transformers.LlamaModel(cfg)


def build_pair(arch: str, args: argparse.Namespace, torch: Any, transformers: Any):
    """``(theirs, ours)``: the reference model and our Backbone with the same weights."""
    from kizzasi_lite import KizzasiConfig, load_backbone
    from kizzasi_lite.models import Backbone

    kc = KizzasiConfig(
        model_type=arch, hidden_dim=HIDDEN, state_dim=STATE, num_layers=LAYERS,
        context_window=args.context,
    )  # fmt: skip
    cfg = kc.backbone_config()
    torch.manual_seed(0)
    theirs = reference_model(arch, transformers, cfg, args.attn).eval()
    with tempfile.TemporaryDirectory() as folder:
        theirs.save_pretrained(folder)
        loaded = load_backbone(folder)
    module = loaded.module
    shapes = getattr(module, "param_shapes", None) or module._param_shapes
    got = {k: tuple(v.shape) for k, v in loaded.params.items()}
    if got != shapes(cfg):
        raise RuntimeError(f"{arch}: the reference checkpoint does not fit the preset's config")
    return theirs, Backbone(arch, cfg, loaded.params)


def with_context(bb: Any, window: int) -> Any:
    """The Transformer backbone with a KV window of ``window`` (other archs unchanged)."""
    if bb.arch != "transformer":
        return bb
    return dataclasses.replace(bb, config=dataclasses.replace(bb.config, context_window=window))


def agreement(np: Any, torch: Any, theirs: Any, ours: Any) -> float:
    """Max |ours - theirs| of the last hidden state over a short random sequence (a sanity check)."""
    x = np.random.default_rng(1).standard_normal((2, 8, HIDDEN), dtype=np.float32)
    with torch.no_grad():
        ref = theirs(inputs_embeds=torch.from_numpy(x), use_cache=False).last_hidden_state
    y, _ = ours.forward(ours.xp.asarray(x))
    return float(np.max(np.abs(np.asarray(y) - ref.numpy())))


# ---------------------------------------------------------------------------------- cases
def step_calls(np: Any, torch: Any, theirs: Any, ours: Any, batch: int, window: int):
    """``(ours_call, theirs_call, theirs_after)`` for one step of ``batch`` streams; with
    ``theirs`` None (not timed) nothing of the reference is built: ``(ours_call, None, None)``."""
    x = np.random.default_rng(2).standard_normal((batch, HIDDEN), dtype=np.float32)
    xo = ours.xp.asarray(x)
    state = {"s": ours.init_state(batch)}
    if ours.arch == "transformer":  # a full window: every step attends to `window` keys
        state["s"]["pos"] = ours.xp.full((batch,), window, dtype=ours.xp.int64)

    def ours_call() -> None:
        _, state["s"] = ours.step(xo, state["s"])

    if theirs is None:
        return ours_call, None, None
    xt = torch.from_numpy(x)[:, None, :]
    kw: dict[str, Any] = {"use_cache": True}
    after = None
    with torch.no_grad():
        if ours.arch == "transformer":
            prefill = torch.from_numpy(
                np.random.default_rng(3).standard_normal((batch, window - 1, HIDDEN), np.float32)
            )
            kw["past_key_values"] = theirs(inputs_embeds=prefill, use_cache=True).past_key_values

            def after() -> None:
                kw["past_key_values"].crop(-1)
        else:
            out = theirs(inputs_embeds=xt, use_cache=True)  # creates the cache
            if ours.arch == "rwkv4":
                kw["state"] = out.state
            else:
                kw["cache_params"] = out.cache_params

    def theirs_call() -> Any:
        with torch.no_grad():
            out = theirs(inputs_embeds=xt, **kw)
        if ours.arch == "rwkv4":
            kw["state"] = out.state
        return out.last_hidden_state

    return ours_call, theirs_call, after


def forward_calls(np: Any, torch: Any, theirs: Any, ours: Any, length: int):
    """``(ours_call, theirs_call)`` for ``forward`` over one sequence of ``length`` steps."""
    x = np.random.default_rng(4).standard_normal((1, length, HIDDEN), dtype=np.float32)
    xo, xt = ours.xp.asarray(x), torch.from_numpy(x)

    def theirs_call() -> None:
        with torch.no_grad():
            theirs(inputs_embeds=xt, use_cache=False)

    return (lambda: ours.forward(xo)), theirs_call


def train_calls(np: Any, torch: Any, theirs: Any, ours: Any, batch: int, length: int):
    """``(ours_call, theirs_call)`` for one training step (forward, backward, AdamW)."""
    from kizzasi_lite.autodiff import value_and_grad
    from kizzasi_lite.train.losses import mse
    from kizzasi_lite.train.optim import AdamW

    rng = np.random.default_rng(5)
    x = rng.standard_normal((batch, length, HIDDEN), dtype=np.float32)
    target = rng.standard_normal((batch, length, HIDDEN), dtype=np.float32)
    xo, to = ours.xp.asarray(x), ours.xp.asarray(target)
    mod, cfg = ours.module, ours.config
    opt, params = AdamW(lr=1e-5), {"p": dict(ours.params)}

    def loss(p: dict) -> Any:
        return mse(mod.forward(cfg, p, xo)[0], to)

    def ours_call() -> None:
        _, grads = value_and_grad(loss, params["p"])
        params["p"] = opt.update(params["p"], grads)

    model = theirs.train()
    topt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    xt, tt = torch.from_numpy(x), torch.from_numpy(target)

    def theirs_call() -> None:
        topt.zero_grad(set_to_none=True)
        y = model(inputs_embeds=xt, use_cache=False).last_hidden_state
        torch.nn.functional.mse_loss(y, tt).backward()
        topt.step()

    return ours_call, theirs_call


# ---------------------------------------------------------------------------------- driver
def batched_step_is_broken(np: Any, torch: Any, theirs: Any, ours: Any, window: int) -> str:
    """Why the reference's step of 2 streams gives a wrong shape ("" when it is right).

    transformers' RWKV step broadcasts the (B, C) token-shift state against the (B, 1, C) input:
    it computes B x B rows and returns (B, B, C), so its batched step is neither right nor
    comparable (and at 1024 streams it would take hours).
    """
    _, t_call, after = step_calls(np, torch, theirs, ours, 2, min(window, 8))
    shape = tuple(t_call().shape)
    if after is not None:
        after()
    return "" if shape == (2, 1, HIDDEN) else f"a step of 2 streams returns shape {shape}"


def run_arch(arch: str, args: argparse.Namespace, np: Any, torch: Any, transformers: Any, limits):
    """All cases of one architecture: a list of result rows."""
    theirs, ours = build_pair(arch, args, torch, transformers)
    rows = []
    peak, bw = limits["matmul_peak_flops"], limits["bandwidth"]
    diff = agreement(np, torch, theirs, with_context(ours, 64))

    def record(case: str, work: costs.Work, o: dict, t: dict | None, **extra: Any) -> None:
        floor, bound = work.floor(peak, bw)
        row = {"arch": arch, "case": case, **extra, "ours": o, "theirs": t, "work": work.to_dict()}
        row.update(floor_s=floor, bound=bound, max_abs_diff=diff)
        row["ours_fraction_of_floor"] = floor / o["median_s"]
        row["ours_fraction_of_peak"] = work.flops / o["median_s"] / peak
        if t is not None:
            row["speedup"] = t["median_s"] / o["median_s"]
            row["theirs_fraction_of_floor"] = floor / t["median_s"]
        rows.append(row)
        print(_line(row), flush=True)

    numel = ours.state_numel()
    broken = batched_step_is_broken(np, torch, theirs, ours, args.context)
    for batch in args.batches:
        if arch == "transformer" and batch > 64:
            continue  # the KV cache of that many streams is several GB
        note = f"theirs: {broken}; not timed" if broken and batch > 1 else None
        timed = None if note or args.no_theirs else theirs  # an untimed reference is not built
        o_call, t_call, after = step_calls(np, torch, timed, ours, batch, args.context)
        o, t = measure_pair(o_call, t_call, args.repeats, after)
        work = costs.step_work(arch, ours.config, ours.params, numel, batch)
        record(f"step_b{batch}", work, o, t, batch=batch, length=1, note=note)
    for length in args.forward_lens:
        full = with_context(ours, length)
        o_call, t_call = forward_calls(np, torch, theirs, full, length)
        o, t = measure_pair(o_call, None if args.no_theirs else t_call, args.repeats)
        work = costs.forward_work(arch, full.config, full.params, numel, 1, length)
        record(f"forward_T{length}", work, o, t, batch=1, length=length)
    full = with_context(ours, args.train_len)
    o_call, t_call = train_calls(np, torch, theirs, full, args.train_batch, args.train_len)
    o, t = measure_pair(o_call, None if args.no_theirs else t_call, args.repeats)
    work = costs.train_work(arch, full.config, full.params, args.train_batch, args.train_len)
    record("train", work, o, t, batch=args.train_batch, length=args.train_len)
    return rows


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:10.3f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:6.1f}%"


HEADER = (
    f"{'arch':<12}{'case':<14}{'ours ms':>11}{'theirs ms':>11}{'speed-up':>9}"
    f"{'floor ms':>11} {'bound':<8}{'ours/floor':>11}{'theirs/fl':>10}{'ours/peak':>10}"
)


def _line(r: dict) -> str:
    t = r["theirs"]["median_s"] if r["theirs"] else None
    up = f"{r['speedup']:8.1f}x" if "speedup" in r else f"{'-':>9}"
    if r.get("note"):
        up = f"{'invalid':>9}"
    return (
        f"{r['arch']:<12}{r['case']:<14}{_ms(r['ours']['median_s']):>11}{_ms(t):>11}{up}"
        f"{_ms(r['floor_s']):>11} {r['bound']:<8}{_pct(r['ours_fraction_of_floor']):>11}"
        f"{_pct(r.get('theirs_fraction_of_floor')):>10}{_pct(r['ours_fraction_of_peak']):>10}"
    )


# (arch, case, description, minimum speed-up over torch, minimum fraction of floor, of peak)
TARGETS = (
    ("mamba2", "step_b1", "step of 1 stream: >=20x torch, within 2x of the floor", 20, 0.5, 0),
    ("mamba2", "step_b1024", "step of 1024 streams: within 2x of the floor", 0, 0.5, 0),
    ("mamba2", "forward_T8192", "forward T=8192: >=50% of peak, >=3x torch", 3, 0, 0.5),
    ("mamba", "forward_T8192", "forward T=8192: >=50% of peak, >=3x torch", 3, 0, 0.5),
    ("mamba", "train", "training step: >=2x torch", 2, 0, 0),
    ("mamba2", "train", "training step: at least on par with torch", 1, 0, 0),
)


def targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    """The issue's targets that this run measured: ``(target, met, figures)``."""
    by = {(r["arch"], r["case"]): r for r in rows}
    out = []
    for arch, case, text, speedup, floor, peak in TARGETS:
        r = by.get((arch, case))
        if r is None:
            continue
        up = r.get("speedup")
        ok = (
            (speedup == 0 or (up is not None and up >= speedup))
            and r["ours_fraction_of_floor"] >= floor
            and r["ours_fraction_of_peak"] >= peak
        )
        figures = (
            f"{'-' if up is None else f'{up:.2f}'}x torch, "
            f"{100 * r['ours_fraction_of_floor']:.0f}% of floor, "
            f"{100 * r['ours_fraction_of_peak']:.1f}% of peak"
        )
        out.append((f"{arch} {text}", ok, figures))
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    p.add_argument("--archs", default=",".join(ARCHS), help="comma-separated, of " + str(ARCHS))
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per case (median)")
    p.add_argument("--batches", type=ints, default=[1, 64, 1024], help="streams per step")
    p.add_argument("--forward-lens", type=ints, default=[4096, 8192], help="forward lengths")
    p.add_argument("--train-batch", type=int, default=32, help="windows per training batch")
    p.add_argument("--train-len", type=int, default=128, help="steps per training window")
    p.add_argument("--context", type=int, default=1024, help="Transformer KV window of a step")
    p.add_argument("--attn", default="sdpa", help="transformers attn_implementation (Llama)")
    p.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP/torch threads")
    p.add_argument("--no-theirs", action="store_true", help="time kizzasi_lite only")
    p.add_argument("--quick", action="store_true", help="small sizes, 3 repeats (smoke run)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results (- = stdout)")
    args = p.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    bad = sorted(set(args.archs) - set(ARCHS))
    if bad:
        p.error(f"unknown architecture(s) {bad}; choose from {ARCHS}")
    if args.quick:
        args.repeats, args.batches, args.forward_lens = 3, [1, 64], [512]
        args.train_batch, args.train_len, args.context = 4, 32, 128
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; print the table (and write JSON with ``--json``)."""
    args = _parse(argv)
    if args.threads:  # before numpy and torch load their thread pools
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    import numpy as np
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    limits = machine_limits(np, max(args.repeats, 5))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load}, torch threads {torch.get_num_threads()}\n"
        f"float32 matmul peak {limits['matmul_peak_flops'] / 1e9:.1f} GFLOP/s (n=2048); "
        f"copy bandwidth {limits['bandwidth'] / 1e9:.2f} GB/s (256 MiB), "
        f"{limits['bandwidth_8MiB'] / 1e9:.2f} GB/s (8 MiB); NumPy float32 exp "
        f"{limits['exp_s'] * 1e9:.2f} ns a number, product {limits['mul_s'] * 1e9:.2f} ns\n"
    )
    print(HEADER)
    rows = []
    for arch in args.archs:
        rows += run_arch(arch, args, np, torch, transformers, limits)
    print("\ntargets (issue 6):")
    met = targets(rows)
    for name, ok, figures in met:
        print(f"  [{'met' if ok else 'MISSED'}] {name}: {figures}")
    if not met:
        print("  (none: the targets concern the cases of mamba2 and mamba)")
    if args.json:
        report = {
            "machine": {**limits, "cpus": os.cpu_count(), "load_average": load,
                        "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
                        "torch": torch.__version__, "transformers": transformers.__version__},
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "results": rows,
            "targets": [{"target": n, "met": ok, "figures": f} for n, ok, f in met],
        }  # fmt: skip
        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
