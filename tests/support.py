"""Typed helpers shared by the tests (pytest-twisted ships no type information)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

import pytest_twisted

_P = ParamSpec("_P")
AsyncTest = Callable[_P, Coroutine[Any, Any, None]]


def async_test(test: AsyncTest[_P]) -> AsyncTest[_P]:
    """Run an ``async def`` test on the reactor (``pytest_twisted.ensureDeferred``)."""
    marked: AsyncTest[_P] = pytest_twisted.ensureDeferred(test)
    return marked
