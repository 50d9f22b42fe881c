"""The registry: one declaration per action drives look-up, validation and schemas."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from probe import OpenGate
from support import async_test

from sysadmd.api import (
    NAME,
    Api,
    ApiError,
    Arg,
    Call,
    Connection,
    Registry,
    Role,
    action,
    declared_actions,
)
from sysadmd.catalog._classes import API_CLASSES, all_specs, build_registry
from sysadmd.services import HostActions, IohyveActions, QueryActions

CONNECTION = Connection("127.0.0.1", "test")


class Echo:
    """A small API class for testing the registry on its own."""

    @action(
        "test",
        "echo",
        "say",
        summary="Echo a name.",
        role=Role.PUBLIC,
        args=[Arg("who", NAME, "a name"), Arg("extra", NAME, "optional", required=False)],
        reply={"type": "object"},
    )
    async def say(self, call: Call) -> Any:
        return dict(call.args)

    @action("test", "echo", "fail", summary="Fail.", role=Role.PUBLIC, reply={"type": "object"})
    async def fail(self, call: Call) -> Any:
        raise RuntimeError("a bug")


@pytest.fixture
def api() -> Api:
    registry = Registry()
    registry.register(Echo())
    return Api(registry, OpenGate())


async def _code(api: Api, namespace: str, name: str, args: Any) -> tuple[int, str]:
    try:
        await api.call(namespace, name, args, CONNECTION)
    except ApiError as e:
        return e.code, e.message
    return 200, ""


@async_test
async def test_call_wraps_result_under_action(api: Api) -> None:
    """The handler's result is placed under the action's key."""
    assert await api.call("test", "echo", {"action": "say", "who": "bob"}, CONNECTION) == {
        "say": {"who": "bob"}
    }


@pytest.mark.parametrize(
    ("namespace", "name", "args", "code", "words"),
    [
        ("test", "nope", {"action": "say"}, 404, "no API class"),
        ("other", "echo", {"action": "say"}, 404, "test/echo"),
        ("test", "echo", "say", 400, "object of arguments"),
        ("test", "echo", {}, 400, "'action' string"),
        ("test", "echo", {"action": 5}, 400, "'action' string"),
        ("test", "echo", {"action": "SAY"}, 400, "its actions: fail, say"),
        ("test", "echo", {"action": "say"}, 400, "needs argument 'who'"),
        ("test", "echo", {"action": "say", "who": 5}, 400, "argument 'who' must be a string"),
        ("test", "echo", {"action": "say", "who": "../x"}, 400, "argument 'who' may hold"),
        ("test", "echo", {"action": "say", "who": "a", "whom": "b"}, 400, "the key 'whom'"),
        ("test", "echo", {"action": "fail"}, 500, "internal error"),
    ],
)
@async_test
async def test_errors(
    api: Api, namespace: str, name: str, args: Any, code: int, words: str
) -> None:
    """Each kind of bad request gets its code and a message that names the problem."""
    got_code, message = await _code(api, namespace, name, args)
    assert got_code == code
    assert words in message


def test_schemas_accept_valid_and_refuse_invalid_arguments() -> None:
    """The derived JSON Schema agrees with the validation for every iohyve action."""
    declared = [spec for _, spec in declared_actions(IohyveActions)]
    # Uploads are a class of their own (sysadm/isoupload): no JSON call carries an ISO.
    assert [s.name for s in declared if s.name != "iohyve"] == ["isoupload"]
    specs = {spec.action: spec for spec in declared if spec.name == "iohyve"}
    assert sorted(str(a) for a in specs) == sorted(
        [
            "adddisk",
            "create",
            "delete",
            "deletedisk",
            "fetchiso",
            "getprops",
            "install",
            "isodigests",
            "isolibrary",
            "issetup",
            "listdisks",
            "listisos",
            "listvms",
            "renameiso",
            "resizedisk",
            "rmiso",
            "setprop",
            "setup",
            "start",
            "stop",
            "version",
        ]
    )
    rename = specs["renameiso"].args_schema()
    jsonschema.validate({"action": "renameiso", "source": "a.iso", "target": "b.iso"}, rename)
    for bad in (
        {"action": "renameiso", "source": "a.iso"},
        {"action": "renameiso", "source": "-a", "target": "b"},
        {"action": "renameiso", "source": "a", "target": "b", "x": "y"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, rename)
        with pytest.raises(ApiError):
            specs["renameiso"].parse_args(bad)
    assert specs["renameiso"].role is Role.ADMIN
    assert specs["listvms"].role is Role.OPERATOR


def test_duplicate_registration_is_refused() -> None:
    """An action cannot be declared twice."""
    registry = Registry()
    registry.register(Echo())
    with pytest.raises(ValueError, match="twice"):
        registry.register(Echo())
    with pytest.raises(ValueError, match="declares no actions"):
        registry.register(object())


def test_every_argument_type_accepts_its_example() -> None:
    """Each declared argument's example passes its own check and its schema."""
    for spec in all_specs():
        for arg in spec.args:
            assert arg.type.check(arg.type.example, "x") is not None
            jsonschema.validate(arg.type.example, arg.type.schema)


def _bare(cls: type) -> object:
    """An instance of an API class made without its dependencies: registering it only
    reads its declarations and binds its methods."""
    return object.__new__(cls)


def test_the_daemon_registry_is_built_from_the_one_list_of_classes() -> None:
    """build_registry serves exactly the classes the docs read (QueryActions made there)."""
    providers = [_bare(cls) for cls in API_CLASSES if cls is not QueryActions]
    registry = build_registry(*reversed(providers))
    assert [s.title for s in registry.specs()] == [s.title for s in all_specs()]


def test_build_registry_refuses_a_missing_extra_or_repeated_class() -> None:
    """A class left out, an unknown provider or one given twice stops the daemon's start."""
    providers = [_bare(cls) for cls in API_CLASSES if cls is not QueryActions]
    with pytest.raises(ValueError, match=r"no instance of HostActions$"):
        build_registry(*providers[:-1])
    with pytest.raises(ValueError, match=r"given twice: Echo$"):
        build_registry(*providers, Echo())
    with pytest.raises(ValueError, match=r"given twice: HostActions, HostActions$"):
        build_registry(*providers, _bare(HostActions))
    with pytest.raises(ValueError, match="given twice: QueryActions"):
        build_registry(*providers, QueryActions(Registry()))
