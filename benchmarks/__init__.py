"""sysadmd's benchmark suite: ``./benchmarks/run`` (or ``python -m benchmarks``); see README.md."""
