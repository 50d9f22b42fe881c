"""Watching the daemon: health checks, Prometheus metrics, the log file.

These observe every other layer (the task queue, the connection counters, the
authenticator), so they sit just below the app.

May import: every layer but ``sysadmd.app``.
"""
