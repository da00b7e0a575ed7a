"""What the ``kizzasi`` subcommands do, as plain functions of parsed options (see :mod:`.cli`).

Each ``run_*`` function takes the ``argparse`` namespace and the output stream for human-readable
messages, and returns the exit code. Errors are ``KizzasiError``s; :func:`kizzasi_lite.cli.main`
turns them into one-line messages.
"""

from __future__ import annotations

import json
import math
import signal
import time
from argparse import Namespace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from kizzasi_lite.config import PRESETS, KizzasiConfig, ModelType
from kizzasi_lite.errors import ConfigError, InputError, KizzasiError
from kizzasi_lite.io import Signal, open_sink, open_source, parse_location, read_data, write_table
from kizzasi_lite.predictor import Kizzasi


# ---------------------------------------------------------------------- shared helpers
def load_model(path: str | Path) -> Kizzasi:
    """A model folder written by ``kizzasi fit`` (or ``save_pretrained``)."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a model folder" if path.exists() else "no such model folder"
        raise InputError(f"{path}: {what} (make one with `kizzasi fit DATA --out FOLDER`)")
    return Kizzasi.from_pretrained(path)  # guardrails.json too, when there is one


def load_guardrails(path: str | Path) -> Any:
    """A ``GuardrailSet`` from a JSON file in its ``to_dict`` format."""
    from kizzasi_lite.logic import GuardrailSet

    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read guardrails file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {exc.lineno}: expected JSON ({exc.msg})") from None
    try:
        return GuardrailSet.from_dict(spec)
    except KizzasiError as exc:
        exc.args = (f"{path}: {exc}",)  # the same error, naming the file
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a guardrail set ({type(exc).__name__}: {exc})") from None


def attach_guardrails(model: Kizzasi, path: str | Path | None) -> Any:
    """Load ``path`` (if given) onto ``model``; return the model's guardrails (or None)."""
    if path is not None:
        model.set_guardrails(load_guardrails(path))
    return model.guardrails


