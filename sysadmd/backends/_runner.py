"""The process runner: the only place in sysadmd that starts child processes.

Every child is started with an argv list (never a shell), an absolute executable path, a curated
environment, a fixed working directory and stdin closed. It runs in a session and process group of
its own, so that a timeout or a cancel can end the whole tree (``iohyve`` is a shell script that
forks ``zfs`` and ``fetch``). Nothing here blocks the reactor thread.

Process groups
    When the children's working directory is the daemon's own (``/`` for both, in a daemon
    started from ``/``) and the reactor is Twisted's POSIX reactor, the program itself is
    started with ``os.posix_spawn(..., setsid=True)``, with the descriptors Twisted sets up
    and the signals the daemon ignores reset to their defaults: one exec, in a session and
    group of its own from the start. ``posix_spawn`` cannot change directory, and a program
    the system refuses to start (no such file, not executable) is left to the helper below,
    so that it fails the helper's way (127 or 126).

    Otherwise, as Twisted's ``spawnProcess`` has no pre-exec hook for children without a
    PTY, the child is started through a tiny exec helper, at the cost of a Python start:
    ``sys.executable -I -S -c HELPER cwd target argv...``.
    The helper calls ``os.setsid()`` and ``os.chdir(cwd)``, restores the signals that the Python
    interpreter ignores at start (``SIGPIPE``, ``SIGXFSZ``) to their defaults and replaces itself
    with the real program (``os.execv``), which therefore runs with pid == pgid == sid == the
    spawned pid. If
    ``setsid`` or ``chdir`` fails the helper exits 125 without running the program; if ``execv``
    fails it exits 127 (no such file) or 126 (any other error); either way with a one-line message
    on stderr.

    The helper changes directory itself, and ``spawnProcess`` gets ``path=None``, because Twisted
    only uses ``posix_spawnp`` when ``path`` is None or the daemon's own working directory.
    Otherwise it forks the daemon and runs Python code in the child until ``exec``, with the
    daemon's Python signal handlers still installed, so a ``SIGTERM`` sent in that window (a stop
    right after the start) would be swallowed by the reactor's handler.

Ending a child (timeout or :meth:`RunningProcess.stop`)
    ``SIGTERM`` goes to the whole group (``os.killpg``). If the tree has not ended after
    ``kill_grace`` seconds, ``SIGKILL`` goes to the group. If the pipes are still open another
    ``kill_grace`` seconds later (a descendant left the group but kept our pipes), our ends of the
    pipes are closed so that the result can still be delivered. When the child ends while it is
    being stopped and ``SIGKILL`` has not been sent yet, the group gets ``SIGKILL`` at once: after
    that instant the group id could be reused, so it is the last moment a signal is safe.

    ``killpg`` answers ``ESRCH`` both when the group is gone and when the helper has not run
    ``setsid`` yet (a stop right after the start). The two are told apart by whether the child has
    been reaped: if it has not, the signal is sent to the pid alone through the transport.

Groups left by a previous daemon
    A child outlives a daemon killed with ``SIGKILL``: it has a session of its own. Its group id
    and the moment its leader started (:attr:`RunningProcess.started`, as the system reports
    process start times) are journalled with the task, so that the next daemon can end the
    group with :func:`end_left_over_group`. Before it signals anything, that function checks
    the group still looks like the one recorded, since the pid may have been reused: the leader,
    if alive, must have started at the recorded time, and a member's command line must name the
    task's ISO.
"""

from __future__ import annotations

import fcntl
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from signal import SIGKILL, SIGTERM, Signals
from types import MappingProxyType
from typing import Any, Protocol, cast

import psutil
from twisted.internet import process as twisted_process
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.shared import OneShotObserver

__all__ = [
    "DEFAULT_ENV",
    "DEFAULT_MAX_OUTPUT",
    "START_TIME_TOLERANCE",
    "DelayedCall",
    "ProcessReactor",
    "ProcessResult",
    "ProcessRunner",
    "RunningProcess",
    "end_left_over_group",
    "start_time",
]

DEFAULT_ENV: Mapping[str, str] = MappingProxyType(
    {
        "PATH": "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": "/",
    }
)
"""The whole environment of every child unless the runner is given extra variables."""

DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024
"""Default cap, in bytes, on the output captured per stream."""

START_TIME_TOLERANCE = 1.0
"""Seconds two readings of one process's start time may differ by (the system derives it
from the boot time, which a clock step moves)."""

