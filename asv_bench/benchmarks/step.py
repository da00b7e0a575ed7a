"""Step latency: one ``step`` of 1, 64 and 1024 streams, every architecture.

The step path is what a streaming predictor runs per sample; batch 1 is bound by the Python
overhead and by reading the weights, batch 1024 by the matmuls and the passes over the state.
"""

from __future__ import annotations

from .common import ARCHS, HIDDEN, backbone, signal


class StepLatency:
    """Seconds per ``Backbone.step`` of ``batch`` streams (state threaded through the calls)."""

    params = (list(ARCHS), [1, 64, 1024])
    param_names = ["arch", "batch"]
    timeout = 180

    def setup(self, arch: str, batch: int) -> None:
        if arch == "transformer" and batch > 64:
            raise NotImplementedError("a KV cache of 1024 streams is GBs: not benchmarked")
        self.bb = backbone(arch)
        self.x = signal(batch, HIDDEN)
        self.state = self.bb.init_state(batch)
        _, self.state = self.bb.step(self.x, self.state)  # warm: first-call allocations

    def time_step(self, arch: str, batch: int) -> None:
        _, self.state = self.bb.step(self.x, self.state)
