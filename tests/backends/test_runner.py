"""Tests of sysadmd.backends._runner with real processes on the global reactor (pytest-twisted).

``/bin/sh -c`` and small ``sys.executable`` scripts appear here only as the *programs under
test*; the runner itself never uses a shell.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, TypeVar, cast

import pytest
import pytest_twisted
from support import async_test
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import ILogObserver, LogEvent, Logger, formatEvent

from sysadmd.backends._runner import DEFAULT_ENV, ProcessReactor, ProcessResult, ProcessRunner

_T = TypeVar("_T")

SH = "/bin/sh"
PY = sys.executable
GRACE = 0.3
# Upper bound on any single wait, so that a bug fails a test instead of hanging the run.
WAIT_LIMIT = 8.0


@pytest.fixture
def reactor() -> ProcessReactor:
    """The global reactor that pytest-twisted runs."""
    from twisted.internet import reactor as global_reactor  # noqa: PLC0415 - installed by plugin

    return cast(ProcessReactor, global_reactor)


@pytest.fixture(params=["helper", "direct"])
def runner(
    reactor: ProcessReactor, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ProcessRunner]:
    """A runner with a short kill grace; no child may outlive the test.

    Each test runs twice: with the children's directory (``/``) other than the daemon's, so
    the exec helper starts them, and with the daemon in ``/``, so they are spawned directly.
    """
    if request.param == "direct":
        monkeypatch.chdir("/")
    process_runner = ProcessRunner(reactor, kill_grace=GRACE)
    yield process_runner
    if process_runner.running:
        pytest_twisted.blockon(process_runner.stop_all())
        pytest.fail("the test left children running")


def bounded(reactor: ProcessReactor, d: Deferred[_T]) -> Deferred[_T]:
    """Fail with TimeoutError instead of hanging if ``d`` has not fired within WAIT_LIMIT."""
    return d.addTimeout(WAIT_LIMIT, cast(Any, reactor))


def sleep(reactor: ProcessReactor, seconds: float) -> Deferred[None]:
    """A non-blocking sleep on the reactor."""
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its new parent counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except OSError:  # no Linux procfs (FreeBSD): a zombie is reaped by init shortly
        return True
    return state not in (b"Z", b"X")


async def gone_within(reactor: ProcessReactor, pid: int, seconds: float = 2.0) -> bool:
    """Poll (without blocking) until ``pid`` no longer exists; False if it outlives ``seconds``."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await sleep(reactor, 0.02)
    return True


