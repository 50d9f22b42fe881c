"""Sphinx extension: highlight ``json`` blocks the way sysadm's API pages write them.

Those pages (and ``docs/iohyve.rst``, which follows their format) put the REST request
line, ``PUT /sysadm/iohyve``, above the JSON body in one ``json`` block, and the prose
pages elide parts of long replies with ``…``. Pygments' JSON lexer takes both for errors.
This lexer reads an optional request line first and a ``…`` outside a string as an
elision, and hands everything else to the JSON lexer. Any other error still makes Sphinx
warn, which fails the ``-W`` build, as with the stock lexer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

# Pygments ships no type information (types-Pygments is not a dependency).
from pygments.lexer import Lexer  # type: ignore[import-untyped]
from pygments.lexers.data import JsonLexer  # type: ignore[import-untyped]
from pygments.token import (  # type: ignore[import-untyped]
    Comment,
    Error,
    Keyword,
    Name,
    Text,
)
from sphinx.application import Sphinx
from sphinx.util.typing import ExtensionMetadata

_REQUEST_LINE = re.compile(r"(PUT|POST|GET)( +)(/\S*)(\n*)")
ELLIPSIS = "…"


class RequestJsonLexer(Lexer):  # type: ignore[misc]
    """JSON, optionally after an HTTP request line, with ``…`` for elided parts."""

    name = "JSON with a request line"
    aliases: ClassVar[list[str]] = ["json"]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Sphinx adds this filter only to the lexers it looks up itself; keep its strictness.
        self.add_filter("raiseonerror")

    def get_tokens_unprocessed(self, text: str) -> Iterator[tuple[int, Any, str]]:
        """The tokens of ``text``: the request line's, then the JSON lexer's."""
        offset = 0
        line = _REQUEST_LINE.match(text)
        if line:
            method, spaces, path, newlines = line.groups()
            yield 0, Keyword, method
            yield line.start(2), Text.Whitespace, spaces
            yield line.start(3), Name.Namespace, path
            yield line.start(4), Text.Whitespace, newlines
            offset = line.end()
        for index, token, value in JsonLexer().get_tokens_unprocessed(text[offset:]):
            shown = Comment if token is Error and value == ELLIPSIS else token
            yield offset + index, shown, value


def setup(app: Sphinx) -> ExtensionMetadata:
    """Use the lexer for every ``json`` block."""
    app.add_lexer("json", RequestJsonLexer)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