# Run as ``python -I -S -c _EXEC_HELPER <cwd> <target> <argv0> <argv1> ...``; with -c,
# sys.argv[0] is "-c", so sys.argv[1] is the working directory, sys.argv[2] the program to execute
# and sys.argv[3:] its argv.
_EXEC_HELPER = """\
import errno, os, signal, sys
try:
    os.setsid()
    os.chdir(sys.argv[1])
except OSError as e:
    sys.stderr.write("sysadmd exec helper: %s\\n" % e)
    os._exit(125)
for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
try:
    os.execv(sys.argv[2], sys.argv[3:])
except OSError as e:
    sys.stderr.write("sysadmd exec helper: %s: %s\\n" % (sys.argv[2], e.strerror))
    os._exit(127 if e.errno == errno.ENOENT else 126)
"""


class DelayedCall(Protocol):
    """The part of ``IDelayedCall`` that the runner uses."""

    def active(self) -> bool:
        """Return whether the call is still pending."""

    def cancel(self) -> None:
        """Unschedule the call."""


class ProcessReactor(Protocol):
    """The reactor the runner needs: ``IReactorProcess`` plus ``IReactorTime``.

    The global Twisted reactor provides both; tests may pass a fake.
    """

    def spawnProcess(
        self,
        processProtocol: ProcessProtocol,
        executable: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        path: str | None,
    ) -> object:
        """Start a process; see ``IReactorProcess.spawnProcess``."""

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> DelayedCall:
        """Call a function later; see ``IReactorTime.callLater``."""

    def seconds(self) -> float:
        """Return the current time; see ``IReactorTime.seconds``."""


class _Transport(Protocol):
    """The part of ``IProcessTransport`` that the runner uses."""

    pid: int | None

    def signalProcess(self, signalID: str | int) -> None:
        """Send a signal to the spawned pid only."""

    def closeStdin(self) -> None:
        """Close the child's stdin."""

    def loseConnection(self) -> None:
        """Close all our ends of the child's pipes."""


@dataclass(frozen=True)
class ProcessResult:
    """What a finished child did. Produced once the process has ended and all pipes are closed."""

    argv: tuple[str, ...]
    """The real program's argv (``executable`` followed by ``args``), not the exec helper's."""
    exit_code: int | None
    """The exit status, or None if the process was ended by a signal."""
    signal: int | None
    """The signal that ended the process, or None if it exited."""
    stdout: bytes
    """The first ``max_output`` bytes written to stdout."""
    stderr: bytes
    """The first ``max_output`` bytes written to stderr."""
    truncated: bool
    """True if either stream produced more than ``max_output`` bytes (the rest was dropped)."""
    timed_out: bool
    """True if the per-call timeout expired and the runner ended the process group."""
    cancelled: bool
    """True if :meth:`RunningProcess.stop` (or a cancel of ``done``) ended the process group."""

    @property
    def ok(self) -> bool:
        """True only for a complete, successful run: exit 0, not timed out/cancelled/truncated."""
        return (
            self.exit_code == 0 and not self.timed_out and not self.cancelled and not self.truncated
        )


class _ChildProtocol(ProcessProtocol):
    """Feeds the pipes and the end of one child into its :class:`RunningProcess`."""

    def __init__(self, owner: RunningProcess) -> None:
        self._owner = owner

    def connectionMade(self) -> None:
        """Hand the transport to the owner; nothing is ever written to the child's stdin."""
        transport = cast(_Transport, self.transport)
        transport.closeStdin()
        self._owner._connected(transport)

    def outReceived(self, data: bytes) -> None:
        """Capture stdout."""
        self._owner._received("stdout", data)

    def errReceived(self, data: bytes) -> None:
        """Capture stderr."""
        self._owner._received("stderr", data)

    def processExited(self, reason: Failure) -> None:
        """The child itself was reaped; descendants may still hold the pipes."""
        self._owner._exited()

    def processEnded(self, reason: Failure) -> None:
        """The child was reaped and every pipe is closed: the run is over."""
        self._owner._ended(reason)


