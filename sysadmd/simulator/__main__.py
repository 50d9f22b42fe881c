"""``python -m sysadmd.simulator``: the same as the ``iohyve-sim`` console script."""

from sysadmd.simulator.cli import main

if __name__ == "__main__":
    main()
