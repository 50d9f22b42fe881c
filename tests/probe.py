"""A small API class for transport tests: its handlers can be held open by the test."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from sysadmd.api import (
    NAME,
    ActionSpec,
    Api,
    Arg,
    Authentication,
    Call,
    Connection,
    Identity,
    Registry,
    Role,
    action,
    conflict,
)


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
        role=Role.PUBLIC,
        args=[Arg("word", NAME, "the word")],
        reply={"type": "object"},
    )
    async def echo(self, call: Call) -> Any:
        self.started.append(call.args["word"])
        return {"word": call.args["word"]}

    @action(
        "test",
        "probe",
        "hold",
        summary="Answer once released.",
        role=Role.PUBLIC,
        args=[Arg("word", NAME, "the word")],
        reply={"type": "object"},
    )
    async def hold(self, call: Call) -> Any:
        self.started.append(call.args["word"])
        gate: Deferred[None] = Deferred()
        self.gates[call.args["word"]] = gate
        await gate
        return {"word": call.args["word"]}

    @action(
        "test", "probe", "taken", summary="Always 409.", role=Role.PUBLIC, reply={"type": "object"}
    )
    async def taken(self, call: Call) -> Any:
        raise conflict("it is taken")

    @action(
        "test",
        "probe",
        "secret",
        summary="Admins only.",
        role=Role.ADMIN,
        reply={"type": "object"},
    )
    async def secret(self, call: Call) -> Any:
        assert call.caller is not None
        return {"user": call.caller.user}


class OpenGate:
    """A gate where every connection is the given identity (or nobody), auditing to a list."""

    def __init__(self, identity: Identity | None = None) -> None:
        self.identity = identity
        self.audited: list[tuple[str, str]] = []

    def caller(self, connection: Connection) -> Identity | None:
        return self.identity

    async def authenticate(
        self, credentials: Authentication, connection: Connection
    ) -> Identity | None:
        return self.identity

    def audit(self, spec: ActionSpec, call: Call, outcome: str) -> None:
        self.audited.append((spec.title, outcome))


def probe_api(identity: Identity | None = None) -> tuple[Api, Probe]:
    """An :class:`Api` serving only :class:`Probe`."""
    probe = Probe()
    registry = Registry()
    registry.register(probe)
    return Api(registry, OpenGate(identity)), probe
