"""The ``kizzasi`` command (also ``python -m kizzasi_lite``): fit, forecast, detect, stream, info, demo.

Exit codes: 0 success (a stream ended by Ctrl-C or SIGTERM also ends cleanly, with 0), 1 a
``KizzasiError``, an unreadable/unwritable file or sizes too large for the memory (one line on
stderr, no traceback), 2 a usage error (bad options), 130 another command interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from kizzasi_lite.config import PRESETS, ModelType
from kizzasi_lite.errors import KizzasiError

DESCRIPTION = """\
Learn a signal from a file and predict it step by step with a state-space model
(Mamba2, Mamba, RWKV, S4D or a Transformer), with guardrails on every prediction.

DATA is a CSV file (header row; a time column is detected and skipped), WAV/FLAC
audio, HDF5 (file.h5:dataset/path), NPY, JSON lines (.jsonl), or - for JSON lines
on standard input."""

EXAMPLES = """\
examples:
  kizzasi demo                                   # the whole job on bundled ETTh1 data
  kizzasi fit sensors.csv --model mamba2 --time-budget 60 --out my_model
  kizzasi forecast my_model sensors.csv --horizon 48 --out forecast.csv --plot forecast.png
  kizzasi detect my_model sensors.csv --out scores.csv --plot anomalies.png
  kizzasi stream my_model --source live.csv --sink predictions.jsonl
  tail -f readings.jsonl | kizzasi stream my_model --source - --sink -
  kizzasi info my_model
