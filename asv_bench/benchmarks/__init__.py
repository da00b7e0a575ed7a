"""asv benchmarks of kizzasi_lite (see ``asv_bench/asv.conf.json``).

They run with one BLAS / OpenMP thread (``matrix.env_nobuild`` in asv.conf.json; asv imports
NumPy before this package, so it cannot be set here): on a shared machine a multi-threaded small
matmul stalls for tens of milliseconds waiting for a busy core (a 64 x 256 by 256 x 1088 float32
matmul: 0.5 ms on one thread, 32 ms on two contended ones), which makes step timings meaningless.
"""
