"""``kizzasi demo``: the whole job, end to end, on the ETTh1 data shipped inside the package.

Six stages, each timed: load the data; fit a small Mamba2 (a direct 48-hour forecast head, then
next-step prediction with a Gaussian head for anomaly scores); forecast the test months; detect
anomalies (on the real test data with a few faults injected into a copy, so there is something
known to find); run a guarded stream through the same code as ``kizzasi stream``; write PNG plots
and a one-page HTML report. No network, no server. Splits follow the ETT protocol: 12 months of
training, 4 of validation, 4 of test (``kizzasi_lite.data.ett_splits``).
"""

from __future__ import annotations

import html
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from kizzasi_lite.config import KizzasiConfig
from kizzasi_lite.predictor import Kizzasi

HOURS = 30 * 24  # rows per ETT month (hourly)
HORIZON, LOOKBACK = 48, 96
STREAM_ROWS = 480
OT_RATE = 1.0  # degrees C per hour: the demo's thermal-inertia rule for predicted oil temperature


class Stages:
    """Times each stage and prints one line per stage as it ends."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out, self.total, self.times = out, total, []
        self.start = time.perf_counter()

    def run(self, name: str, fn: Any, *args: Any) -> Any:
        i = len(self.times) + 1
        self.out.write(f"[{i}/{self.total}] {name} ...\n")
        self.out.flush()
        t0 = time.perf_counter()
        result = fn(*args)
        self.times.append((name, time.perf_counter() - t0))
        self.out.write(f"[{i}/{self.total}] {name}: {self.times[-1][1]:.1f} s\n")
        self.out.flush()
        return result


def run_demo(
    out_dir: str | Path = "kizzasi-demo", *, quick: bool = False, out: TextIO | None = None
) -> Path:
    """Run the demo, write its report into ``out_dir`` and return the path of ``index.html``."""
    out = out or sys.stdout
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    st = Stages(out, 6)
    ctx: dict[str, Any] = {"quick": quick, "folder": folder, "out": out}
    st.run("load the bundled ETTh1 data", _load, ctx)
    st.run("fit a Mamba2 predictor", _fit, ctx)
    st.run("forecast the test months", _forecast, ctx)
    st.run("detect anomalies", _detect, ctx)
    st.run("stream with guardrails", _stream, ctx)
    page = st.run("write the report", _report, ctx, st)
    total = time.perf_counter() - st.start
    _summary(ctx, st.times)
    out.write("\nstage timings:\n")
    for name, sec in st.times:
        out.write(f"  {name:32s} {sec:6.1f} s\n")
    out.write(f"  {'total':32s} {total:6.1f} s\n")
    out.write(f"\nreport: {page.resolve()}\n")
    out.flush()
    return page


# ---------------------------------------------------------------------- stages
def _load(ctx: dict) -> None:
    from kizzasi_lite.data import ett_path, load_ett

    data, names = load_ett("ETTh1")
    a, b, c = 12 * HOURS, 16 * HOURS, 20 * HOURS
    ctx.update(names=names, train=data[:a], val=data[a:b], test=data[b:c], path=ett_path("ETTh1"))
    ctx["out"].write(f"    {ctx['path'].name}: {len(data)} hourly rows x {len(names)} channels "
                     f"{names}; train/val/test = {a}/{b - a}/{c - b} rows\n")  # fmt: skip


def _fit(ctx: dict) -> None:
    from kizzasi_lite.commands import report_metrics
    from kizzasi_lite.io.plot import plot_history

    quick, out = ctx["quick"], ctx["out"]
    config = KizzasiConfig(
        model_type="mamba2", input_dim=len(ctx["names"]), hidden_dim=16 if quick else 32,
        state_dim=16, num_layers=1 if quick else 2, head="gaussian",
        forecast_horizon=HORIZON, forecast_lookback=LOOKBACK,
    )  # fmt: skip
    model = Kizzasi(config)
    model.info = {"columns": ctx["names"], "data": "ETTh1 (bundled)"}
    out.write(f"    {model!r}\n")
    train, val = ctx["train"], ctx["val"]
    t0 = time.perf_counter()
    # 1. the direct 48-hour head (its linear part starts at the least-squares optimum)
    model.fit(
        train, val_series=val[-(LOOKBACK + HORIZON + 400) :], objective="forecast",
        epochs=1 if quick else 3, stride=8, time_budget=3 if quick else 12, verbose=False,
    )  # fmt: skip
    # 2. next-step prediction with a Gaussian head: anomaly scores and sampled roll-outs
    hist = model.fit(
        train, val_series=val, epochs=2 if quick else 8, batch_size=16, window=64,
        time_budget=3 if quick else 20, verbose=False,
    )  # fmt: skip
    where = f"the {len(val)} hours after the training months (the validation split)"
    report_metrics(model, _Indent(out), where, time.perf_counter() - t0)
    model.save_pretrained(ctx["folder"] / "model")
    plot_history(ctx["folder"] / "training.png", hist, title="Next-step training (Gaussian NLL)")
    ctx["model"], ctx["history"] = model, hist


def _forecast(ctx: dict) -> None:
    from kizzasi_lite.io.plot import plot_forecast
    from kizzasi_lite.train.fit import forecast_mse

    model, test, names = ctx["model"], ctx["test"], ctx["names"]
    std = np.asarray(model.params["normalizer.std"], dtype=np.float64)
    # every test origin, stride 24 h: the direct head beside repeating the last value
    mse = forecast_mse(model, [test], stride=24)
    z = test / std
    starts = range(0, len(z) - LOOKBACK - HORIZON + 1, 24)
    base = float(np.mean([np.mean((z[t + LOOKBACK : t + LOOKBACK + HORIZON] - z[t + LOOKBACK - 1]) ** 2)
                          for t in starts]))  # fmt: skip
    # one origin, plotted: history, the direct forecast, 32 sampled roll-outs, what happened
    t0 = len(test) // 2
    history, truth = test[:t0], test[t0 : t0 + HORIZON]
    direct = model.forecast(history[-LOOKBACK:], HORIZON)  # (H, C)
    model.reset()
    paths = model.predict_n(history[-4 * LOOKBACK :], HORIZON, samples=32, seed=0)  # (32, H, C)
    band = (np.quantile(paths, 0.05, axis=0), np.quantile(paths, 0.95, axis=0))
    shown = history[-2 * LOOKBACK :]
    keep = [names.index(n) for n in ("HUFL", "MUFL", "LUFL", "OT")]
    plot_forecast(
        ctx["folder"] / "forecast.png", shown[:, keep], direct[:, keep],
        names=[names[i] for i in keep], band=(band[0][:, keep], band[1][:, keep]),
        truth=truth[:, keep], start=16 * HOURS + t0 - len(shown),
        title="48-hour forecast: direct head (line), 5-95% of 32 sampled roll-outs (band)",
    )  # fmt: skip
    inside = float(np.mean((truth >= band[0]) & (truth <= band[1])))
    ctx["forecast"] = {"mse": mse, "repeat_last": base, "origins": len(starts), "inside": inside}
    ctx["out"].write(f"    test MSE over {len(starts)} origins, 48 h ahead (normalised): direct "
                     f"head {mse:.3f}, repeat-last {base:.3f}\n")  # fmt: skip


FAULTS = (  # (name, channel, first row, rows, kind, size in training std units)
    ("spike on OT", "OT", 400, 1, "add", 6.0),
    ("HUFL sensor dropout (reads 0) for 6 hours", "HUFL", 1200, 6, "set", 0.0),
    ("MULL offset for 6 hours", "MULL", 2000, 6, "add", 3.0),
)


def _inject(test: np.ndarray, names: list[str], std: np.ndarray) -> np.ndarray:
    bad = test.copy()
    for _, ch, a, n, kind, size in FAULTS:
        c = names.index(ch)
        bad[a : a + n, c] = size if kind == "set" else bad[a : a + n, c] + size * std[c]
    return bad


def _detect(ctx: dict) -> None:
    from kizzasi_lite.io import write_table
    from kizzasi_lite.io.plot import plot_anomalies

    model, test, names = ctx["model"], ctx["test"], ctx["names"]
    thr = float(model.info["anomaly_threshold"])
    std = np.asarray(model.params["normalizer.std"], dtype=np.float64)
    clean = model.score(test)["score"]
    bad = _inject(test, names, std)
    res = model.score(bad)
    flagged = np.flatnonzero(res["score"] > thr)
    caught = []
    for name, _, a, n, _, _ in FAULTS:
        hit = bool(np.any((flagged >= a) & (flagged <= a + n)))
        caught.append((name, a, hit))
    in_fault = np.zeros(len(test), dtype=bool)
    for _, _, a, n, _, _ in FAULTS:
        in_fault[a : a + n + 1] = True
    table = np.concatenate([np.arange(len(test))[:, None], res["score"][:, None],
                            (res["score"] > thr)[:, None], bad], axis=1)  # fmt: skip
    write_table(ctx["folder"] / "scores.csv", table, ["row", "score", "anomaly", *names])
    keep = [names.index(n) for n in ("HUFL", "MULL", "OT")]
    plot_anomalies(
        ctx["folder"] / "anomalies.png", bad[:, keep], res["prediction"][:, keep],
        scores=res["score"], threshold=thr, flagged=flagged, sigma=res["sigma"][:, keep],
        names=[names[i] for i in keep], title="Test months with 3 injected faults",
    )  # fmt: skip
    ctx["detect"] = {
        "threshold": thr, "flagged": len(flagged), "rows": len(test), "caught": caught,
        "false_rate": float(np.mean(res["score"][~in_fault] > thr)),
        "clean_rate": float(np.mean(clean > thr)),
    }  # fmt: skip
    for name, a, hit in caught:
        ctx["out"].write(f"    injected {name} at row {a}: {'caught' if hit else 'missed'}\n")
    ctx["out"].write(f"    {len(flagged)} of {len(test)} rows flagged; on the untouched test data "
                     f"{ctx['detect']['clean_rate']:.1%} of rows score above the threshold\n")  # fmt: skip


def _stream(ctx: dict) -> None:
    from kizzasi_lite import commands
    from kizzasi_lite.cli import build_parser
    from kizzasi_lite.io import read_data
    from kizzasi_lite.io.csv import CsvSink
    from kizzasi_lite.io.plot import plot_guarded

    folder, model, names = ctx["folder"], ctx["model"], ctx["names"]
    rows = ctx["test"][-STREAM_ROWS:]
    src = folder / "stream_input.csv"
    with CsvSink(src, ["date", *names]) as sink:  # an hour index as the time column
        for i, r in enumerate(rows):
            sink.write([f"hour {i}", *r.tolist()])
    limits = _limits(ctx["train"], names)
    # saved with the model, so `kizzasi stream kizzasi-demo/model` applies them too
    commands.write_guardrails_file(demo_guardrails(*limits), folder / "model" / "guardrails.json")
    argv = ["stream", str(folder / "model"), "--source", str(src),
            "--sink", str(folder / "stream_output.csv")]  # fmt: skip
    commands.run_stream(build_parser().parse_args(argv), _Indent(ctx["out"]))
    got = read_data(folder / "stream_output.csv")
    pred = got.data[:, [got.names.index(f"pred_{n}") for n in names]]  # (T, C)
    model.reset()
    raw = model.forward(rows)  # (T, C) the same predictions without guardrails
    c = names.index("OT")
    lo, hi, rate = limits
    z = slice(-200, None)  # the last 200 hours, where the steps can be seen
    plot_guarded(folder / "stream.png", rows[z, [c]], raw[z, [c]], pred[z, [c]], names=["OT"],
                 title=f"Guarded stream, last 200 h: OT predictions change by at most "
                 f"{OT_RATE:g} C/hour")  # fmt: skip
    moved = got.data[:, got.names.index("guarded")]
    steps = np.abs(np.diff(pred[:, c]))
    ctx["stream"] = {
        "rows": len(rows), "moved": int(np.sum(moved)),
        "worst_violation": float(np.maximum(pred - hi, lo - pred).max()),
        "max_step": float(steps.max()) if len(steps) else 0.0,
        "rate": float(rate[c]), "lo": float(lo[c]), "hi": float(hi[c]),
    }  # fmt: skip


def _limits(train: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The demo's rules: every channel inside the range seen in training, and the oil
    temperature (OT, degrees C) predicted to change by at most OT_RATE per hour."""
    rate = np.full(len(names), np.inf)
    rate[names.index("OT")] = OT_RATE
    return train.min(axis=0), train.max(axis=0), rate


