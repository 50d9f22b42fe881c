"""Shared test helpers."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from httpserver import HTTPServer
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_text() -> object:
    """Read a file of real iohyve output from tests/fixtures."""

    def read(name: str) -> str:
        return (FIXTURES / name).read_text()

    return read


@pytest.fixture
def errors() -> Iterator[list[str]]:
    """The text of every error-level log event while the test runs."""
    seen: list[str] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            failure = event.get("log_failure")
            traceback = failure.getTraceback() if isinstance(failure, Failure) else ""
            seen.append(formatEvent(event) + traceback)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def http() -> Iterator[HTTPServer]:
    """A local HTTP server to fetch from, stopped after the test."""
    server = HTTPServer()
    yield server
    server.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """End the simulated guests' console programs started under this session's temporary
    directory (a running simulated guest keeps one, as a host keeps its bhyve)."""
    from sysadmd.simulator.guestconsole import stop_console  # noqa: PLC0415

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    base = factory.getbasetemp()
    for pidfile in base.glob("**/console/*.pid"):
        stop_console(str(pidfile), str(pidfile.with_suffix(".none")))


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    """The cyclic collector runs only when a test asks (``gc.collect()``), so that what a
    test counts as left in cycles was not collected behind its back."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
