"""The three scan kernels of ``h_t = a_t h_{t-1} + b_t`` on a Mamba-sized problem.

``(B, T, S) = (1, T, 512 x 16)`` would be Mamba's (d_inner, N) state; 1024 channels keep the
sequential reference affordable while the per-step work stays large enough to show the trade-off:
``scan_sequential`` pays T Python steps, ``scan_parallel`` O(T log T) work, ``scan_chunked``
O(T log chunk) work in O(T / chunk) Python steps.
"""

from __future__ import annotations

import numpy as np

from kizzasi_lite.scan import scan_chunked, scan_parallel, scan_sequential

from .common import XP

CHANNELS = 1024


class Scan:
    """Seconds per scan of ``length`` steps of 1024 channels (float32)."""

    params = (["sequential", "chunked", "parallel"], [1024, 8192])
    param_names = ["kernel", "length"]
    timeout = 120

    def setup(self, kernel: str, length: int) -> None:
        rng = np.random.default_rng(0)
        self.a = XP.asarray(rng.uniform(0.8, 1.0, (1, length, CHANNELS)).astype(np.float32))
        self.b = XP.asarray(rng.standard_normal((1, length, CHANNELS), dtype=np.float32))
        self.h0 = XP.zeros((1, CHANNELS), dtype=XP.float32)
        self.fn = {"sequential": scan_sequential, "chunked": scan_chunked}.get(
            kernel, scan_parallel
        )

    def time_scan(self, kernel: str, length: int) -> None:
        self.fn(self.a, self.b, self.h0)