def split_columns(text: str | None) -> list[str] | None:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; None or empty -> None."""
    if not text:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def model_input(model: Kizzasi, spec: str, columns: list[str] | None) -> Signal:
    """Read DATA and pick the channels the model was trained on (by name when it knows them)."""
    d = model.config.input_dim
    known = model.info.get("columns")
    sig = read_data(spec, columns)
    if columns is None and known and sig.names != known and all(k in sig.names for k in known):
        idx = [sig.names.index(k) for k in known]
        sig = Signal(sig.data[:, idx], list(known), sig.samplerate, sig.meta)
    if sig.data.shape[1] != d:
        raise InputError(
            f"{parse_location(spec)}: has {sig.data.shape[1]} channels {sig.names}; the model "
            f"expects {d}{f' ({known})' if known else ''}: pick them with --columns"
        )
    return sig


def _pct(model: float, base: float) -> str:
    return f"{100 * (model - base) / base:+.1f}%" if base else "n/a"


def say(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


def _wrote(out: TextIO, where: str) -> None:
    if where != "-":  # standard output needs no announcement
        say(out, f"wrote {where}")


# ---------------------------------------------------------------------- fit
def build_config(args: Namespace, sig: Signal) -> KizzasiConfig:
    """The config from ``--preset`` (sized to the data) and the explicit options."""
    channels = sig.data.shape[1]
    over: dict[str, Any] = {}
    for opt, field in (
        ("model", "model_type"), ("hidden_dim", "hidden_dim"), ("state_dim", "state_dim"),
        ("layers", "num_layers"), ("head_dim", "head_dim"), ("head", "head"),
        ("dtype", "dtype"), ("backend", "backend"), ("seed", "seed"),
        ("context_window", "context_window"),
    ):  # fmt: skip
        value = getattr(args, opt, None)
        if value is not None:
            over[field] = value
    if args.forecast_horizon:
        over["forecast_horizon"] = args.forecast_horizon
        over["forecast_lookback"] = args.lookback
        over["forecast_patch"] = args.patch
        over["revin"] = args.revin
    if args.preset == "audio":
        rate = int(sig.samplerate or 16000)
        return PRESETS["audio"](max(rate, 1000), **{"input_dim": channels, **over})
    if args.preset:
        return PRESETS[args.preset](channels, **over)
    return KizzasiConfig(input_dim=channels, **{"model_type": ModelType.MAMBA2, **over})


def _val_part(sig: Signal, frac: float) -> np.ndarray | None:
    n_val = int(round(len(sig.data) * frac))
    return sig.data[len(sig.data) - n_val :] if n_val >= 2 else None


def run_fit(args: Namespace, out: TextIO) -> int:
    target = Path(args.out)
    if target.exists() and not target.is_dir():  # before training, not after
        raise InputError(f"--out {args.out} is a file; give a folder for the model")
    sig = read_data(args.data, split_columns(args.columns))
    config = build_config(args, sig)
    model = Kizzasi(config)
    attach_guardrails(model, args.guardrails)
    model.info = {
        "columns": sig.names,
        "data": str(parse_location(args.data)),
        **({"samplerate": sig.samplerate} if sig.samplerate else {}),
    }
    say(out, f"data: {parse_location(args.data)}: {len(sig.data)} samples x {len(sig.names)} "
        f"channels {sig.names}")  # fmt: skip
    say(out, f"model: {model!r}")
    options = dict(
        epochs=args.epochs, batch_size=args.batch_size, window=args.window, lr=args.lr,
        val_fraction=args.val_fraction, seed=args.seed, verbose=not args.quiet,
    )  # fmt: skip
    budget, start = args.time_budget, time.perf_counter()
    if config.forecast_horizon:
        say(out, f"training the direct {config.forecast_horizon}-step forecast head ...")
        model.fit(sig.data, objective="forecast", time_budget=budget and budget / 2, **options)
    say(out, "training next-step prediction ...")
    left = None if budget is None else max(budget - (time.perf_counter() - start), 1.0)
    model.fit(sig.data, time_budget=left, **options)
    seconds = time.perf_counter() - start
    val = _val_part(sig, args.val_fraction)
    if config.forecast_horizon and val is not None:
        _forecast_metrics(model, val)
    report_metrics(model, out, f"the last {args.val_fraction:.0%} of the data", seconds)
    model.save_pretrained(args.out)  # with guardrails.json when guardrails were given
    files = sorted(p.name for p in Path(args.out).iterdir() if not p.name.startswith("."))
    say(out, f"saved the model to {args.out}/ ({', '.join(files)})")
    return 0


def _forecast_metrics(model: Kizzasi, val: np.ndarray) -> None:
    """Direct-head forecast MSE on validation, beside repeating the last value (z units)."""
    from kizzasi_lite.train.fit import forecast_mse

    c = model.config
    lb, h = c.forecast_lookback, c.forecast_horizon
    if len(val) < lb + h:
        return
    std = np.asarray(model.params["normalizer.std"], dtype=np.float64)
    z = val / std
    errs = [z[t + lb : t + lb + h] - z[t + lb - 1] for t in range(len(z) - lb - h + 1)]
    model.info = {
        **model.info,
        "forecast_val_mse": forecast_mse(model, [val]),
        "forecast_val_mse_repeat_last": float(np.mean(np.square(errs))),
    }


def report_metrics(model: Kizzasi, out: TextIO, validation: str, seconds: float) -> None:
    """Print the validation metrics beside the repeat-last-value baseline; ``validation`` says
    which data they come from."""
    info = model.info
    say(out, f"trained in {seconds:.1f} s")
    if "val_mse" not in info:
        say(out, "no validation metrics (no validation data: --val-fraction 0)")
        return
    say(out, f"validation: {validation}, in normalised units "
        "(errors divided by each channel's training standard deviation)")  # fmt: skip
    say(out, f"  {'metric':24s} {'model':>10s} {'repeat-last':>12s} {'change':>8s}")
    rows = [("next-step MSE", info["val_mse"], info["val_mse_repeat_last"]),
            ("next-step MAE", info["val_mae"], info["val_mae_repeat_last"])]  # fmt: skip
    if "forecast_val_mse_repeat_last" in info:
        h = model.config.forecast_horizon
        rows.append((f"{h}-step forecast MSE", info["forecast_val_mse"],
                     info["forecast_val_mse_repeat_last"]))  # fmt: skip
    for name, m, b in rows:
        say(out, f"  {name:24s} {m:10.4f} {b:12.4f} {_pct(m, b):>8s}")
    if info.get("anomaly_threshold") is not None:
        q = info.get("anomaly_quantile", 0.99)
        say(out, f"anomaly threshold: {info['anomaly_threshold']:.3f} "
            f"(the {q:.0%} quantile of validation scores)")  # fmt: skip


# ---------------------------------------------------------------------- forecast
def forecast(
    model: Kizzasi, history: np.ndarray, horizon: int, *, samples: int | None = None,
    method: str = "auto", seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray | None, str]:  # fmt: skip
    """``(mean (H, C), samples (K, H, C) or None, method used)`` from the end of ``history``."""
    c = model.config
    direct = (
        c.forecast_horizon and horizon <= c.forecast_horizon and len(history) >= c.forecast_lookback
    )
    if method == "direct" and not direct:
        if not c.forecast_horizon:
            why = "this model has no direct head (fit it with --forecast-horizon H)"
        elif horizon > c.forecast_horizon:
            why = f"its head forecasts up to {c.forecast_horizon} steps, asked for {horizon}"
        else:
            why = f"its head reads {c.forecast_lookback} samples, the data has {len(history)}"
        raise ConfigError(f"--method direct: {why}")
    if samples and not model.gaussian:
        raise ConfigError("--samples needs a model fitted with --head gaussian")
    if method == "direct" or (method == "auto" and direct and not samples):
        return model.forecast(history, horizon), None, "direct"
    model.reset()
    if samples:
        paths = model.predict_n(history, horizon, samples=samples, seed=seed)  # (K, H, C)
        return paths.mean(axis=0), paths, "rollout"
    return model.predict_n(history, horizon), None, "rollout"


def run_forecast(args: Namespace, out: TextIO) -> int:
    model = load_model(args.model_dir)
    sig = model_input(model, args.data, split_columns(args.columns))
    history = sig.data[-args.context :] if args.context else sig.data
    mean, paths, method = forecast(
        model, history, args.horizon, samples=args.samples, method=args.method, seed=args.seed
    )
    t0 = len(sig.data)
    names, table = ["step", *sig.names], [np.arange(t0, t0 + args.horizon)[:, None], mean]
    band = None
    if paths is not None:
        band = (np.quantile(paths, 0.05, axis=0), np.quantile(paths, 0.95, axis=0))
        names += [f"{n}_q05" for n in sig.names] + [f"{n}_q95" for n in sig.names]
        table += list(band)
    data = np.concatenate(table, axis=1)
    say(out, f"forecast: {args.horizon} steps after sample {t0 - 1} ({method}"
        f"{f', {args.samples} sampled paths' if paths is not None else ''})")  # fmt: skip
    if args.out:
        write_table(args.out, data, names)
        _wrote(out, args.out)
    else:
        say(out, ",".join(names))
        for row in data:
            say(out, ",".join([str(int(row[0]))] + [f"{v:.6g}" for v in row[1:]]))
    if args.plot:
        from kizzasi_lite.io.plot import plot_forecast

        shown = sig.data[-args.plot_history :]
        plot_forecast(args.plot, shown, mean, names=sig.names, band=band, start=t0 - len(shown),
                      title=f"{args.horizon}-step forecast ({method})")  # fmt: skip
        say(out, f"wrote {args.plot}")
    return 0


# ---------------------------------------------------------------------- detect
def run_detect(args: Namespace, out: TextIO) -> int:
    model = load_model(args.model_dir)
    sig = model_input(model, args.data, split_columns(args.columns))
    threshold = args.threshold
    where = "--threshold"
    if threshold is None:
        threshold, where = model.info.get("anomaly_threshold"), "the model's validation data"
        if threshold is None:
            raise ConfigError(
                "the model has no anomaly threshold (fit it with validation data); pass --threshold"
            )
    res = model.score(sig.data)
    flags = res["score"] > threshold
    idx = np.flatnonzero(flags)
    say(out, f"{len(idx)} of {len(sig.data)} steps score above {threshold:.3f} (from {where})")
    for t in idx[np.argsort(-res["score"][idx])][:5]:
        say(out, f"  step {t}: score {res['score'][t]:.2f}")
    if args.out:
        names = ["step", "score", "nll", "anomaly"] + [f"pred_{n}" for n in sig.names]
        table = np.concatenate(
            [np.arange(len(flags))[:, None], res["score"][:, None], res["nll"][:, None],
             flags[:, None], res["prediction"]], axis=1,
        )  # fmt: skip
        write_table(args.out, table, names)
        _wrote(out, args.out)
    if args.plot:
        from kizzasi_lite.io.plot import plot_anomalies

        a = max(0, len(sig.data) - args.plot_last) if args.plot_last else 0
        plot_anomalies(
            args.plot, sig.data[a:], res["prediction"][a:], scores=res["score"][a:],
            threshold=threshold, flagged=idx[idx >= a] - a, sigma=res["sigma"][a:],
            names=sig.names, start=a,
        )  # fmt: skip
        say(out, f"wrote {args.plot}")
    return 0


# ---------------------------------------------------------------------- stream
class Streamer:
    """One sample in; out: the guarded next-step prediction, the anomaly score of the sample,
    and whether the guardrails moved the prediction.

    The score compares the sample with the model's raw prediction (what the network expected);
    the guardrails then project that prediction onto the allowed set, with the last emitted
    (guarded) prediction as the reference of rate limits and temporal rules.
    """

    def __init__(self, model: Kizzasi) -> None:
        self.model = model
        self.threshold = model.info.get("anomaly_threshold")
        self.guards = model.guardrails
        self.previous: np.ndarray | None = None  # (1, D) the last emitted prediction
        self.moved = 0
        model.reset()
        if self.guards is not None:
            self.guards.reset()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """``x`` (D,) -> (prediction of the next sample (D,), score of ``x``, moved)."""
        from kizzasi_lite.backends import to_numpy

        score = self.model.score_one(x)  # steps the model; keeps the raw prediction
        raw = np.asarray(self.model.last_raw, dtype=np.float64)[None]  # (1, D)
        if self.guards is None:
            return raw[0], score, False
        safe, report = self.guards.enforce(raw, previous=self.previous)
        y = np.asarray(to_numpy(safe), dtype=np.float64)  # (1, D)
        self.previous = y
        moved = report.interventions > 0
        self.moved += moved
        return y[0], score, moved


class _Stop:
    """Ctrl-C / SIGTERM during a stream: while waiting for input, stop at once; while a sample
    is being processed, finish it (prediction written, count kept) and stop after it."""

    def __init__(self) -> None:
        self.waiting, self.requested, self.previous = True, False, {}

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.waiting:
            raise KeyboardInterrupt

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self)
            except ValueError:  # not the main thread (embedding, tests): leave signals alone
                break
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run_stream(args: Namespace, out: TextIO) -> int:
    model = load_model(args.model_dir)
    attach_guardrails(model, args.guardrails)
    step = Streamer(model)
    n, start, failed = 0, time.perf_counter(), None
    with _Stop() as stop:
        try:
            with open_source(args.source, split_columns(args.columns)) as source:
                _match_channels(model, source, args.columns is None)
                audio = parse_location(args.sink).kind == "audio"
                names = source.names
                known = model.info.get("columns")
                if known and names == [f"ch{i}" for i in range(len(names))]:
                    names = known  # unnamed channels (JSON lists): the model's names
                preds = [f"pred_{name}" for name in names]
                extra = ["guarded"] if step.guards is not None else []
                names = preds if audio else ["step", *preds, "score", "anomaly", *extra]
                with open_sink(args.sink, names, samplerate=source.samplerate) as sink:
                    samples = iter(source)
                    while not stop.requested and not (args.limit and n >= args.limit):
                        stop.waiting = True
                        try:  # a bad sample ends the stream, keeping the rows before it
                            x = next(samples, None)
                            stop.waiting = False
                            if x is None:
                                break
                            y, score, moved = step(x)
                        except KizzasiError as exc:
                            failed = exc
                            break
                        if audio:
                            sink.write(y.tolist())
                        else:
                            flag = step.threshold is not None and score > step.threshold
                            guarded = [int(moved)] if extra else []
                            sink.write([n, *y.tolist(), score, int(flag), *guarded])
                        n += 1
        except KeyboardInterrupt:
            stop.requested = True
    if failed is not None:  # the same error, saying what was kept
        failed.args = (f"{failed} (stopped there; kept the {n} rows written to {args.sink})",)
        raise failed
    rate = n / max(time.perf_counter() - start, 1e-9)
    why = "stopped by an interrupt" if stop.requested else "end of input"
    say(out, f"stream: {why} after {n} samples ({rate:.0f}/s); wrote {n} rows to {args.sink}")
    if step.guards is not None:
        busy = {k: v for k, v in step.guards.counters.items() if v}
        say(out, f"guardrails moved {step.moved} of {n} predictions; active: "
            + (", ".join(f"{k} x{v}" for k, v in busy.items()) or "none"))  # fmt: skip
    return 0


def _match_channels(model: Kizzasi, source: Any, pick_known: bool) -> None:
    """Pick the model's training channels from the source by name, or check the count."""
    known = model.info.get("columns")
    if pick_known and known and source.names != known and all(k in source.names for k in known):
        source.select(known)
    if len(source.names) != model.config.input_dim:
        raise InputError(
            f"{source.where}: has {len(source.names)} channels {source.names}; the model "
            f"expects {model.config.input_dim}{f' ({known})' if known else ''}: "
            "pick them with --columns"
        )


