"""Training throughput: samples (time steps) per second of a full training step.

One step = ``value_and_grad`` of the MSE of ``forward`` over a batch of windows + ``AdamW``
update of the backbone, as ``Kizzasi.fit`` does (without its heads and data pipeline).
"""

from __future__ import annotations

import time

from kizzasi_lite.autodiff import value_and_grad
from kizzasi_lite.train.losses import mse
from kizzasi_lite.train.optim import AdamW

from .common import ARCHS, HIDDEN, backbone, signal

BATCH, LENGTH = 8, 64


class TrainThroughput:
    """Samples per second (batch x window length) of one forward + backward + AdamW step."""

    params = list(ARCHS)
    param_names = ["arch"]
    timeout = 300
    unit = "samples/s"

    def setup(self, arch: str) -> None:
        self.bb = backbone(arch, context_window=LENGTH)
        self.x = signal(BATCH, LENGTH, HIDDEN, seed=1)
        self.target = signal(BATCH, LENGTH, HIDDEN, seed=2)
        self.opt = AdamW(lr=1e-4)
        self.params = dict(self.bb.params)

    def _loss(self, p: dict) -> object:
        return mse(self.bb.module.forward(self.bb.config, p, self.x)[0], self.target)

    def _train_step(self) -> None:
        _, grads = value_and_grad(self._loss, self.params)
        self.params = self.opt.update(self.params, grads)

    def track_samples_per_second(self, arch: str) -> float:
        self._train_step()  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            self._train_step()
            times.append(time.perf_counter() - t0)
        return BATCH * LENGTH / sorted(times)[1]  # the median of 3
