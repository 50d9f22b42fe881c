"""Shared test helpers."""

from __future__ import annotations

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