class FirstLine:
    """An ``on_output`` callback that records chunks and fires when stdout has a full line."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.stdout = b""
        self.line: Deferred[bytes] = Deferred()

    def __call__(self, stream: str, data: bytes) -> None:
        """Record one chunk."""
        self.chunks.append((stream, data))
        if stream == "stdout":
            self.stdout += data
            if b"\n" in self.stdout and not self.line.called:
                self.line.callback(self.stdout.split(b"\n", 1)[0])


def python_child(code: str) -> list[str]:
    """Arguments that make ``sys.executable`` run ``code``."""
    return ["-c", code]


# -- capture, exit status ---------------------------------------------------------------------


@async_test
async def test_stdout_stderr_and_exit_code(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """Both streams are captured separately; a non-zero exit is a result, not an errback."""
    result = await bounded(
        reactor, runner.run(SH, ["-c", "printf 'out\\n'; printf 'err\\n' >&2; exit 3"])
    )
    assert result == ProcessResult(
        argv=(SH, "-c", "printf 'out\\n'; printf 'err\\n' >&2; exit 3"),
        exit_code=3,
        signal=None,
        stdout=b"out\n",
        stderr=b"err\n",
        truncated=False,
        timed_out=False,
        cancelled=False,
    )
    assert not result.ok


@async_test
async def test_success_is_ok(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """Exit 0 with complete output is ``ok``; arguments arrive verbatim, no shell in between."""
    args = ["-c", 'printf "%s|" "$@"', "sh", "a b", "*", "$HOME", "'; rm -rf /", ""]
    result = await bounded(reactor, runner.run(SH, args))
    assert result.ok
    assert result.stdout == b"a b|*|$HOME|'; rm -rf /||"
    assert result.stderr == b""


@async_test
async def test_completion_waits_for_all_pipes(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """``done`` fires on processEnded: output written by a grandchild after the child exited is
    still captured."""
    result = await bounded(reactor, runner.run(SH, ["-c", "(sleep 0.2; echo late) & echo early"]))
    assert result.ok
    assert result.stdout == b"early\nlate\n"


@async_test
async def test_python_script_binary_output(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """Arbitrary bytes (NUL, invalid UTF-8) are captured exactly, per stream."""
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(bytes(range(256)))\n"
        "sys.stdout.flush()\n"
        "sys.stderr.buffer.write(b'\\xff\\x00warn')\n"
        "sys.exit(0)\n"
    )
    result = await bounded(reactor, runner.run(PY, python_child(code)))
    assert result.ok
    assert result.stdout == bytes(range(256))
    assert result.stderr == b"\xff\x00warn"


@async_test
async def test_killed_by_signal(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """A child ended by a signal reports the signal and no exit code."""
    result = await bounded(reactor, runner.run(SH, ["-c", "kill -KILL $$"]))
    assert (result.exit_code, result.signal) == (None, signal.SIGKILL)
    assert not result.ok
    assert not result.cancelled
    assert not result.timed_out


@async_test
async def test_missing_program_exits_127(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """An absolute path that does not exist fails in the exec helper with 127."""
    result = await bounded(reactor, runner.run("/nonexistent/sysadmd-test", ["x"]))
    assert result.exit_code == 127
    assert b"/nonexistent/sysadmd-test" in result.stderr
    assert result.argv == ("/nonexistent/sysadmd-test", "x")


# -- environment, cwd, session, inherited state -------------------------------------------------


@async_test
async def test_environment_is_exactly_curated(
    reactor: ProcessReactor, runner: ProcessRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child sees exactly the default variables, nothing of the daemon's environment."""
    monkeypatch.setenv("SYSADMD_TEST_MARKER", "leaked")
    result = await bounded(reactor, runner.run("/usr/bin/env", []))
    assert result.ok
    seen = dict(line.split("=", 1) for line in result.stdout.decode().splitlines())
    assert seen == {
        "PATH": "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": "/",
    }
    assert seen == DEFAULT_ENV


@async_test
async def test_extra_environment(reactor: ProcessReactor) -> None:
    """Variables given to the constructor are added to the defaults."""
    runner = ProcessRunner(reactor, env={"SYSADMD_SIM_ROOT": "/tmp/sim", "LANG": "C.UTF-8"})
    result = await bounded(reactor, runner.run("/usr/bin/env", []))
    seen = dict(line.split("=", 1) for line in result.stdout.decode().splitlines())
    assert seen == {**DEFAULT_ENV, "SYSADMD_SIM_ROOT": "/tmp/sim", "LANG": "C.UTF-8"}


