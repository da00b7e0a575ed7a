"""asv benchmarks of kizzasi_lite (see ``asv_bench/asv.conf.json``)."""