# ---------------------------------------------------------------------- info
def describe(model: Kizzasi, path: Path) -> dict[str, Any]:
    """Everything ``kizzasi info`` shows, as a JSON-ready dict."""
    c, info = model.config, model.info
    groups: dict[str, int] = {}
    for k, v in model.params.items():
        g = k.split(".")[0]
        groups[g] = groups.get(g, 0) + math.prod(v.shape)
    mean = np.asarray(model.params["normalizer.mean"], dtype=np.float64).tolist()
    std = np.asarray(model.params["normalizer.std"], dtype=np.float64).tolist()
    names = info.get("columns") or [f"ch{i}" for i in range(c.input_dim)]
    # from_pretrained loaded (and checked) the folder's guardrails.json, if it has one
    guard_desc = None if model.guardrails is None else model.guardrails.to_dict()
    runs = [
        {"objective": r.get("objective"), "epochs": len(r.get("epoch", [])),
         "final_train_loss": (r.get("train_loss") or [None])[-1],
         "best_val_loss": min(r.get("val_loss") or [math.inf]),
         "seconds": round(sum(r.get("seconds", [])), 2)}
        for r in info.get("history", [])
    ]  # fmt: skip
    metrics = {k: v for k, v in info.items() if k.startswith(("val_", "forecast_val", "anomaly_"))}
    return {
        "path": str(path),
        "architecture": c.model_type.value,
        "config": c.to_dict(),
        "backbone": model.backbone_config.to_dict(),
        "parameters": model.num_params,
        "parameters_by_part": groups,
        "state_bytes_per_stream": model.state_bytes(),
        "normalisation": {
            n: {"mean": m, "std": s} for n, m, s in zip(names, mean, std, strict=False)
        },
        "guardrails": guard_desc,
        "training": runs,
        "metrics": metrics,
        "data": info.get("data"),
    }


