"""Quick start (the README's first example): learn a real signal, stream it, forecast, save, reload.

    python examples/quickstart.py            # ~30 s: Mamba2 on the bundled ETTh1 telemetry
    python examples/quickstart.py --small    # a few seconds (what the test runs)

The same on the command line: ``kizzasi fit``, ``kizzasi forecast``, ``kizzasi stream`` (see
``kizzasi --help``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from kizzasi_lite import Kizzasi, KizzasiConfig
from kizzasi_lite.data import load_ett


def main(small: bool = False, out_dir: str | Path | None = None) -> dict:
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="kizzasi-quickstart-"))
    rows, hidden, budget = (2000, 16, 3) if small else (11520, 32, 30)

    # --- the README's first example ------------------------------------------------------
    data, names = load_ett("ETTh1")  # (17420, 7) hourly transformer load and oil temperature
    model = Kizzasi(KizzasiConfig(model_type="mamba2", input_dim=7, hidden_dim=hidden))
    model.fit(data[:rows], epochs=5, time_budget=budget, verbose=not small)  # last 20%: validation
    print(f"validation MSE {model.info['val_mse']:.4f} vs repeat-last "
          f"{model.info['val_mse_repeat_last']:.4f} (normalised units)")  # fmt: skip
    for x in data[rows : rows + 10]:
        y = model.step(x)  # the prediction of the next sample, (7,)
    path = model.predict_n(data[rows + 10 : rows + 106], 24)  # observe 96 samples, roll out 24
    model.save_pretrained(out_dir / "my_model")  # model.safetensors + config.json + training.json
    again = Kizzasi.from_pretrained(out_dir / "my_model")
    # -------------------------------------------------------------------------------------

    model.reset()  # both from the zero state: the reloaded weights compute bit for bit alike
    window = data[rows + 10 : rows + 106]
    same = np.array_equal(again.predict_n(window, 24), model.predict_n(window, 24))
    print(f"next-sample prediction {np.round(y, 2)}; 24-step roll-out {path.shape}; "
          f"{model.num_params:,} parameters, {model.state_bytes():,} bytes of state per stream; "
          f"reloaded model identical: {same}")  # fmt: skip
    return {"model": model, "rollout": path, "reload_identical": same, "out_dir": out_dir,
            "val_mse": model.info["val_mse"], "val_mse_repeat_last": model.info["val_mse_repeat_last"]}  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--small", action="store_true", help="small sizes, a few seconds")
    p.add_argument("--out", help="folder for the saved model (default: a temporary folder)")
    a = p.parse_args()
    main(a.small, a.out)
