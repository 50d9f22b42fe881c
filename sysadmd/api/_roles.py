"""Roles: what a logged-in user may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """The role of a user, and the role an action needs.

    ``admin`` may call every action. ``operator`` may call read-only actions.
    ``public`` is only ever needed, never held: actions anyone may call, such as
    the logins themselves.
    """

    PUBLIC = "public"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether a user with this role may call an action that needs ``needed``."""
        order = (Role.PUBLIC, Role.OPERATOR, Role.ADMIN)
        return order.index(self) >= order.index(needed)
