"""Sphinx extension: build the generated parts of the site from the declarations themselves.

Two pages hold text rendered from the code: docs/api.md's reference of every action, between
its marker lines (:mod:`sysadmd.catalog.reference`), and docs/iohyve.rst, the worked examples
(:mod:`sysadmd.catalog.examples`). The files keep a copy so that they read well where no
site is built, and tests keep those copies current. This extension renders both afresh
while Sphinx reads the sources, so the site is always built from the registry's
declarations and the examples that the tests run against the daemon, never from a copy.
"""

from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.util.typing import ExtensionMetadata

from sysadmd.catalog import examples, reference


def render_generated_parts(app: Sphinx, docname: str, source: list[str]) -> None:
    """Replace the copies in ``api`` and ``iohyve`` by what the code renders now."""
    if docname == "api":
        text = source[0]
        start = text.index(reference.BEGIN)
        end = text.index(reference.END) + len(reference.END)
        source[0] = text[:start] + reference.generated() + text[end:]
    elif docname == "iohyve":
        source[0] = examples.render()


def setup(app: Sphinx) -> ExtensionMetadata:
    """Render the generated parts as their pages are read."""
    app.connect("source-read", render_generated_parts)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
