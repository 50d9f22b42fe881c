"""Typed helpers shared by the tests (pytest-twisted ships no type information)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pytest_twisted

_P = ParamSpec("_P")
_T = TypeVar("_T")
AsyncTest = Callable[_P, Coroutine[Any, Any, None]]


def async_test(test: AsyncTest[_P]) -> AsyncTest[_P]:
    """Run an ``async def`` test on the reactor (``pytest_twisted.ensureDeferred``)."""
    marked: AsyncTest[_P] = pytest_twisted.ensureDeferred(test)
    return marked


def async_fixture(
    *, params: list[Any] | None = None
) -> Callable[[Callable[_P, AsyncIterator[_T]]], Callable[_P, AsyncIterator[_T]]]:
    """An ``async def`` yield fixture (``pytest_twisted.async_yield_fixture``)."""

    def decorate(fixture: Callable[_P, AsyncIterator[_T]]) -> Callable[_P, AsyncIterator[_T]]:
        marked: Callable[_P, AsyncIterator[_T]] = pytest_twisted.async_yield_fixture(params=params)(
            fixture
        )
        return marked

    return decorate
