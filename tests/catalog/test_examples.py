"""docs/iohyve.rst: the page is what sysadmd.catalog.examples renders, and every example works."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import async_fixture, async_test
from test_iohyve_api import CONNECTION, VM_BHYVE_PROFILES, Stack, VmBhyveStack

from sysadmd.api import ApiError
from sysadmd.catalog import examples
from sysadmd.catalog.reference import all_specs

PAGE = Path(__file__).parents[2] / "docs" / "iohyve.rst"


def test_page_is_current() -> None:
    """Refresh with `python -m sysadmd.catalog.examples docs/iohyve.rst` when this fails."""
    assert PAGE.read_text() == examples.render()


def test_every_action_of_the_class_has_an_example() -> None:
    """The page shows every action of sysadm/iohyve at least once."""
    shown = {e.args["action"] for e in examples.EXAMPLES}
    assert {s.action for s in all_specs() if s.path == "sysadm/iohyve"} <= shown


@async_fixture(params=["0.7.3", "0.7.9", *VM_BHYVE_PROFILES])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    files = tmp_path / "files"
    files.mkdir()
    # The fetch workers do not run: the page's ftp:// URL stays queued, never fetched.
    if request.param in VM_BHYVE_PROFILES:
        # A host that is not set up yet: the page's setup prepares it (zfs:tank/vm).
        running: Stack = VmBhyveStack(
            tmp_path / "sim", request.param, [files], run_fetches=False, set_up=False
        )
    else:
        running = Stack(tmp_path / "sim", request.param, [files], run_fetches=False)
    for name in examples.STARTING_ISOS:
        (files / name).write_bytes(name.encode())
        if isinstance(running, VmBhyveStack):
            running.add_iso(files / name)
        else:
            running.sim("fetch", f"file://{files / name}")
    yield running
    await running.runner.stop_all()


@async_test
async def test_examples_run_in_order(stack: Stack) -> None:
    """Each example gets the reply (or the error) the page shows."""
    ran = 0
    # vm-bhyve answers as the newest iohyve does (0.7.9's examples), setup included
    # (zfs create tank/vm, rc.conf, vm init, the switch on em0).
    vm_bhyve = isinstance(stack, VmBhyveStack)
    for example in examples.EXAMPLES:
        profile = "0.7.9" if vm_bhyve else stack.profile
        if profile not in example.profiles:
            continue
        try:
            reply = await stack.api.call("sysadm", "iohyve", example.args, CONNECTION)
        except ApiError as e:
            assert example.error == (e.code, e.message), example.title
        else:
            assert example.error is None, example.title
            action = example.args["action"]
            assert examples.matches({action: example.reply}, reply), (example.title, reply)
        ran += 1
    assert ran >= 19
