"""Every API class the daemon serves, and what is derived from them all.

The private module ``_classes`` lists the classes (each one from ``sysadmd.services``) and
builds the registry. Three modules stay public because they are command lines run with
``python -m``: :mod:`sysadmd.catalog.openapi` (the OpenAPI document, also served by the REST
transport), :mod:`sysadmd.catalog.reference` (docs/api.md's generated part) and
:mod:`sysadmd.catalog.examples` (docs/iohyve.rst); this ``__init__`` does not import them, so
running one does not load it twice.

May import: ``sysadmd.services`` and every layer below it.
"""

from sysadmd.catalog._classes import all_specs, build_registry

__all__ = ["all_specs", "build_registry"]
