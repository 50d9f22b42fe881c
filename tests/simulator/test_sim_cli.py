"""The simulator's command line, dispatch rules and entry points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sim_support import REPO_ROOT, Sim, run_process, sim_env

from sysadmd.simulator import dialects
from sysadmd.simulator.cli import main, parse_options
from sysadmd.simulator.context import Context
from sysadmd.simulator.profiles import V073, V079

VERSION_073 = "iohyve v0.7.3 2016/01/08 Bear in a Datacenter Edition\n"
VERSION_079 = "iohyve v0.7.9 2017/06/26 I Believe in You, You Can Do the Thing Edition\n"


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    return Sim(tmp_path, capsys, "0.7.9")


def test_version(sim: Sim) -> None:
    assert sim("version") == (0, VERSION_079, "")
    assert sim("version", profile="0.7.3") == (0, VERSION_073, "")


@pytest.mark.parametrize("profile", ["0.7.3", "0.7.9"])
@pytest.mark.parametrize("words", [(), ("help",), ("-h",)])
def test_help(sim: Sim, profile: str, words: tuple[str, ...]) -> None:
    status, out, err = sim(*words, profile=profile)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "iohyve  version"
    # 0.7.3's here-document indents some lines with a TAB, others with eight spaces.
    assert all(line.startswith((" " * 8, "\t")) for line in lines[1:])
    listed = {line.split()[0] for line in lines[1:]}
    fetch_word = "fetch" if profile == "0.7.3" else "fetchiso"
    assert {"list", "isolist", fetch_word, "renameiso", "rmiso", "create", "start"} <= listed
    assert {"stop", "set", "getall", "help", "setup", "info", "install", "forcekill"} <= listed
    assert {"delete", "get", "add", "remove", "resize", "disks"} <= listed


def test_help_marks_arguments_per_dialect() -> None:
    assert "\trmiso [ISO]" in V073.help_lines
    assert "        fetch [URL]" in V073.help_lines
    assert "        setup pool=[poolname] kmod=[0/1] net=[interface]" in V073.help_lines
    assert len(V073.help_lines) == 43
    assert "        rmiso <ISO>" in V079.help_lines
    assert "        delete [-f] <name>" in V079.help_lines


def test_unknown_words_are_skipped_by_0_7_3(sim: Sim) -> None:
    assert sim("foo", profile="0.7.3") == (0, "", "")
    assert sim("foo", "bar", "version", profile="0.7.3") == (0, VERSION_073, "")
    assert sim("foo", "list", profile="0.7.3")[1].startswith("Guest  VMM?")


def test_unknown_words_are_errors_in_0_7_9(sim: Sim) -> None:
    expected = (1, "'foo' is not a valid command!\nTry 'iohyve help' for more info.\n", "")
    assert sim("foo") == expected
    assert sim("foo", "list") == expected


def test_commands_the_simulator_lacks_fail_loudly(sim: Sim) -> None:
    message = "iohyve-sim: snap: iohyve command not provided by the simulator\n"
    assert sim("snap", "g@s") == (2, "", message)
    assert sim("foo", "snap", profile="0.7.3") == (2, "", message)
    # Words that do not exist in a release stay unknown words there.
    assert sim("rmprop", profile="0.7.3") == (0, "", "")
    assert sim("rmpci")[0] == 1


def test_options_are_parsed_before_iohyve_words() -> None:
    assert parse_options(["--root", "/r", "--profile=0.7.3", "list", "--pool", "x"]) == (
        {"root": "/r", "profile": "0.7.3"},
        ["list", "--pool", "x"],
    )
    assert parse_options(["--pool", "zroot", "--", "--weird"]) == ({"pool": "zroot"}, ["--weird"])
    assert parse_options(["-h"]) == ({}, ["-h"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus", "list"], "iohyve-sim: unknown option '--bogus'\n"),
        (["--root"], "iohyve-sim: option '--root' needs a value\n"),
        (
            ["--profile", "0.7.5", "list"],
            "iohyve-sim: unknown profile '0.7.5' (use 0.7.3 or 0.7.9)\n",
        ),
        (["--pool", "a/b", "list"], "iohyve-sim: invalid pool name 'a/b'\n"),
    ],
)
def test_option_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["--root", str(tmp_path), *args] if args[0] != "--root" else args) == 2
    assert capsys.readouterr() == ("", message)


def test_root_and_profile_come_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IOHYVE_SIM_ROOT", raising=False)
    monkeypatch.delenv("IOHYVE_SIM_PROFILE", raising=False)
    assert main(["list"]) == 2
    assert capsys.readouterr() == (
        "",
        "iohyve-sim: no state directory: give --root DIR or set IOHYVE_SIM_ROOT\n",
    )
    monkeypatch.setenv("IOHYVE_SIM_ROOT", str(tmp_path))
    monkeypatch.setenv("IOHYVE_SIM_PROFILE", "0.7.3")
    assert main(["version"]) == 0
    assert capsys.readouterr().out == VERSION_073
    assert main(["--profile", "0.7.9", "version"]) == 0
    assert capsys.readouterr().out == VERSION_079
    assert main(["isolist"]) == 0
    assert (tmp_path / "iohyve" / "ISO").is_dir()
    assert (tmp_path / ".lock").is_file()


def test_a_damaged_state_file_is_reported(sim: Sim) -> None:
    sim.root.mkdir(exist_ok=True)
    (sim.root / "guests.json").write_text("{not json")
    status, out, err = sim("list")
    assert (status, out) == (2, "")
    assert err.startswith(f"iohyve-sim: cannot read {sim.root / 'guests.json'}: ")


# -- as a process -------------------------------------------------------------------------------


def test_python_m_entry_point_and_exit_codes(tmp_path: Path) -> None:
    version = run_process(tmp_path, "version")
    assert (version.returncode, version.stdout, version.stderr) == (0, VERSION_079.encode(), b"")
    unknown = run_process(tmp_path, "foo")
    assert unknown.returncode == 1
    assert unknown.stdout == b"'foo' is not a valid command!\nTry 'iohyve help' for more info.\n"
    missing = run_process(tmp_path, "rmiso", "nope.iso")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        1,
        b"Deleting nope.iso...\n",
        b"cannot open 'tank/iohyve/ISO/nope.iso': dataset does not exist\n",
    )
    stopped = run_process(tmp_path, "--profile", "0.7.3", "stop", "nope")
    assert stopped.returncode == 2


def test_without_a_root_the_process_exits_2(tmp_path: Path) -> None:
    env = sim_env(tmp_path)
    del env["IOHYVE_SIM_ROOT"]
    result = subprocess.run(
        [sys.executable, "-m", "sysadmd.simulator", "list"],
        capture_output=True,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.count(b"\n") == 1


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("iohyve-sim")
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    result = subprocess.run(
        [str(script), "--profile", "0.7.3", "version"],
        capture_output=True,
        env=sim_env(tmp_path),
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, VERSION_073.encode())


def test_parallel_creates_keep_the_state_consistent(tmp_path: Path) -> None:
    names = [f"guest{index}" for index in range(8)]
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(lambda name: run_process(tmp_path, "create", name, "1G"), names))
    for name, result in zip(names, results, strict=True):
        assert (result.returncode, result.stdout, result.stderr) == (
            0,
            f"Creating {name}...\n".encode(),
            b"",
        )
    guests = json.loads((tmp_path / "guests.json").read_text())["guests"]
    assert sorted(guests) == names
    # The lock serialises the "highest + 1" numbering that real iohyve races on.
    taps = sorted(guest["props"]["iohyve:tap"] for guest in guests.values())
    assert taps == sorted(f"tap{index}" for index in range(8))
    assert not [entry for entry in tmp_path.iterdir() if entry.name.endswith(".tmp")]
    listed = run_process(tmp_path, "list").stdout.decode().splitlines()
    assert [row.split()[0] for row in listed[1:]] == names


def test_simulator_help(sim: Sim) -> None:
    assert main(["--help"]) == 0
    out = sim.capsys.readouterr().out
    assert out.startswith("usage: iohyve-sim [--root DIR] [--profile 0.7.3|0.7.9] [--pool NAME]")


def test_a_closed_output_pipe_ends_the_process_like_sigpipe(tmp_path: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # nobody will ever read: the first write raises EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sysadmd.simulator", "help"],
            stdout=writer,
            stderr=subprocess.PIPE,
            env=sim_env(tmp_path),
            cwd=REPO_ROOT,
            timeout=30,
            check=False,
        )
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (-signal.SIGPIPE, b"")


@pytest.mark.parametrize("profile", ["0.7.3", "0.7.9"])
def test_iohyve_is_one_dialect_chosen_by_its_name_or_by_default(sim: Sim, profile: str) -> None:
    """``iohyve-sim iohyve version`` is ``iohyve version``, as ``iohyve-sim version`` is."""
    expected = VERSION_073 if profile == "0.7.3" else VERSION_079
    assert sim("iohyve", "version", profile=profile) == (0, expected, "")
    assert sim("version", profile=profile) == (0, expected, "")


def test_a_dialect_added_to_the_registry_is_chosen_by_its_word(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new tool is one more entry in the registry; iohyve's words are untouched."""

    def vm(ctx: Context, words: list[str]) -> int:
        ctx.output.out("vm " + " ".join(words))
        return 0

    monkeypatch.setitem(dialects.DIALECTS, "vm", dialects.Dialect("vm", vm, "a test tool"))
    assert sim("vm", "list") == (0, "vm list\n", "")
    assert sim("version") == (0, VERSION_079, "")
    assert {"iohyve", "zpool", "ifconfig", "sysctl"} <= set(dialects.DIALECTS)