"""


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return v


def _sub(
    subs: argparse._SubParsersAction, name: str, help: str, examples: str
) -> argparse.ArgumentParser:
    return subs.add_parser(
        name, help=help, description=help, epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def _add_fit(subs: argparse._SubParsersAction) -> None:
    p = _sub(subs, "fit", "train a predictor on DATA and save it to a model folder",
             "  kizzasi fit data.csv --out my_model\n"
             "  kizzasi fit ETTh1.csv --columns HUFL,OT --preset sensor --epochs 10 --out m\n"
             "  kizzasi fit speech.wav --preset audio --time-budget 120 --out speech_model\n"
             "  kizzasi fit log.h5:robot/joints --model mamba --head gaussian --out arm\n")  # fmt: skip
    p.add_argument("data", metavar="DATA", help="the training signal (see `kizzasi --help`)")
    p.add_argument("--out", "-o", required=True, metavar="MODEL_DIR", help="model folder to write")
    p.add_argument("--columns", metavar="A,B,...", help="channels to use (names or positions)")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=[t.value for t in ModelType],
                   help="architecture (default: mamba2, or the preset's)")  # fmt: skip
    m.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset config")
    m.add_argument("--hidden-dim", type=_positive_int, help="model width")
    m.add_argument("--state-dim", type=_positive_int, help="SSM state size per channel")
    m.add_argument("--layers", type=_positive_int, help="number of layers")
    m.add_argument("--head-dim", type=_positive_int, help="head size (Mamba2/RWKV/Transformer)")
    m.add_argument("--context-window", type=_positive_int, help="Transformer KV cache length")
    m.add_argument("--head", choices=["point", "gaussian"],
                   help="'gaussian' also predicts a standard deviation (needed for --samples)")  # fmt: skip
    m.add_argument("--forecast-horizon", type=_positive_int, metavar="H",
                   help="also train a direct H-step forecast head")  # fmt: skip
    m.add_argument("--lookback", type=_positive_int, default=96, help="forecast look-back window")
    m.add_argument("--patch", type=_positive_int, default=8,
                   help="samples per backbone token in the forecast head (PatchTST-style)")  # fmt: skip
    m.add_argument("--revin", action="store_true",
                   help="normalize each forecast window by its own mean and std (RevIN)")  # fmt: skip
    m.add_argument("--dtype", choices=["float32", "float64"])
    m.add_argument("--backend", help="array backend: numpy, array_api_strict, mlx, cupy")
    m.add_argument("--guardrails", metavar="FILE", help="guardrails JSON saved with the model")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=_positive_int, default=20, help="at most this many epochs")
    t.add_argument("--time-budget", type=_positive_float, metavar="SECONDS",
                   help="stop training after this many seconds")  # fmt: skip
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--window", type=_positive_int, help="training window (truncated BPTT)")
    t.add_argument("--lr", type=_positive_float, default=3e-3, help="peak learning rate")
    t.add_argument("--val-fraction", type=_fraction, default=0.2,
                   help="last part of DATA held out for validation (default 0.2)")  # fmt: skip
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _add_forecast(subs: argparse._SubParsersAction) -> None:
    p = _sub(subs, "forecast", "forecast the next steps after the end of DATA",
             "  kizzasi forecast my_model data.csv --horizon 24\n"
             "  kizzasi forecast my_model data.csv --horizon 96 --samples 64 \\\n"
             "      --out forecast.csv --plot forecast.png\n")  # fmt: skip
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA", help="the history to forecast from")
    p.add_argument("--horizon", "-n", type=_positive_int, required=True, help="steps ahead")
    p.add_argument("--samples", "-k", type=_positive_int,
                   help="sample K trajectories (gaussian head) for a 5-95%% band")  # fmt: skip
    p.add_argument("--method", choices=["auto", "direct", "rollout"], default="auto",
                   help="direct multi-horizon head, or roll the next-step model out "
                   "(auto: direct when the model has one long enough)")  # fmt: skip
    p.add_argument("--context", type=_positive_int, help="use only the last N samples of DATA")
    p.add_argument("--columns", metavar="A,B,...")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled trajectories")
    p.add_argument("--out", "-o", metavar="FILE", help="write the forecast (else print it)")
    p.add_argument("--plot", metavar="PNG", help="plot history and forecast")
    p.add_argument("--plot-history", type=_positive_int, default=200,
                   help="history samples shown in the plot")  # fmt: skip


def _add_detect(subs: argparse._SubParsersAction) -> None:
    p = _sub(subs, "detect", "score every step of DATA and flag anomalies",
             "  kizzasi detect my_model data.csv\n"
             "  kizzasi detect my_model data.csv --threshold 4 --out scores.csv --plot a.png\n")  # fmt: skip
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--threshold", type=_positive_float,
                   help="flag scores above this (default: chosen on validation data by fit)")  # fmt: skip
    p.add_argument("--columns", metavar="A,B,...")
    p.add_argument("--out", "-o", metavar="FILE", help="per-step scores and predictions")
    p.add_argument("--plot", metavar="PNG", help="plot signal, prediction band and flags")
    p.add_argument("--plot-last", type=_positive_int, help="plot only the last N steps")


def _add_stream(subs: argparse._SubParsersAction) -> None:
    p = _sub(subs, "stream", "read one sample at a time, write the guarded next-step "
             "prediction and the anomaly score of each",
             "  kizzasi stream my_model --source live.csv --sink out.csv\n"
             "  kizzasi stream my_model --source log.h5:run1 --sink out.jsonl --guardrails g.json\n"
             "  producer | kizzasi stream my_model --source - --sink - | consumer\n"
             "Ends at the end of the input, or on Ctrl-C / SIGTERM, after writing out what it\n"
             "has; output files appear complete or not at all.\n")  # fmt: skip
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--source", default="-", metavar="SRC",
                   help="where samples come from (default -: JSON lines on stdin)")  # fmt: skip
    p.add_argument("--sink", default="-", metavar="SNK",
                   help="where predictions go (default -: JSON lines on stdout)")  # fmt: skip
    p.add_argument("--guardrails", metavar="FILE", help="guardrails JSON (replaces the model's)")
    p.add_argument("--columns", metavar="A,B,...", help="channels of the source to use")
    p.add_argument("--limit", type=_positive_int, help="stop after N samples")


def _add_info(subs: argparse._SubParsersAction) -> None:
    p = _sub(subs, "info", "describe a model folder: architecture, sizes, parameters, state, "
             "normalisation, guardrails, training history", "  kizzasi info my_model\n"
             "  kizzasi info my_model --json\n")  # fmt: skip
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_demo(subs: argparse._SubParsersAction) -> None:
    p = _sub(subs, "demo", "the whole job on the bundled ETTh1 data: fit, forecast, detect, a "
             "guarded stream, and an HTML report with plots", "  kizzasi demo\n"
             "  kizzasi demo --out report --quick\n")  # fmt: skip
    p.add_argument("--out", "-o", default="kizzasi-demo", metavar="DIR",
                   help="report folder (default: ./kizzasi-demo)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (about 10 s)")


def build_parser() -> argparse.ArgumentParser:
    """The ``kizzasi`` argument parser with its six subcommands."""
    from kizzasi_lite import __version__

    parser = argparse.ArgumentParser(
        prog="kizzasi", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"kizzasi_lite {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_fit, _add_forecast, _add_detect, _add_stream, _add_info, _add_demo):
        add(subs)
    return parser


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from kizzasi_lite import commands

    if args.command == "demo":
        from kizzasi_lite.demo import run_demo

        run_demo(args.out, quick=args.quick, out=out)
        return 0
    run = {
        "fit": commands.run_fit,
        "forecast": commands.run_forecast,
        "detect": commands.run_detect,
        "stream": commands.run_stream,
        "info": commands.run_info,
    }[args.command]
    # a stream, or a table written to `--out -`, puts its data on stdout: messages go to stderr
    to_stdout = args.command == "stream" or getattr(args, "out", None) == "-"
    return run(args, sys.stderr if to_stdout else out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kizzasi`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args, sys.stdout)
    except KizzasiError as exc:
        print(f"kizzasi {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # the reader went away (| head): stop quietly
            _silence_stdout()
            return 0
        print(f"kizzasi {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError as exc:  # sizes too large for this machine (a model, its state, a batch)
        print(f"kizzasi {args.command}: error: out of memory: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"kizzasi {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
