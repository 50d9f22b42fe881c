"""The classes of actions the daemon serves, listed once.

The daemon builds its registry with :func:`build_registry`, and the API reference
(:mod:`sysadmd.catalog.reference`), the OpenAPI document (:mod:`sysadmd.catalog.openapi`) and
the tests read the declarations of the same classes through :func:`all_specs`; a class added to
:data:`API_CLASSES` is served, documented and tested at once, and the daemon refuses to
start with an instance missing.
"""

from __future__ import annotations

from typing import Final

from sysadmd.api import ActionSpec, Registry, declared_actions
from sysadmd.services import (
    ConsoleActions,
    DispatcherActions,
    EventActions,
    HostActions,
    IohyveActions,
    QueryActions,
    Rpc,
)

#: Every class of actions the daemon serves.
API_CLASSES: Final[tuple[type, ...]] = (
    Rpc,
    QueryActions,
    DispatcherActions,
    EventActions,
    IohyveActions,
    ConsoleActions,
    HostActions,
)


def all_specs() -> list[ActionSpec]:
    """Every declared action, in namespace/name/action order."""
    specs = [spec for cls in API_CLASSES for _, spec in declared_actions(cls)]
    return sorted(specs, key=lambda s: (s.namespace, s.name, s.action or ""))


def build_registry(*providers: object, backend: str | None = None) -> Registry:
    """The registry of ``providers``: one instance of each class of :data:`API_CLASSES`
    but :class:`~sysadmd.services.QueryActions`, which is made here (it answers from this
    registry, and names ``backend``, the VM manager, in its reply).

    Raises ValueError naming each class without an instance, and each provider that is
    not of a listed class or is given twice.
    """
    wanted = [cls for cls in API_CLASSES if cls is not QueryActions]
    given = [type(provider) for provider in providers]
    missing = [cls.__name__ for cls in wanted if cls not in given]
    unwanted = [cls.__name__ for cls in given if cls not in wanted or given.count(cls) > 1]
    if missing or unwanted:
        problems = []
        if missing:
            problems.append("no instance of " + ", ".join(missing))
        if unwanted:
            problems.append("not one of the API classes, or given twice: " + ", ".join(unwanted))
        raise ValueError("the API classes do not match: " + "; ".join(problems))
    registry = Registry()
    for provider in providers:
        registry.register(provider)
    registry.register(QueryActions(registry, backend))
    return registry


__all__ = ["API_CLASSES", "all_specs", "build_registry"]
