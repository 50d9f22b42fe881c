"""Sphinx configuration of the sysadmd documentation site: ``make -C docs html``.

The Markdown pages are read by myst-parser; the theme is Sphinx's bundled alabaster, so
the site needs nothing beyond the ``docs`` extra of pyproject.toml. The configuration
reference is generated from :data:`sysadmd.config.KEYS` by ``_ext/sysadmd_config.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# The local extensions; then the checkout, for a sysadmd that is not installed. It goes
# last so that the checkout's twisted/plugins directory cannot shadow Twisted itself.
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.append(str(DOCS.parent))

from sysadmd import __version__  # noqa: E402 - needs the path above

project = "sysadmd"
author = "the sysadmd authors"
copyright = "the sysadmd authors"
release = version = __version__

extensions = ["myst_parser", "sysadmd_config", "sysadmd_generated", "sysadmd_json"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

# Definition lists for the configuration reference; anchors on headings down to the
# third level, so that pages can link to "page.md#heading".
myst_enable_extensions = ["deflist"]
myst_heading_anchors = 3

# Keep quotes as typed: values such as 'text' must not turn into curly quotes.
smartquotes = False

html_theme = "alabaster"
html_title = "sysadmd"
html_theme_options = {
    "description": "The sysadm iohyve API for bhyve on FreeBSD, as one Twisted daemon",
    "fixed_sidebar": True,
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_static_path: list[str] = []
