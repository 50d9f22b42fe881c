"""The ``sysadm/iohyve`` API class: the actions of the API page, declared once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from sysadmd.calls import Call
from sysadmd.iohyve.adapter import Iohyve
from sysadmd.registry import NAME, URL, Arg, action
from sysadmd.roles import Role
from sysadmd.tasks import FetchQueue
from sysadmd.validate import iso_name_from_url

NAMESPACE: Final = "sysadm"
CLASS: Final = "iohyve"

_YES_NO: Final = {"type": "string", "enum": ["YES", "NO"]}
_GUEST: Final = {
    "type": "object",
    "properties": {
        "description": {"type": "string"},
        "rcboot": _YES_NO,
        "running": _YES_NO,
        "vmm": _YES_NO,
    },
    "required": ["description", "rcboot", "running", "vmm"],
    "additionalProperties": False,
}


def _object(**properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


class IohyveActions:
    """Handlers of ``sysadm/iohyve``; each validates nothing by hand."""

    def __init__(self, iohyve: Iohyve, fetches: FetchQueue, file_roots: Sequence[Path] = ()):
        self._iohyve = iohyve
        self._fetches = fetches
        self._file_roots = tuple(file_roots)

    @action(
        NAMESPACE,
        CLASS,
        "listvms",
        summary="List the guests with their description, rcboot, running and VMM state.",
        role=Role.OPERATOR,
        reply={"type": "object", "additionalProperties": _GUEST},
    )
    async def listvms(self, call: Call) -> Any:
        return await self._iohyve.list_vms()

    @action(
        NAMESPACE,
        CLASS,
        "fetchiso",
        summary=(
            "Queue a download of an installation ISO; replies at once with the task id. "
            "The ISO is named after the last path segment of the URL."
        ),
        args=[
            Arg(
                "url",
                URL,
                "http://, https://, ftp:// or file:// URL of the ISO; file:// only for "
                "files below the directories the server allows",
            )
        ],
        reply=_object(
            command={"type": "string"},
            comment={"const": "Task Queued"},
            queueid={"type": "string", "pattern": "^\\{[0-9a-f-]{36}\\}$"},
        ),
        role=Role.ADMIN,
        queued=True,
    )
    async def fetchiso(self, call: Call) -> Any:
        url = call.args["url"]
        name = iso_name_from_url(url, "argument 'url'", self._file_roots)
        self._fetches.ensure_free(name)
        await self._iohyve.check_iso_absent(name)
        task = self._fetches.submit(url, name, call.caller.user if call.caller else None)
        return {"command": task.command, "comment": "Task Queued", "queueid": task.id}

    @action(
        NAMESPACE,
        CLASS,
        "renameiso",
        summary="Rename an ISO. 404 if the source does not exist, 409 if the target does.",
        role=Role.ADMIN,
        args=[
            Arg("source", NAME, "the ISO to rename"),
            Arg("target", NAME, "its new name"),
        ],
        reply=_object(source={"type": "string"}, target={"type": "string"}),
    )
    async def renameiso(self, call: Call) -> Any:
        source, target = call.args["source"], call.args["target"]
        await self._iohyve.rename_iso(source, target, busy=self._fetches.busy)
        return {"source": source, "target": target}

    @action(
        NAMESPACE,
        CLASS,
        "rmiso",
        summary="Remove an ISO. 404 if it does not exist.",
        role=Role.ADMIN,
        args=[Arg("target", NAME, "the ISO to remove")],
        reply=_object(target={"type": "string"}),
    )
    async def rmiso(self, call: Call) -> Any:
        target = call.args["target"]
        await self._iohyve.remove_iso(target, busy=self._fetches.busy)
        return {"target": target}
