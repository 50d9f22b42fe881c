"""Renders the API reference in Markdown from the registry's declarations.

The actions are those of :data:`sysadmd.catalog._classes.API_CLASSES`, the classes the daemon
registers.

``python -m sysadmd.catalog.reference`` prints it and ``python -m sysadmd.catalog.reference --update
docs/api.md`` refreshes the copy that file holds between two marker lines; a test
keeps that copy equal to what this module renders.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from sysadmd.api import ActionSpec, Role
from sysadmd.catalog._classes import API_CLASSES, all_specs

__all__ = ["API_CLASSES", "BEGIN", "END", "all_specs", "generated", "main", "render"]

BEGIN = "<!-- BEGIN GENERATED REFERENCE: python -m sysadmd.catalog.reference -->"
END = "<!-- END GENERATED REFERENCE -->"


_ROLE = {
    Role.PUBLIC: "Needs no login.",
    Role.OPERATOR: "Needs the operator or admin role.",
    Role.ADMIN: "Needs the admin role.",
}


def _example(spec: ActionSpec) -> dict[str, object]:
    args: dict[str, object] = {"action": spec.action} if spec.action else {}
    for arg in spec.args:
        if arg.required:
            args[arg.name] = f"<{arg.name}>"
    return args


def render(specs: Iterable[ActionSpec]) -> str:
    """The Markdown reference of ``specs``."""
    out: list[str] = []
    for spec in specs:
        needs = _ROLE[spec.role]
        if spec.own_account is not None:
            needs = needs[:-1] + f", or the {spec.own_account} role for its own account."
        out += [f"### `{spec.title}`", "", spec.summary, "", needs, ""]
        if spec.queued:
            out += ["Runs as a queued background task; the reply comes at once.", ""]
        if spec.args:
            out += ["| argument | required | meaning |", "|---|---|---|"]
            out += [
                f"| `{a.name}` | {'yes' if a.required else 'no'} | {a.description} |"
                for a in spec.args
            ]
            out.append("")
        else:
            out += ["No arguments.", ""]
        request = json.dumps(_example(spec))
        out += [
            f"Request: `PUT /{spec.path}` with `{request}`.",
            "",
            "Reply `args` (JSON Schema):",
            "",
            "```json",
            json.dumps(spec.reply_schema(), indent=2, sort_keys=True),
            "```",
            "",
        ]
    return "\n".join(out)


def generated() -> str:
    """The reference with its marker lines, as docs/api.md holds it."""
    return f"{BEGIN}\n{render(all_specs())}\n{END}"


def main(argv: list[str] | None = None) -> None:
    """Print the reference, or with ``--update FILE`` replace it inside FILE."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--update":
        path = Path(args[1])
        text = path.read_text()
        start, end = text.index(BEGIN), text.index(END) + len(END)
        path.write_text(text[:start] + generated() + text[end:])
        return
    print(generated())


if __name__ == "__main__":
    main()
