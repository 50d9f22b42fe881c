"""``python -m benchmarks``: run the suite."""

from benchmarks.suite import main

raise SystemExit(main())