@async_test
async def test_default_working_directory_is_root(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """Children run in ``/`` by default."""
    result = await bounded(reactor, runner.run(PY, python_child("import os; print(os.getcwd())")))
    assert result.stdout == b"/\n"


@async_test
async def test_working_directory_is_configurable(
    reactor: ProcessReactor, tmp_path: os.PathLike[str]
) -> None:
    """The runner's ``path`` is the children's working directory."""
    directory = os.path.realpath(tmp_path)
    runner = ProcessRunner(reactor, path=directory)
    result = await bounded(reactor, runner.run(PY, python_child("import os; print(os.getcwd())")))
    assert result.stdout.decode().strip() == directory


@async_test
async def test_missing_working_directory_exits_125(reactor: ProcessReactor) -> None:
    """If the helper cannot change directory, the program is not run."""
    runner = ProcessRunner(reactor, path="/nonexistent/sysadmd-dir")
    result = await bounded(reactor, runner.run(SH, ["-c", "echo ran"]))
    assert result.exit_code == 125
    assert result.stdout == b""
    assert b"/nonexistent/sysadmd-dir" in result.stderr


@async_test
async def test_child_leads_its_own_session(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """The real program (not a helper) has pid == pgid == sid == the spawned pid."""
    code = "import os, sys; print(os.getpid(), os.getpgrp(), os.getsid(0), sys.argv[1])"
    child = runner.start(PY, [*python_child(code), "marker"])
    result = await bounded(reactor, child.done)
    pid, pgid, sid, marker = result.stdout.split()
    assert child.pid is not None
    assert int(pid) == int(pgid) == int(sid) == child.pid
    assert child.pid != os.getpgrp()
    assert marker == b"marker"  # the program's own argv, with the helper's removed


@async_test
async def test_sigpipe_has_default_disposition(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """The helper restores SIGPIPE (ignored by Python itself) before exec."""
    result = await bounded(reactor, runner.run(SH, ["-c", "kill -PIPE $$; echo survived"]))
    assert result.signal == signal.SIGPIPE
    assert result.stdout == b""


@async_test
async def test_stdin_is_closed(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """A child reading stdin sees end-of-file at once instead of hanging."""
    result = await bounded(reactor, runner.run("/bin/cat", [], timeout=5))
    assert result.ok
    assert result.stdout == b""


@async_test
async def test_no_inherited_file_descriptors(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """Only stdin/stdout/stderr reach the child, even descriptors marked inheritable."""
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, True)
    os.set_inheritable(write_end, True)
    code = (
        "import os\n"
        "found = []\n"
        "for fd in range(3, 1024):\n"
        "    try:\n"
        "        os.fstat(fd)\n"
        "    except OSError:\n"
        "        continue\n"
        "    found.append(fd)\n"
        "print(found)\n"
    )
    try:
        result = await bounded(reactor, runner.run(PY, python_child(code)))
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.ok
    assert json.loads(result.stdout) == []


# -- timeouts, stop, escalation --------------------------------------------------------------


@async_test
async def test_timeout_ends_the_whole_tree(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """A timeout ends the shell *and* the background grandchild holding the pipes."""
    started = time.monotonic()
    result = await bounded(reactor, runner.run(SH, ["-c", "sleep 60 & echo $!; wait"], timeout=0.5))
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert not result.cancelled
    assert not result.ok
    assert result.signal == signal.SIGTERM
    assert 0.5 <= elapsed < 0.5 + GRACE  # SIGTERM was enough: no SIGKILL needed
    grandchild = int(result.stdout)
    assert await gone_within(reactor, grandchild)
    assert runner.running == 0


@async_test
async def test_ignored_term_escalates_to_kill(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """A tree that ignores SIGTERM gets SIGKILL after the grace period."""
    script = "trap '' TERM; sleep 60 & echo $!; wait; wait"
    started = time.monotonic()
    result = await bounded(reactor, runner.run(SH, ["-c", script], timeout=0.4))
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.signal == signal.SIGKILL
    assert 0.4 + GRACE <= elapsed < 0.4 + 2 * GRACE + 1.0
    assert await gone_within(reactor, int(result.stdout))


@async_test
async def test_ignored_term_python_child(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """stop() on a Python child that ignores SIGTERM ends with SIGKILL after the grace."""
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    output = FirstLine()
    child = runner.start(PY, python_child(code), on_output=output)
    assert await bounded(reactor, output.line) == b"ready"
    stopped = time.monotonic()
    child.stop()
    result = await bounded(reactor, child.done)
    assert time.monotonic() - stopped >= GRACE
    assert result.cancelled
    assert not result.timed_out
    assert result.signal == signal.SIGKILL


@async_test
async def test_stop_ends_a_running_tree(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """stop() sends SIGTERM to the group: shell and grandchild end, result is cancelled."""
    output = FirstLine()
    child = runner.start(SH, ["-c", "sleep 60 & echo $!; wait"], on_output=output)
    line = await bounded(reactor, output.line)
    grandchild = int(line)
    assert alive(grandchild)
    assert runner.running == 1
    started = time.monotonic()
    child.stop()
    child.stop()  # idempotent
    result = await bounded(reactor, child.done)
    assert time.monotonic() - started < GRACE
    assert result.cancelled
    assert not result.timed_out
    assert result.signal == signal.SIGTERM
    assert await gone_within(reactor, grandchild)
    assert runner.running == 0
    assert child.result is result
    child.stop()  # after the end: nothing happens


@async_test
async def test_stop_sweeps_descendants_that_released_the_pipes(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """A grandchild that ignores SIGTERM and holds no pipe does not delay the result, and it
    still gets SIGKILL when the child ends during a stop."""
    inner = "echo $$ >&3; exec sleep 60 3>&-"
    script = f"(trap '' TERM; exec /bin/sh -c '{inner}') 3>&1 >/dev/null 2>&1 </dev/null & wait"
    output = FirstLine()
    child = runner.start(SH, ["-c", script], on_output=output)
    line = await bounded(reactor, output.line)  # printed after its SIGTERM is ignored
    grandchild = int(line)
    try:
        started = time.monotonic()
        child.stop()
        result = await bounded(reactor, child.done)
        assert time.monotonic() - started < GRACE
        assert result.cancelled
        assert result.signal == signal.SIGTERM
        assert await gone_within(reactor, grandchild)
    finally:
        if alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


@async_test
async def test_stop_right_after_start(reactor: ProcessReactor, tmp_path: os.PathLike[str]) -> None:
    """A stop before the helper has called setsid still ends the child with SIGTERM at once.

    The runner's directory differs from the test's, which once made Twisted fork instead of
    posix_spawn: the forked child kept the reactor's SIGTERM handler until exec and swallowed it.
    """
    runner = ProcessRunner(reactor, path=os.fspath(tmp_path), kill_grace=GRACE)
    for _ in range(5):
        child = runner.start(SH, ["-c", "sleep 60"])
        child.stop()
        started = time.monotonic()
        result = await bounded(reactor, child.done)
        assert time.monotonic() - started < GRACE  # SIGTERM reached it: no escalation needed
        assert result.cancelled
        assert (result.exit_code, result.signal) == (None, signal.SIGTERM)
    assert runner.running == 0


@async_test
async def test_cancelling_done_stops_the_process(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """Cancelling ``done`` stops the tree; Twisted then requires ``done`` to fail with
    CancelledError, and the result stays available from when_ended()."""
    output = FirstLine()
    child = runner.start(SH, ["-c", "sleep 60 & echo $!; wait"], on_output=output)
    line = await bounded(reactor, output.line)
    grandchild = int(line)
    ended = child.when_ended()
    child.done.cancel()
    with pytest.raises(CancelledError):
        await child.done
    result = await bounded(reactor, ended)
    assert result.cancelled
    assert result.signal == signal.SIGTERM
    assert await gone_within(reactor, grandchild)
    assert runner.running == 0
    assert (await child.when_ended()) is result


@async_test
async def test_descendant_leaving_the_group_cannot_hold_the_result(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """A grandchild that starts its own session keeps our pipes open; after TERM, KILL and
    another grace period the runner closes its pipe ends and still delivers the result."""
    escaper = "import os, time; os.setsid(); print(os.getpid(), flush=True); time.sleep(60)"
    output = FirstLine()
    child = runner.start(
        SH, ["-c", f'"$0" -c "{escaper}" & wait', PY], timeout=0.3, on_output=output
    )
    line = await bounded(reactor, output.line)
    escaped = int(line)
    try:
        started = time.monotonic()
        result = await bounded(reactor, child.done)
        assert result.timed_out
        assert time.monotonic() - started < 0.3 + 3 * GRACE + 1.0
        assert result.signal in (signal.SIGTERM, signal.SIGKILL)
        assert alive(escaped)  # outside our group: the runner could not reach it
    finally:
        os.kill(escaped, signal.SIGKILL)
    assert runner.running == 0


# -- output cap and live output --------------------------------------------------------------


@pytest.mark.parametrize(("size", "truncated"), [(999, False), (1000, False), (1001, True)])
@async_test
async def test_output_cap(reactor: ProcessReactor, size: int, truncated: bool) -> None:
    """Up to max_output bytes per stream are kept; more is dropped and marked truncated."""
    runner = ProcessRunner(reactor, max_output=1000)
    code = (
        "import sys\n"
        f"sys.stdout.buffer.write(bytes(i % 251 for i in range({size})))\n"
        "sys.stderr.buffer.write(b'e' * 10)\n"
    )
    result = await bounded(reactor, runner.run(PY, python_child(code)))
    assert result.exit_code == 0
    assert result.stdout == bytes(i % 251 for i in range(min(size, 1000)))
    assert result.stderr == b"e" * 10
    assert result.truncated is truncated
    assert result.ok is not truncated


@async_test
async def test_output_cap_on_stderr(reactor: ProcessReactor) -> None:
    """The cap applies to each stream on its own."""
    runner = ProcessRunner(reactor, max_output=100)
    code = "import sys; sys.stderr.write('x' * 100000); print('short')"
    result = await bounded(reactor, runner.run(PY, python_child(code)))
    assert result.stderr == b"x" * 100
    assert result.stdout == b"short\n"
    assert result.truncated


@async_test
async def test_on_output_receives_every_chunk(reactor: ProcessReactor) -> None:
    """on_output sees both streams live, including bytes beyond the capture cap."""
    runner = ProcessRunner(reactor, max_output=10)
    code = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    print('line', i, flush=True)\n"
        "    sys.stderr.write('progress %d\\n' % i); sys.stderr.flush()\n"
        "    time.sleep(0.02)\n"
    )
    output = FirstLine()
    result = await bounded(reactor, runner.start(PY, python_child(code), on_output=output).done)
    stdout = b"".join(data for stream, data in output.chunks if stream == "stdout")
    stderr = b"".join(data for stream, data in output.chunks if stream == "stderr")
    assert stdout == b"line 0\nline 1\nline 2\n"
    assert stderr == b"progress 0\nprogress 1\nprogress 2\n"
    assert {stream for stream, _ in output.chunks} == {"stdout", "stderr"}
    assert len(output.chunks) >= 2
    assert result.stdout == stdout[:10]
    assert result.truncated


@async_test
async def test_failing_on_output_does_not_break_the_run(
    reactor: ProcessReactor, runner: ProcessRunner
) -> None:
    """An exception in on_output is logged once; capture and completion go on."""
    calls: list[bytes] = []

    def broken(stream: str, data: bytes) -> None:
        calls.append(data)
        raise RuntimeError("consumer bug")

    events: list[LogEvent] = []
    runner.log = Logger(observer=cast(ILogObserver, events.append))
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.02)\n"
    result = await bounded(reactor, runner.start(PY, python_child(code), on_output=broken).done)
    assert result.ok
    assert result.stdout == b"0\n1\n2\n"
    assert len(calls) == 1
    assert sum("log_failure" in event for event in events) == 1


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("executable", "args"),
    [
        ("sh", ["-c", "true"]),
        ("bin/sh", ["-c", "true"]),
        ("./sh", []),
        ("", []),
        ("/bin/sh\0", []),
        (SH, ["-c", "echo a\0b"]),
        (SH, [b"-c", "true"]),
        (SH, ["-c", 1]),
        (SH, ["-c", None]),
        (SH, "-c true"),
        (SH, b"-c"),
        (b"/bin/sh", []),
    ],
)
def test_invalid_requests_spawn_nothing(
    reactor: ProcessReactor, executable: Any, args: Any
) -> None:
    """Relative paths, NUL bytes and non-str arguments raise ValueError before any spawn."""
    runner = ProcessRunner(reactor)
    with pytest.raises(ValueError, match=r"."):
        runner.start(executable, args)
    with pytest.raises(ValueError, match=r"."):
        runner.run(executable, args)
    assert runner.spawned == 0
    assert runner.running == 0


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
def test_invalid_timeout_spawns_nothing(reactor: ProcessReactor, timeout: float) -> None:
    """A timeout must be a finite number of seconds > 0."""
    runner = ProcessRunner(reactor)
    with pytest.raises(ValueError, match="timeout"):
        runner.run(SH, ["-c", "true"], timeout=timeout)
    assert runner.spawned == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": "tmp"},
        {"path": "/tmp\0"},
        {"env": {"A": "b\0"}},
        {"env": {"A=B": "c"}},
        {"env": {"": "c"}},
        {"env": {"A": 1}},
        {"max_output": -1},
        {"kill_grace": -1.0},
        {"kill_grace": float("nan")},
    ],
)
def test_invalid_configuration(reactor: ProcessReactor, kwargs: dict[str, Any]) -> None:
    """Bad constructor arguments raise ValueError."""
    with pytest.raises(ValueError, match=r"."):
        ProcessRunner(reactor, **kwargs)


# -- counters, stop_all, logging -------------------------------------------------------------


@async_test
async def test_counters_and_stop_all(reactor: ProcessReactor, runner: ProcessRunner) -> None:
    """running counts live children, spawned every start; stop_all ends them all."""
    assert (runner.running, runner.spawned) == (0, 0)
    await bounded(reactor, runner.run(SH, ["-c", "true"]))
    assert (runner.running, runner.spawned) == (0, 1)
    children = [runner.start(SH, ["-c", "sleep 60 & wait"]) for _ in range(3)]
    assert (runner.running, runner.spawned) == (3, 4)
    with pytest.raises(ValueError, match="absolute"):
        runner.start("sleep", ["60"])
    assert (runner.running, runner.spawned) == (3, 4)
    await bounded(reactor, runner.stop_all())
    assert runner.running == 0
    assert runner.spawned == 4
    for child in children:
        assert child.result is not None
        assert child.result.cancelled
        assert child.done.called
    idle = runner.stop_all()
    assert idle.called  # nothing running: fires at once
    await idle


@async_test
async def test_logging(reactor: ProcessReactor) -> None:
    """argv is logged, a non-zero exit at info level, environment values never."""
    runner = ProcessRunner(reactor, env={"SYSADMD_SECRET": "s3cr3t-value"})
    events: list[LogEvent] = []
    runner.log = Logger(observer=cast(ILogObserver, events.append))
    await bounded(reactor, runner.run(SH, ["-c", "exit 4", "argv-marker"]))
    texts = [formatEvent(event) for event in events]
    assert any("argv-marker" in text for text in texts)
    ended = [event for event in events if event.get("exit_code") == 4]
    assert len(ended) == 1
    assert ended[0]["log_level"].name == "info"
    assert not any("s3cr3t-value" in text for text in texts)
    assert not any("s3cr3t-value" in repr(event) for event in events)


@async_test
async def test_children_in_the_daemons_directory_are_spawned_without_a_helper(
    reactor: ProcessReactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the children's directory is the daemon's own, the program itself is spawned in a
    new session: no Python start before its exec."""
    monkeypatch.chdir("/")
    spawned: list[str] = []
    real_spawn = os.posix_spawn

    def spawn(path: str, *args: Any, **kwargs: Any) -> int:
        spawned.append(path)
        assert kwargs.get("setsid") is True
        return real_spawn(path, *args, **kwargs)

    monkeypatch.setattr(os, "posix_spawn", spawn)
    runner = ProcessRunner(reactor, kill_grace=GRACE)
    result = await bounded(reactor, runner.run("/bin/sh", ["-c", "echo $$; ps -o sid= -p $$"]))
    assert result.ok, result
    pid, sid = (int(word) for word in result.stdout.split())
    assert pid == sid
    assert spawned == ["/bin/sh"]
