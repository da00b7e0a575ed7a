"""Memory: state bytes per stream (the architecture's formula) and no growth while stepping.

``track_state_bytes_per_stream`` reports the bytes of ``init_state(1)`` (it equals
``4 * state_numel`` when the formula is right; ``kizzasi info`` prints the same number).
``track_traced_growth`` steps one stream ``KIZZASI_BENCH_STEPS`` times (default 5 000; the issue
asks for 10^6: ``KIZZASI_BENCH_STEPS=1000000``) with ``tracemalloc`` on, in five equal windows,
and reports the smallest growth of traced bytes over the last four windows: a leak of even one
byte per step shows in every window, a one-off allocation in one only (so ~0 means no leak).
"""

from __future__ import annotations

import os
import tracemalloc

from .common import ARCHS, backbone, signal


class StateMemory:
    """Bytes of recurrent state per stream, and their agreement with the formula."""

    params = list(ARCHS)
    param_names = ["arch"]
    unit = "bytes"

    def setup(self, arch: str) -> None:
        self.bb = backbone(arch)

    def track_state_bytes_per_stream(self, arch: str) -> int:
        state = self.bb.init_state(1)
        measured = sum(int(v.nbytes) for v in state.values())
        formula = 4 * self.bb.state_numel()
        if arch == "transformer":  # the position counter is int64, counted as one number
            formula += 4
        if measured != formula:
            raise AssertionError(f"{arch}: state holds {measured} bytes, formula says {formula}")
        return measured


class SteppingMemory:
    """Bytes traced by tracemalloc that accumulate while one stream steps many times."""

    params = list(ARCHS)
    param_names = ["arch"]
    unit = "bytes"
    timeout = 3600
    number = 1
    repeat = 1

    def setup(self, arch: str) -> None:
        self.steps = int(os.environ.get("KIZZASI_BENCH_STEPS", "5000"))
        # a small model: this measures the loop's allocations, not the math
        self.bb = backbone(arch, hidden_dim=32, num_layers=1, context_window=16)
        self.x = signal(1, 32)

    def track_traced_growth(self, arch: str) -> int:
        state = self.bb.init_state(1)
        window = max(1, self.steps // 5)
        tracemalloc.start()
        try:
            marks = []
            for _ in range(5):  # the first window warms up; the other four are compared
                for _ in range(window):
                    _, state = self.bb.step(self.x, state)
                marks.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
        # a leak grows in every window; a one-off allocation (a cache filled once) in one only
        return min(b - a for a, b in zip(marks, marks[1:], strict=False))