class RunningProcess:
    """A handle on one child started by :meth:`ProcessRunner.start`.

    ``done`` fires with the :class:`ProcessResult` once the process has ended and all its pipes are
    closed; a non-zero exit, a signal, a timeout or a stop are all reported in the result, never as
    an errback.

    Cancelling ``done`` stops the process exactly like :meth:`stop`. Twisted's ``Deferred``
    contract, however, requires a cancelled Deferred that its canceller cannot fire at once to
    errback with ``CancelledError``, and the result only exists once the tree has ended. So a
    cancelled ``done`` fails with ``CancelledError``; the final result (``cancelled=True``) is
    still available from :meth:`when_ended` and, afterwards, :attr:`result`. Callers that want the
    result of a cancellation should call :meth:`stop` and keep waiting on ``done``.
    """

    pid: int | None
    """The spawned pid, which is also the child's process group and session id."""
    done: Deferred[ProcessResult]
    """Fires with the result when the process and all its pipes have ended."""
    argv: tuple[str, ...]
    """The real program's argv."""
    result: ProcessResult | None
    """The result once the process has ended, else None."""
    started: float | None
    """When the system says the spawned process started (epoch seconds), None if unknown."""

    def __init__(
        self,
        reactor: ProcessReactor,
        argv: tuple[str, ...],
        *,
        max_output: int,
        kill_grace: float,
        on_output: Callable[[str, bytes], None] | None,
        on_ended: Callable[[RunningProcess], None],
        log: Logger,
    ) -> None:
        """Prepare the handle; :class:`ProcessRunner` creates it and spawns the process."""
        self._reactor = reactor
        self.argv = argv
        self.pid = None
        self.result = None
        self.started = None
        self.done = Deferred(self._cancel_done)
        self._max_output = max_output
        self._kill_grace = kill_grace
        self._on_output = on_output
        self._on_ended = on_ended
        self._log = log
        self._transport: _Transport | None = None
        self._buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._truncated = False
        self._timed_out = False
        self._cancelled = False
        self._exited_flag = False
        self._stopping = False
        self._killed = False
        self._timeout_call: DelayedCall | None = None
        self._escalation_call: DelayedCall | None = None
        self._ended_observer: OneShotObserver[ProcessResult] = OneShotObserver()
        self._started_at = reactor.seconds()

    # -- public API -------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel the run: ``SIGTERM`` to the process group, ``SIGKILL`` after the grace period.

        The result then has ``cancelled=True``. Does nothing if the process has already ended;
        calling it again, or after a timeout began ending the group, does not restart the grace
        period.
        """
        if self.result is not None:
            return
        self._cancelled = True
        self._log.debug("stopping pid {pid}: {argv!r}", pid=self.pid, argv=self.argv)
        self._terminate()

    def when_ended(self) -> Deferred[ProcessResult]:
        """Return a new Deferred that fires with the result when the process has ended.

        Unlike ``done``, cancelling it only stops this wait (with ``CancelledError``), not the
        process.
        """
        return self._ended_observer.when_fired()

    # -- set-up by ProcessRunner --------------------------------------------------------------

    def _arm_timeout(self, timeout: float | None) -> None:
        if timeout is not None and self.result is None:
            self._timeout_call = self._reactor.callLater(timeout, self._on_timeout)

    # -- called by _ChildProtocol -------------------------------------------------------------

    def _connected(self, transport: _Transport) -> None:
        self._transport = transport
        self.pid = transport.pid
        if self.pid is not None:
            self.started = start_time(self.pid)

    def _received(self, stream: str, data: bytes) -> None:
        buffer = self._buffers[stream]
        room = self._max_output - len(buffer)
        if room > 0:
            buffer += data[:room]
        if len(data) > room:
            self._truncated = True
        if self._on_output is not None:
            try:
                self._on_output(stream, data)
            except Exception:
                self._log.failure(
                    "on_output callback failed for pid {pid}; it will not be called again",
                    pid=self.pid,
                )
                self._on_output = None

    def _exited(self) -> None:
        self._exited_flag = True

    def _ended(self, reason: Failure) -> None:
        if self._stopping and not self._killed:
            # Last moment at which the group id cannot have been reused: sweep any descendant
            # that closed its pipes but ignored SIGTERM.
            self._signal_group(SIGKILL)
        for call in (self._timeout_call, self._escalation_call):
            if call is not None and call.active():
                call.cancel()
        self._timeout_call = self._escalation_call = None

        exit_code: int | None = None
        signal: int | None = None
        if isinstance(reason.value, ProcessTerminated | ProcessDone):
            exit_code = reason.value.exitCode
            signal = reason.value.signal
        else:  # pragma: no cover - Twisted only reports those two
            self._log.error(
                "unexpected end reason for pid {pid}: {reason!r}", pid=self.pid, reason=reason
            )
        result = ProcessResult(
            argv=self.argv,
            exit_code=exit_code,
            signal=signal,
            stdout=bytes(self._buffers["stdout"]),
            stderr=bytes(self._buffers["stderr"]),
            truncated=self._truncated,
            timed_out=self._timed_out,
            cancelled=self._cancelled,
        )
        self.result = result
        self._buffers = {"stdout": bytearray(), "stderr": bytearray()}
        self._log_end(result)
        self._on_ended(self)

        if not self.done.called:  # it may have been cancelled (CancelledError) already
            self.done.callback(result)
        self._ended_observer.fire(result)

    # -- internals ----------------------------------------------------------------------------

    def _cancel_done(self, _: Deferred[ProcessResult]) -> None:
        self.stop()

    def _on_timeout(self) -> None:
        self._timeout_call = None
        self._timed_out = True
        self._log.warn(
            "pid {pid} timed out; ending its process group: {argv!r}", pid=self.pid, argv=self.argv
        )
        self._terminate()

    def _terminate(self) -> None:
        if self._stopping or self.result is not None:
            return
        self._stopping = True
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self._signal_group(SIGTERM)
        self._escalation_call = self._reactor.callLater(self._kill_grace, self._escalate)

    def _escalate(self) -> None:
        self._escalation_call = None
        self._killed = True
        self._log.warn(
            "pid {pid} still running {grace}s after SIGTERM; sending SIGKILL to its group",
            pid=self.pid,
            grace=self._kill_grace,
        )
        self._signal_group(SIGKILL)
        self._escalation_call = self._reactor.callLater(self._kill_grace, self._abandon_pipes)

    def _abandon_pipes(self) -> None:
        self._escalation_call = None
        self._log.warn(
            "pipes of pid {pid} still open {grace}s after SIGKILL (a descendant left the "
            "process group); closing them",
            pid=self.pid,
            grace=self._kill_grace,
        )
        if self._transport is not None:
            self._transport.loseConnection()

    def _signal_group(self, sig: Signals) -> None:
        pid = self.pid
        if pid is None or self._transport is None:
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            # No such group: either everything in it is gone, or the helper has not run setsid
            # yet. In the second case the child has not been reaped, so signal the pid alone.
            if not self._exited_flag:
                self._signal_pid(sig)
        except PermissionError:
            self._signal_pid(sig)

    def _signal_pid(self, sig: Signals) -> None:
        if self._transport is not None:
            with suppress(ProcessExitedAlready, ProcessLookupError):
                self._transport.signalProcess(int(sig))

    def _log_end(self, result: ProcessResult) -> None:
        elapsed = self._reactor.seconds() - self._started_at
        if result.exit_code == 0:
            self._log.debug(
                "pid {pid} exited 0 after {elapsed:.3f}s (truncated={truncated})",
                pid=self.pid,
                elapsed=elapsed,
                truncated=result.truncated,
            )
        else:
            self._log.info(
                "pid {pid} ended after {elapsed:.3f}s with exit code {exit_code}, signal {signal}"
                " (timed_out={timed_out}, cancelled={cancelled}): {argv!r}",
                pid=self.pid,
                elapsed=elapsed,
                exit_code=result.exit_code,
                signal=result.signal,
                timed_out=result.timed_out,
                cancelled=result.cancelled,
                argv=result.argv,
            )


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"{what} contains a NUL character")
    return value


def _check_seconds(value: float, what: str, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of seconds")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{what} must be a finite number of seconds > 0")
    return float(value)


class ProcessRunner:
    """Starts child processes safely on an injected reactor and tracks the ones still running.

    :param reactor: provides ``IReactorProcess`` and ``IReactorTime``.
    :param env: extra environment variables added to (and overriding) :data:`DEFAULT_ENV`.
        Nothing from the daemon's own environment ever reaches a child.
    :param path: the children's working directory (absolute).
    :param max_output: how many bytes to keep per stream; the rest is dropped and the result is
        marked ``truncated``.
    :param kill_grace: seconds between ``SIGTERM`` and ``SIGKILL`` when a child is ended.
    """

    log = Logger()

    spawned: int
    """How many processes this runner has ever started."""

    def __init__(
        self,
        reactor: ProcessReactor,
        *,
        env: Mapping[str, str] | None = None,
        path: str = "/",
        max_output: int = DEFAULT_MAX_OUTPUT,
        kill_grace: float = 5.0,
    ) -> None:
        """Validate the configuration; raises ValueError on a bad value."""
        environment = dict(DEFAULT_ENV)
        for key, value in (env or {}).items():
            _check_str(key, "environment variable name")
            _check_str(value, f"environment variable {key!r}")
            if not key or "=" in key:
                raise ValueError(f"invalid environment variable name {key!r}")
            environment[key] = value
        _check_str(path, "path")
        if not os.path.isabs(path):
            raise ValueError(f"path must be absolute: {path!r}")
        if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 0:
            raise ValueError("max_output must be an int >= 0")
        python = sys.executable
        if not python or not os.path.isabs(python):
            raise ValueError("sys.executable is not an absolute path; cannot start the helper")
        self._reactor = reactor
        self._env = environment
        self._path = path
        self._max_output = max_output
        self._kill_grace = _check_seconds(kill_grace, "kill_grace", allow_zero=True)
        self._python = python
        self._children: set[RunningProcess] = set()
        self.spawned = 0

    @property
    def running(self) -> int:
        """How many children have been started and have not ended yet (pipes included)."""
        return len(self._children)

    def start(
        self,
        executable: str,
        args: Sequence[str],
        *,
        timeout: float | None = None,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> RunningProcess:
        """Start ``executable`` with ``args`` and return a handle on it.

        The child's argv is ``[executable, *args]``: ``args`` does *not* repeat the program name
        (as with ``twisted.internet.utils.getProcessOutput``, unlike ``spawnProcess``).

        :param executable: absolute path of the program; there is no PATH look-up.
        :param args: the arguments, each a ``str`` without NUL.
        :param timeout: seconds after which the process group is ended (``timed_out=True``), or
            None for no limit.
        :param on_output: called with ``("stdout" | "stderr", chunk)`` for every chunk as it
            arrives, including chunks past the capture cap. If it raises, the error is logged and
            it is not called again.
        :raises ValueError: for a relative executable, a non-``str`` or NUL-containing argument,
            or a bad timeout; nothing is spawned then.
        :raises OSError: if the operating system refuses to start the helper.
        """
        argv = self._check_argv(executable, args)
        if timeout is not None:
            timeout = _check_seconds(timeout, "timeout", allow_zero=False)
        child = RunningProcess(
            self._reactor,
            argv,
            max_output=self._max_output,
            kill_grace=self._kill_grace,
            on_output=on_output,
            on_ended=self._children.discard,
            log=self.log,
        )
        if self._spawn_directly(child, executable, argv):
            self.spawned += 1
            return self._started(child, timeout)
        helper_argv = [
            self._python,
            *("-I", "-S", "-c", _EXEC_HELPER),
            self._path,
            executable,
            *argv,
        ]
        # path=None: the helper changes directory itself. With any other path than the daemon's
        # own cwd, Twisted forks the Python process and runs Python code in the child until exec,
        # with the daemon's Python signal handlers still installed: a SIGTERM sent in that window
        # is swallowed. With path=None it uses posix_spawnp, which has no such window.
        self._reactor.spawnProcess(
            _ChildProtocol(child),
            self._python,
            helper_argv,
            env=dict(self._env),
            path=None,
        )
        self.spawned += 1
        return self._started(child, timeout)

    def _started(self, child: RunningProcess, timeout: float | None) -> RunningProcess:
        if child.result is None:
            self._children.add(child)
        self.log.debug("spawned pid {pid}: {argv!r}", pid=child.pid, argv=child.argv)
        child._arm_timeout(timeout)
        return child

    def _spawn_directly(self, child: RunningProcess, executable: str, argv: Sequence[str]) -> bool:
        """Start the program itself in a new session, without the exec helper's Python start.

        Possible when the reactor is Twisted's POSIX reactor and the children's working
        directory is the daemon's own (``posix_spawn`` has no portable ``chdir``). If the
        system refuses (no such program, not executable), nothing ran: return False and the
        helper starts it, so that the failure is the helper's usual exit 127 or 126.
        """
        if not isinstance(self._reactor, PosixReactorBase) or not _is_cwd(self._path):
            return False
        try:
            _SessionProcess(
                self._reactor, executable, list(argv), dict(self._env), None, _ChildProtocol(child)
            )
        except OSError:
            return False
        return True

    def run(
        self, executable: str, args: Sequence[str], *, timeout: float | None = None
    ) -> Deferred[ProcessResult]:
        """Start a process and return its ``done`` Deferred (see :meth:`start`)."""
        return self.start(executable, args, timeout=timeout).done

    def stop_all(self) -> Deferred[None]:
        """Stop every running child; the Deferred fires once all of them have ended."""
        children = list(self._children)
        waits = [child.when_ended() for child in children]
        for child in children:
            child.stop()
        return gatherResults(waits).addCallback(lambda _: None)

    @staticmethod
    def _check_argv(executable: object, args: object) -> tuple[str, ...]:
        executable = _check_str(executable, "executable")
        if not os.path.isabs(executable):
            raise ValueError(f"executable must be an absolute path: {executable!r}")
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise ValueError("args must be a sequence of str")
        checked = [_check_str(arg, f"argument {index}") for index, arg in enumerate(args)]
        return (executable, *checked)


def _is_cwd(path: str) -> bool:
    try:
        return os.path.samefile(path, ".")
    except OSError:
        return False


class _SessionProcess(twisted_process.Process):
    """Twisted's process transport, started with ``posix_spawn`` in a session of its own.

    Twisted's own ``posix_spawnp`` path sets up the descriptors and resets the ignored signals
    but cannot start a new session; this does the same with ``setsid=True``. Only used with
    ``path=None``, no uid or gid (what :class:`ProcessRunner` passes).
    """

    def _trySpawnInsteadOfFork(  # noqa: PLR0917 (Twisted's signature)
        self,
        path: str | None,
        uid: int | None,
        gid: int | None,
        executable: str,
        args: list[str],
        environment: dict[str, str],
        kwargs: dict[str, Any],
    ) -> bool:
        if path is not None or uid is not None or gid is not None:
            return False
        state: list[tuple[int, bool]] = []
        for fd in twisted_process._listOpenFDs():
            try:
                state.append((fd, bool(fcntl.fcntl(fd, fcntl.F_GETFD, fcntl.FD_CLOEXEC))))
            except OSError:
                continue
        ignored = [
            number for number in range(1, signal.NSIG) if signal.getsignal(number) == signal.SIG_IGN
        ]
        self.pid = os.posix_spawn(
            executable,
            args,
            environment,
            file_actions=twisted_process._getFileActions(
                state,
                kwargs["fdmap"],
                doClose=twisted_process._PS_CLOSE,
                doDup2=twisted_process._PS_DUP2,
            ),
            setsigdef=ignored,
            setsid=True,
        )
        self.status = -1
        return True


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds, as the system reports it), None if gone.

    One read of the process table entry (``/proc/<pid>/stat`` or ``sysctl``): cheap enough for
    the reactor thread.
    """
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def _group_members(group: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == group:
                members.append(process)
    return members


def _names(process: psutil.Process, marker: str) -> bool:
    try:
        return any(marker in argument for argument in process.cmdline())
    except (psutil.Error, OSError):
        return False


def _running(process: psutil.Process) -> bool:
    """Whether ``process`` still runs: a zombie has ended, whenever its parent reaps it."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, OSError):
        return False


def _wait_gone(members: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds for ``members`` to end; return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        members = [p for p in members if _running(p)]
        if not members or time.monotonic() >= deadline:
            return members
        time.sleep(0.02)


def end_left_over_group(
    group: int, started: float | None, marker: str, *, grace: float = 5.0
) -> list[int]:
    """End process group ``group`` if it still looks like the one a previous daemon started.

    It does when the group exists, its leader (if it is still alive) started at ``started``
    (give or take :data:`START_TIME_TOLERANCE`; not checked when ``started`` is None) and
    at least one member's command line contains ``marker`` (the task's ISO name). Then the
    group gets ``SIGTERM``, and ``SIGKILL`` if members remain ``grace`` seconds later.

    Returns the pids that were ended; an empty list when there was nothing of ours to end.
    This blocks (it scans the process table and waits): run it in a thread.
    """
    members = _group_members(group)
    if not members:
        return []
    leader = next((p for p in members if p.pid == group), None)
    if leader is not None and started is not None:
        leader_started = start_time(group)
        if leader_started is None or abs(leader_started - started) > START_TIME_TOLERANCE:
            ProcessRunner.log.warn(
                "Process group {group} is not the one a previous daemon started (it started "
                "at another time); left alone",
                group=group,
            )
            return []
    if not any(_names(p, marker) for p in members):
        ProcessRunner.log.warn(
            "Process group {group} does not run a command naming {marker}; left alone",
            group=group,
            marker=marker,
        )
        return []
    pids = sorted(p.pid for p in members)
    for sig in (SIGTERM, SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        members = _wait_gone(members, grace)
        if not members:
            break
    ProcessRunner.log.info(
        "Ended process group {group} ({pids}), left running by a previous daemon for {marker}",
        group=group,
        pids=", ".join(map(str, pids)),
        marker=marker,
    )
    return pids
