"""Sequence throughput: ``forward`` over one sequence of T = 1024 and 8192 steps.

Samples per second = T / (the time shown). The sequence path is the chunked / parallel scan of
each architecture, meant to be compute-bound.
"""

from __future__ import annotations

from .common import ARCHS, HIDDEN, backbone, signal


class ForwardThroughput:
    """Seconds per ``Backbone.forward`` of one sequence of ``length`` steps."""

    params = (list(ARCHS), [1024, 8192])
    param_names = ["arch", "length"]
    timeout = 300
    number = 1  # one call is long enough to time on its own
    repeat = (1, 3, 30.0)

    def setup(self, arch: str, length: int) -> None:
        self.bb = backbone(arch)
        self.x = signal(1, length, HIDDEN)

    def time_forward(self, arch: str, length: int) -> None:
        self.bb.forward(self.x)
