"""install, forcekill, delete and get, byte for byte, in both dialects."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sim_support import DELETE_DELAY, NO_TTY, Sim, sim_environment, start_process

BOTH = pytest.mark.parametrize("profile", ["0.7.3", "0.7.9"])
HEADER = "Guest  VMM?  Running  rcboot?  Description\n"
REFERENCE_DATE = "Fri Jan  8 20:15:33 CST 2016"
KILL_USAGE = "kill: usage: kill [-s signal_name] pid ...\n"

pytestmark = pytest.mark.usefixtures(sim_environment.__name__)


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    """The simulator with the 0.7.9 profile (pass ``profile=`` per call to switch)."""
    return Sim(tmp_path, capsys, "0.7.9")


def guests(sim: Sim) -> dict[str, dict[str, object]]:
    path = sim.root / "guests.json"
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())["guests"]
    assert isinstance(saved, dict)
    return saved


def props(sim: Sim, name: str) -> dict[str, str]:
    values = guests(sim)[name]["props"]
    assert isinstance(values, dict)
    return values


def status_of(sim: Sim, profile: str = "0.7.9") -> dict[str, tuple[str, str]]:
    """Return ``{guest: (VMM?, Running)}`` from ``list``."""
    rows = [row.split() for row in sim.ok("list", profile=profile).splitlines()[1:]]
    return {row[0]: (row[1], row[2]) for row in rows}


def deletion(name: str) -> str:
    return (
        f"\n[WARNING] Forcing permanent deletion of {name}\n"
        f"Location: tank/iohyve/{name} including children and clones\n"
        "\n"
        "Hit Ctrl+C in the next 10 seconds to cancel...\n"
        f"Deleting {name} at tank/iohyve/{name}...\n"
    )


# -- install --------------------------------------------------------------------------------------


@BOTH
def test_install_boots_without_looking_at_the_iso(sim: Sim, profile: str) -> None:
    sim.ok("create", "web", "8G", profile=profile)
    assert sim("install", "web", "missing.iso", profile=profile) == (
        0,
        "Installing web...\n",
        "",
    )
    assert props(sim, "web")["iohyve:install"] == "yes"
    assert status_of(sim, profile) == {"web": ("YES", "YES")}
    assert sim("install", "web", "x.iso", profile=profile) == (
        0,
        "Guest is already running.\n",
        "",
    )
    assert sim("start", "web", profile=profile) == (0, "Guest is already running.\n", "")
    sim.ok("stop", "web", profile=profile)
    assert status_of(sim, profile) == {"web": ("NO", "NO")}
    sim.ok("start", "web", profile=profile)
    assert props(sim, "web")["iohyve:install"] == "no"


def test_install_of_an_unknown_guest(sim: Sim) -> None:
    assert sim("install", "nope", "x.iso") == (1, "guest nope doesn't exist\n", "")
    assert sim("install", "nope", "x.iso", profile="0.7.3") == (
        0,
        "Not a valid guest name\n",
        "",
    )
    assert sim("install", "web") == (1, "missing argument\nusage:\n\tinstall <name> <ISO>\n", "")


def test_0_7_9_install_refuses_templates(sim: Sim) -> None:
    sim.ok("create", "tpl", "1G")
    sim.ok("set", "tpl", "template=YES")
    assert sim("install", "tpl", "x.iso") == (1, "tpl is a template. Cannot start\n", "")


def test_0_7_3_install_warns_about_guests_without_bargs(sim: Sim) -> None:
    sim.root.mkdir(exist_ok=True)
    old = {"props": {"iohyve:name": "old", "iohyve:size": "8G"}}
    (sim.root / "guests.json").write_text(json.dumps({"format": 1, "guests": {"old": old}}))
    assert sim("install", "old", "x.iso", profile="0.7.3") == (
        0,
        "Installing old...\n"
        "This version of your guest is outdated.\n"
        "Please run iohyve fix-bargs guestname to update.\n",
        "",
    )
    sim.ok("stop", "old", profile="0.7.3")
    assert sim("install", "old", "x.iso") == (0, "Installing old...\n", "")


def test_0_7_3_install_with_a_name_contained_in_another(sim: Sim) -> None:
    for name in ("web", "web2"):
        sim.ok("create", name, "1G", profile="0.7.3")
    assert sim("install", "web", "x.iso", profile="0.7.3") == (
        0,
        "Installing web...\n",
        "[: tank/web: unexpected operator\n",
    )
    assert status_of(sim, "0.7.3") == {"web": ("YES", "YES"), "web2": ("NO", "NO")}
    assert "iohyve:install" not in props(sim, "web2")


# -- forcekill ------------------------------------------------------------------------------------


@BOTH
def test_forcekill_kills_every_guest_whose_name_contains_the_name(sim: Sim, profile: str) -> None:
    for name in ("web", "web2", "other"):
        sim.ok("create", name, "1G", profile=profile)
        sim.ok("start", name, profile=profile)
    assert sim("forcekill", "web", profile=profile) == (0, "", "")
    # pgrep -f web also hits "bhyve: ioh-web2"; only ioh-web is destroyed.
    assert status_of(sim, profile) == {
        "other": ("YES", "YES"),
        "web": ("NO", "NO"),
        "web2": ("YES", "NO"),
    }
    assert sim("forcekill", "web", profile=profile) == (
        1,
        "VM:ioh-web is not created.\n",
        KILL_USAGE,
    )
    assert sim("forcekill", "web2", profile=profile) == (0, "", KILL_USAGE)
    assert status_of(sim, profile)["web2"] == ("NO", "NO")


def test_forcekill_of_a_name_no_vm_has(sim: Sim) -> None:
    for name in ("web", "web2"):
        sim.ok("create", name, "1G")
        sim.ok("start", name)
    assert sim("forcekill", "we") == (1, "VM:ioh-we is not created.\n", "")
    assert status_of(sim) == {"web": ("YES", "NO"), "web2": ("YES", "NO")}


def test_forcekill_without_a_name(sim: Sim) -> None:
    assert sim("forcekill") == (1, "missing argument\nusage:\n\tforcekill <name>\n", "")
    # pgrep's own usage message is not reproduced.
    assert sim("forcekill", profile="0.7.3") == (1, "VM:ioh- is not created.\n", KILL_USAGE)


# -- delete ---------------------------------------------------------------------------------------


def test_delete_with_force_waits_then_destroys_the_guest_and_its_disks(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    sim.ok("add", "web", "20G")
    sim.ok("create", "other", "1G")
    started = time.monotonic()
    assert sim("delete", "-f", "web") == (0, deletion("web"), "")
    assert time.monotonic() - started >= float(DELETE_DELAY)
    assert list(guests(sim)) == ["other"]
    assert sim.ok("list") == HEADER + f"other  NO    NO       NO       {REFERENCE_DATE}\n"
    assert sim("disks", "web") == (0, "Not a valid guest name\n", "")


def test_delete_without_force_asks_on_the_tty(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    assert sim("delete", "web") == (
        0,
        "\n[WARNING] Are you sure you want to permanently delete web and all child datasets?\n"
        "web not deleted...\n",
        NO_TTY,
    )
    # 0.7.3 has no -f and asks first, whatever the words.
    assert sim("delete", "web", profile="0.7.3") == (0, "Not deleted...\n", NO_TTY)
    assert sim("delete", "-f", "web", profile="0.7.3") == (0, "Not deleted...\n", NO_TTY)
    assert list(guests(sim)) == ["web"]


def test_delete_refusals(sim: Sim) -> None:
    usage = (1, "missing argument\nusage:\n\tdelete [-f] <name>\n", "")
    assert sim("delete") == usage
    assert sim("delete", "-f") == usage
    assert sim("delete", "-f", "nope") == (1, "guest nope doesn't exist\n", "")
    assert sim("delete", "nope") == (1, "guest nope doesn't exist\n", "")
    sim.ok("create", "tpl", "1G")
    sim.ok("set", "tpl", "template=YES")
    assert sim("delete", "-f", "tpl") == (1, "tpl is a template. Cannot delete\n", "")


def test_delete_of_a_running_guest_fails_on_its_busy_disk(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    sim.ok("start", "web")
    assert sim("delete", "-f", "web") == (
        1,
        deletion("web"),
        "cannot destroy 'tank/iohyve/web/disk0': dataset is busy\n",
    )
    assert list(guests(sim)) == ["web"]


def test_delete_with_a_bad_delay_is_a_simulator_error(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.ok("create", "web", "8G")
    monkeypatch.setenv("IOHYVE_SIM_DELETE_DELAY", "soon")
    assert sim("delete", "-f", "web") == (
        2,
        "",
        "iohyve-sim: IOHYVE_SIM_DELETE_DELAY is not a number of seconds\n",
    )


def test_the_delete_pause_does_not_hold_the_state_lock(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    sim.ok("create", "other", "1G")
    process = start_process(sim.root, "delete", "-f", "web", IOHYVE_SIM_DELETE_DELAY="1.5")
    assert process.stdout is not None
    try:
        lines = [process.stdout.readline() for _ in range(5)]
        assert lines[-1] == b"Hit Ctrl+C in the next 10 seconds to cancel...\n"
        started = time.monotonic()
        # Other commands, even one that changes the state, run while delete sleeps.
        assert status_of(sim) == {"other": ("NO", "NO"), "web": ("NO", "NO")}
        sim.ok("create", "third", "1G")
        sim.ok("start", "other")
        assert time.monotonic() - started < 1
        assert process.poll() is None
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, stdout, stderr) == (0, b"Deleting web at tank/iohyve/web...\n", b"")
    assert sorted(guests(sim)) == ["other", "third"]
    assert guests(sim)["other"]["running"] is True


def test_a_guest_deleted_during_the_pause_is_gone_afterwards(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    process = start_process(sim.root, "delete", "-f", "web", IOHYVE_SIM_DELETE_DELAY="1.5")
    assert process.stdout is not None
    try:
        for _ in range(5):
            process.stdout.readline()
        assert sim("delete", "-f", "web") == (0, deletion("web"), "")
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, stdout, stderr) == (
        1,
        b"Deleting web at tank/iohyve/web...\n",
        b"cannot open 'tank/iohyve/web': dataset does not exist\n",
    )


@pytest.mark.parametrize("parent_sigint", ["default", "ignored"])
def test_ctrl_c_during_the_pause_cancels_the_deletion(sim: Sim, parent_sigint: str) -> None:
    # "ignored": the test run was started in the background by a non-interactive shell, which
    # ignores SIGINT in what it starts; the simulator must see the Ctrl+C all the same.
    sim.ok("create", "web", "8G")
    previous = signal.getsignal(signal.SIGINT)
    if parent_sigint == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # A pause far longer than the wait below: a SIGINT that does not end the process is
        # reported as such, never as a deletion that happened to finish in time.
        process = start_process(sim.root, "delete", "-f", "web", IOHYVE_SIM_DELETE_DELAY="600")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert process.stdout is not None
    try:
        for _ in range(5):
            process.stdout.readline()
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the simulator was still pausing 30 s after SIGINT")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, stdout, stderr) == (-signal.SIGINT, b"", b"")
    assert list(guests(sim)) == ["web"]


# -- get ------------------------------------------------------------------------------------------


@BOTH
def test_get_prints_the_raw_value(sim: Sim, profile: str) -> None:
    sim.ok("create", "web", "8G", profile=profile)
    ram = "256M" if profile == "0.7.3" else "512M"
    assert sim("get", "web", "ram", profile=profile) == (
        0,
        f"Getting web prop ram...\n{ram}\n",
        "",
    )
    assert sim.ok("get", "web", "description", profile=profile) == (
        f"Getting web prop description...\n{REFERENCE_DATE}\n"
    )
    assert sim.ok("get", "web", "fw", profile=profile) == "Getting web prop fw...\n-\n"


@BOTH
def test_get_of_an_unknown_guest(sim: Sim, profile: str) -> None:
    assert sim("get", "nope", "ram", profile=profile) == (
        1,
        "Getting nope prop ram...\n",
        "/iohyve/nope: No such file or directory\n",
    )
    sim.ok("create", "web", "8G", profile=profile)
    # A name contained in another's finds the pool, then a dataset that does not exist.
    assert sim("get", "we", "ram", profile=profile) == (
        1,
        "Getting we prop ram...\n",
        "cannot open 'tank/iohyve/we': dataset does not exist\n",
    )


def test_get_refusals(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    assert sim("get", "web") == (1, "missing argument\nusage:\n\tget <name> <prop>\n", "")
    assert sim("get", "web", "RAM", profile="0.7.3") == (
        2,
        "Getting web prop RAM...\n",
        "bad property list: invalid property 'iohyve:RAM'\n"
        "usage:\n"
        '\tget [-rHp] [-d max] [-o "all" | field[,...]]\n'
        "\t    [-t type[,...]] [-s source[,...]]\n"
        '\t    <"all" | property[,...]> [filesystem|volume|snapshot] ...\n',
    )
