"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_text() -> object:
    """Read a file of real iohyve output from tests/fixtures."""

    def read(name: str) -> str:
        return (FIXTURES / name).read_text()

    return read
