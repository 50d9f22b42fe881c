"""A small API class for transport tests: its handlers can be held open by the test."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from sysadmd.api import Api
from sysadmd.errors import conflict
from sysadmd.registry import NAME, Arg, Registry, action


class Probe:
    """``test/probe``: ``echo`` answers at once, ``hold`` waits until the test releases it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, Deferred[None]] = {}

    @action(
        "test",
        "probe",
        "echo",
        summary="Echo a word.",
        args=[Arg("word", NAME, "the word")],
        reply={"type": "object"},
    )
    async def echo(self, args: dict[str, Any]) -> Any:
        self.started.append(args["word"])
        return {"word": args["word"]}

    @action(
        "test",
        "probe",
        "hold",
        summary="Answer once released.",
        args=[Arg("word", NAME, "the word")],
        reply={"type": "object"},
    )
    async def hold(self, args: dict[str, Any]) -> Any:
        self.started.append(args["word"])
        gate: Deferred[None] = Deferred()
        self.gates[args["word"]] = gate
        await gate
        return {"word": args["word"]}

    @action("test", "probe", "taken", summary="Always 409.", reply={"type": "object"})
    async def taken(self, args: dict[str, Any]) -> Any:
        raise conflict("it is taken")


def probe_api() -> tuple[Api, Probe]:
    """An :class:`Api` serving only :class:`Probe`."""
    probe = Probe()
    registry = Registry()
    registry.register(probe)
    return Api(registry), probe
