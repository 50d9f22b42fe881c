"""Sphinx extension: the configuration reference, generated from ``sysadmd.config.KEYS``.

When a build starts (``builder-inited``) it writes ``_generated/config-keys.md`` in the
source directory: one entry per key, grouped by TOML section, with the key's meaning,
its default and the values it accepts. ``configuration.md`` includes that file, so a key
added to the table appears in the site with no other change. The file is written only
when its text changes (atomically, so that two builds at once cannot see half of it), and
the include makes Sphinx rebuild the page when it does.

What a key accepts is taken from the key's own check: it is called with a value that no
check accepts, and the :class:`~sysadmd.config.ConfigError` it raises says what it wants,
in the words the daemon uses when it refuses a bad setting.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from sphinx.application import Sphinx
from sphinx.util.typing import ExtensionMetadata

from sysadmd import config

#: The generated file, relative to the source directory.
GENERATED: Final = Path("_generated") / "config-keys.md"

# Characters that Markdown (CommonMark and MyST's roles and targets) could read as markup.
_MARKUP = re.compile(r"([\\`*_\[\]<>#|{}()!~$^=+-])")


class _Unacceptable:
    """A value that no check accepts: not a string, number, boolean or list."""


def escape(text: str) -> str:
    """``text`` as literal Markdown text (CommonMark lets any ASCII punctuation be escaped)."""
    return _MARKUP.sub(r"\\\1", text)


def toml_value(value: Any) -> str:
    """``value`` the way it is written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        return json.dumps(str(value))
    return repr(value)


def accepted(key: config.Key) -> str | None:
    """What ``key`` accepts, as its check's refusal words it, or None if it accepts anything."""
    try:
        key.check(_Unacceptable(), key.dotted)
    except config.ConfigError as e:
        message = str(e).removeprefix(f"{key.dotted}:").strip()
        return message[:1].upper() + message[1:] + ("." if not message.endswith(".") else "")
    return None


def _default(key: config.Key) -> str:
    if key.default is None:
        return "not set"
    text = toml_value(key.default)
    # A code span whose text holds a backtick needs longer fences around it.
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def label(key: config.Key) -> str:
    """The Sphinx label of ``key``'s entry, e.g. ``config-daemon.listen``."""
    return f"config-{key.dotted}"


def render(keys: Sequence[config.Key]) -> str:
    """The Markdown reference of ``keys``: sections in order of first use, keys in order."""
    sections: dict[str, list[config.Key]] = {}
    for key in keys:
        sections.setdefault(key.section, []).append(key)
    out = [
        "<!-- Generated from sysadmd.config.KEYS by docs/_ext/sysadmd_config.py. -->",
        "",
    ]
    for section, members in sections.items():
        out += [f"## `[{section}]`", ""]
        for key in members:
            out += [f"({label(key)})=", f"### `{key.dotted}`", "", escape(key.doc), ""]
            out += ["Default", f": {_default(key)}", ""]
            words = accepted(key)
            if words is not None:
                if key.default == "":
                    words += " The empty string, the default, is accepted too."
                out += ["Accepted values", f": {escape(words)}", ""]
    return "\n".join(out)


def write_if_changed(path: Path, text: str) -> bool:
    """Replace ``path`` atomically with ``text`` unless it holds that already; True if written."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return True


def _generate(app: Sphinx) -> None:
    write_if_changed(Path(app.srcdir) / GENERATED, render(config.documented_keys()))


def setup(app: Sphinx) -> ExtensionMetadata:
    """Register the generator with Sphinx."""
    app.connect("builder-inited", _generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