def demo_guardrails(lo: np.ndarray, hi: np.ndarray, rate: np.ndarray) -> Any:
    """Ranges ``lo[c] <= x_c <= hi[c]`` and rate limits ``|x_c - previous_c| <= rate[c]``
    (channels with an infinite rate have none), as a ``GuardrailSet``."""
    from kizzasi_lite.logic import GuardrailSet, Range, RateLimit

    rails = GuardrailSet()
    rails.add([Range(float(a), float(b), channel=c) for c, (a, b) in enumerate(zip(lo, hi, strict=True))],
              name="operating_range")  # fmt: skip
    rails.add([RateLimit(float(r), channel=c) for c, r in enumerate(rate) if np.isfinite(r)],
              name="rate")  # fmt: skip
    return rails


class _Indent:
    """Indents what a stage prints under its heading."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.write("".join("    " + line if line.strip() else line
                               for line in text.splitlines(keepends=True)))  # fmt: skip

    def flush(self) -> None:
        self.out.flush()


# ---------------------------------------------------------------------- report
def _report(ctx: dict, st: Stages) -> Path:
    from kizzasi_lite.io import atomic_write

    page = ctx["folder"] / "index.html"
    with atomic_write(page) as tmp:
        tmp.write_text(render_html(ctx, st.times), encoding="utf-8")
    return page


def _summary(ctx: dict, times: list[tuple[str, float]]) -> None:
    """summary.json: the numbers of the report, for scripts and tests."""
    from kizzasi_lite.io import atomic_write

    summary = {k: ctx[k] for k in ("forecast", "detect", "stream")}
    info = ctx["model"].info
    summary["metrics"] = {k: v for k, v in info.items() if k.startswith(("val_", "anomaly_"))}
    summary["timings_s"] = {name: round(sec, 2) for name, sec in times}
    with atomic_write(ctx["folder"] / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")


def render_html(ctx: dict, times: list[tuple[str, float]]) -> str:
    """The one-page report: what was done, the numbers, the four plots, the timings."""
    m, info, f, d, s = (
        ctx["model"],
        ctx["model"].info,
        ctx["forecast"],
        ctx["detect"],
        ctx["stream"],
    )
    esc = html.escape
    caught = "".join(
        f"<li>{esc(name)} at test row {a}: <b>{'caught' if hit else 'missed'}</b></li>"
        for name, a, hit in d["caught"]
    )
    timing = "".join(f"<tr><td>{esc(n)}</td><td>{sec:.1f} s</td></tr>" for n, sec in times)
    guard = (
        f"Guardrails: every channel within the range seen in training; the predicted oil "
        f"temperature changing by at most {s['rate']:.3g} &deg;C per hour. They changed <b>{s['moved']}</b> of {s['rows']} predictions; "
        f"largest range violation after them {max(s['worst_violation'], 0.0):.2g}; largest "
        f"hourly OT step {s['max_step']:.3g} &deg;C (limit {s['rate']:.3g})."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kizzasi demo report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#222}} img{{max-width:100%;border:1px solid #ddd}} table{{border-collapse:collapse}}
td,th{{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}} code{{background:#f4f4f4}}
</style></head><body>
<h1>kizzasi demo: ETTh1 transformer telemetry</h1>
<p>Data: the bundled ETTh1 CSV (hourly, 7 channels: load features and oil temperature OT),
12 months train / 4 validation / 4 test. Model: <code>{esc(repr(m))}</code>,
{m.state_bytes():,} bytes of state per stream.</p>
<h2>1. Training</h2>
<p>Next-step validation error (normalised units): model MSE <b>{info["val_mse"]:.4f}</b>
vs repeat-last-value <b>{info["val_mse_repeat_last"]:.4f}</b>; MAE {info["val_mae"]:.4f}
vs {info["val_mae_repeat_last"]:.4f}.</p><img src="training.png" alt="training curves">
<h2>2. Forecast</h2>
<p>48 hours ahead from {f["origins"]} test origins (every 24 h): direct head MSE
<b>{f["mse"]:.3f}</b> vs repeat-last <b>{f["repeat_last"]:.3f}</b> (normalised units). At the plotted
origin {f["inside"]:.0%} of the actual values fall inside the 5-95% band of the sampled
roll-outs.</p><img src="forecast.png" alt="forecast">
<h2>3. Anomalies</h2>
<p>Threshold {d["threshold"]:.2f} (the 99% quantile of validation scores). Three faults were
injected into a copy of the test months:</p><ul>{caught}</ul>
<p>{d["flagged"]} of {d["rows"]} rows flagged; outside the injected faults {d["false_rate"]:.1%}
of rows score above the threshold ({d["clean_rate"]:.1%} on the untouched data).
Per-row scores: <a href="scores.csv">scores.csv</a>.</p><img src="anomalies.png" alt="anomalies">
<h2>4. Guarded stream</h2>
<p>The last {s["rows"]} test rows streamed one at a time through <code>kizzasi stream</code>
(<a href="stream_input.csv">input</a>, <a href="stream_output.csv">output</a>). {guard}</p>
<img src="stream.png" alt="guarded stream">
<h2>Timings</h2><table>{timing}</table>
<p>Model folder: <code>model/</code> (use it with <code>kizzasi info</code>,
<code>kizzasi forecast</code>, <code>kizzasi detect</code>, <code>kizzasi stream</code>).</p>
</body></html>
"""
