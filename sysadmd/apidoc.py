"""Renders the API reference in Markdown from the registry's declarations.

``python -m sysadmd.apidoc`` prints it; ``docs/api.md`` holds it between two
marker lines, and a test keeps that copy equal to what this module renders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sysadmd.iohyve.actions import IohyveActions
from sysadmd.registry import ActionSpec, declared_actions

#: Every class of actions the daemon serves.
API_CLASSES: tuple[type, ...] = (IohyveActions,)

BEGIN = "<!-- BEGIN GENERATED REFERENCE: python -m sysadmd.apidoc -->"
END = "<!-- END GENERATED REFERENCE -->"


def all_specs() -> list[ActionSpec]:
    """Every declared action, in namespace/name/action order."""
    specs = [spec for cls in API_CLASSES for _, spec in declared_actions(cls)]
    return sorted(specs, key=lambda s: (s.namespace, s.name, s.action or ""))


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
        title = f"{spec.path} {spec.action}" if spec.action else spec.path
        out += [f"### `{title}`", "", spec.summary, ""]
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


def main() -> None:
    """Print the reference between its marker lines."""
    print(BEGIN)
    print(render(all_specs()))
    print(END)


if __name__ == "__main__":
    main()
