"""Quick start: build a predictor, stream samples through it, roll it out, save and reload it.

Run: ``python examples/quickstart.py`` (or ``make demo``). Training arrives with ``Kizzasi.fit``;
until then this shows the streaming API on an untrained model, which predicts "no change".
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from kizzasi_lite import Kizzasi, KizzasiConfig, ModelType


def main(steps: int = 200) -> dict:
    t = np.arange(steps, dtype=np.float32)
    signal = np.stack([np.sin(0.1 * t), np.cos(0.05 * t), 0.01 * t], axis=1)  # (T, 3)
    results = {}
    for mt in ModelType:
        k = Kizzasi(KizzasiConfig(model_type=mt, input_dim=3, hidden_dim=32, head_dim=16))
        start = time.perf_counter()
        for x in signal:
            y = k.step(x)
        per_step = (time.perf_counter() - start) / steps
        rollout = k.predict_n(signal[-1], 10)
        with tempfile.TemporaryDirectory() as tmp:
            k.save_pretrained(tmp, include_state=True)
            back = Kizzasi.from_pretrained(tmp)
            same = np.array_equal(back.step(signal[-1]), k.step(signal[-1]))
        results[mt.value] = per_step
        print(
            f"{mt.value:12s} params={k.num_params:7,d}  state/stream={k.state_bytes():6,d} B  "
            f"step={per_step * 1e6:7.1f} us  last={np.round(y, 3)}  rollout={rollout.shape}  "
            f"reload-identical={same}"
        )
    return results


if __name__ == "__main__":
    main()
