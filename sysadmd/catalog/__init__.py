"""Every API class the daemon serves, and what is derived from them all.

``classes`` lists the classes (each one a module of ``sysadmd.services``); ``openapi``,
``reference`` (docs/api.md's generated part) and ``examples`` (docs/iohyve.rst) are built
from their declarations.

May import: ``sysadmd.services`` and every layer below it.
"""