def run_info(args: Namespace, out: TextIO) -> int:
    model = load_model(args.model_dir)
    d = describe(model, Path(args.model_dir))
    if args.json:
        say(out, json.dumps(d, indent=2, default=str))
        return 0
    c = model.config
    say(out, f"model folder: {d['path']}")
    say(out, f"architecture: {d['architecture']}  (backend {c.backend}, {c.dtype})")
    say(out, f"sizes: input_dim={c.input_dim} output_dim={c.output_dim} hidden_dim={c.hidden_dim} "
        f"state_dim={c.state_dim} num_layers={c.num_layers} head={c.head} "
        f"forecast_horizon={c.forecast_horizon}")  # fmt: skip
    parts = ", ".join(f"{k} {v:,}" for k, v in d["parameters_by_part"].items())
    say(out, f"parameters: {d['parameters']:,} ({parts})")
    say(out, f"state per stream: {d['state_bytes_per_stream']:,} bytes")
    say(out, "normalisation (training data statistics):")
    for name, s in d["normalisation"].items():
        say(out, f"  {name:>12s}: mean {s['mean']:.6g}  std {s['std']:.6g}")
    g = d["guardrails"]
    say(out, "guardrails: " + ("none" if g is None else json.dumps(g)[:400]))
    say(out, "training history:" + ("" if d["training"] else " not trained"))
    for r in d["training"]:
        say(out, f"  {r['objective']}: {r['epochs']} epochs in {r['seconds']} s, final train loss "
            f"{_num(r['final_train_loss'])}, best validation loss {_num(r['best_val_loss'])}")  # fmt: skip
    for k, v in d["metrics"].items():
        say(out, f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0


def _num(v: float | None) -> str:
    """A loss for humans: 4 significant digits, ``n/a`` for none recorded."""
    return "n/a" if v is None else f"{v:.4g}"


def write_guardrails_file(guards: Any, path: str | Path) -> Path:
    """Save a ``GuardrailSet`` as JSON (its ``to_dict`` format), atomically."""
    from kizzasi_lite.io import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(guards.to_dict(), indent=2) + "\n", encoding="utf-8")
    return Path(path)
