"""Nothing in the daemon depends on Linux: a scan of the package, and the simulator's FreeBSD tools.

The daemon is developed on Linux and runs on FreeBSD, which has no ``/proc`` or ``/sys`` by
default, no epoll, and tools (``zfs``, ``zpool``, ``ifconfig``) that parse their options with
``getopt(3)`` and so take no GNU-style ``--long-options``. :func:`scan_source` walks the syntax
tree of every module of the package and reports

* string constants naming Linux-only paths (``/proc``, ``/sys``, ``/run``, ``/etc/os-release``,
  ...), docstrings excepted;
* Linux-only names of the standard library (``select.epoll``, ``os.pidfd_open``,
  ``socket.SO_PEERCRED``, ...) and Linux-only modules (``twisted.internet.epollreactor``,
  ``inotify``);
* a GNU-style ``--option`` literal among the arguments of a call that starts a host tool
  (``run``, ``spawnProcess``, ...), outside the simulator, which is ours;

except inside code explicitly guarded by a platform check: an ``if`` (or conditional expression)
whose test reads ``sys.platform``, ``platform.system()`` or ``hasattr(...)``, or a ``try`` whose
handlers catch ``AttributeError`` or ``ImportError``. The scanner is tested on sources that break
each rule, so an empty report means something.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pam  # type: ignore[import-untyped]
import pytest

from sysadmd.auth._pam import PamChecker, broken_results, uses_openpam
from sysadmd.simulator import zfs, zfsops
from sysadmd.simulator.cli import main
from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.output import Output
from sysadmd.simulator.profiles import PROFILES
from sysadmd.simulator.state import Root

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = (REPO / "sysadmd", REPO / "twisted" / "plugins")

#: Path prefixes that exist on Linux only (FreeBSD: /var/run, /var/db, /usr/local/etc).
LINUX_PATHS = (
    "/proc",
    "/sys",
    "/run",
    "/dev/shm",
    "/etc/os-release",
    "/etc/default/",
    "/etc/sysconfig/",
    "/etc/systemd/",
    "/usr/lib/systemd/",
    "/lib/",
    "/lib64/",
    "/var/lib/",
    "/bin/bash",
    "/etc/pam.d/common-",
    "libc.so.6",
)

#: Standard-library names that exist on Linux only, by module.
LINUX_NAMES = {
    "select": {"epoll", "EPOLLIN", "EPOLLOUT", "EPOLLERR", "EPOLLHUP", "EPOLLET"},
    "os": {
        "pidfd_open",
        "memfd_create",
        "eventfd",
        "splice",
        "copy_file_range",
        "sched_setaffinity",
        "sched_getaffinity",
        "getxattr",
        "setxattr",
        "listxattr",
        "removexattr",
        "O_PATH",
        "O_TMPFILE",
        "EFD_CLOEXEC",
        "MFD_CLOEXEC",
    },
    "socket": {"SO_PEERCRED", "AF_NETLINK", "AF_PACKET", "SO_BINDTODEVICE", "TCP_USER_TIMEOUT"},
    "signal": {"pidfd_send_signal"},
    "resource": {"RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_SIGPENDING"},
    "time": {"CLOCK_BOOTTIME", "CLOCK_TAI"},
}

#: Modules that exist (or work) on Linux only.
LINUX_MODULES = ("twisted.internet.epollreactor", "twisted.internet.inotify", "pyinotify")

#: Calls that start a host tool; a ``--option`` among their arguments is a GNU-ism.
SPAWNING_CALLS = {"run", "_output", "spawnProcess", "getProcessOutput", "getProcessOutputAndValue"}

#: Packages of our own whose command lines are ours to define (the simulator's options).
OWN_COMMAND_LINES = ("sysadmd/simulator/",)


@dataclass(frozen=True)
class Finding:
    where: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.what}"


def _is_guard_test(test: ast.expr) -> bool:
    for node in ast.walk(test):
        if isinstance(node, ast.Attribute) and node.attr == "platform":
            return True
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id == "hasattr":
                return True
            if isinstance(function, ast.Attribute) and function.attr == "system":
                return True
    return False


def _catches_missing(handler: ast.ExceptHandler) -> bool:
    names = (
        {node.id for node in ast.walk(handler.type) if isinstance(node, ast.Name)}
        if (handler.type is not None)
        else set()
    )
    return bool(names & {"AttributeError", "ImportError", "ModuleNotFoundError"})


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of the string constants that are docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _unguarded(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` that is not inside a platform guard."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If | ast.IfExp) and _is_guard_test(node.test):
            continue
        if isinstance(node, ast.Try) and any(_catches_missing(h) for h in node.handlers):
            stack.extend(node.handlers)
            stack.extend(node.orelse)
            stack.extend(node.finalbody)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _module_of(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _path_findings(text: str) -> Iterator[str]:
    for path in LINUX_PATHS:
        if path == "libc.so.6":
            hit = path in text
        else:
            hit = text == path.rstrip("/") or text.startswith(path.rstrip("/") + "/")
        if hit:
            yield f"Linux-only path {text!r}"


def _name_findings(node: ast.AST) -> Iterator[str]:
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.attr in LINUX_NAMES.get(node.value.id, ())
    ):
        yield f"Linux-only name {node.value.id}.{node.attr}"
    if isinstance(node, ast.ImportFrom) and node.module in LINUX_NAMES:
        for alias in node.names:
            if alias.name in LINUX_NAMES[node.module]:
                yield f"Linux-only name {node.module}.{alias.name}"
    if isinstance(node, ast.Import | ast.ImportFrom):
        for module in _module_of(node):
            if module in LINUX_MODULES:
                yield f"Linux-only module {module}"


def _option_findings(node: ast.AST) -> Iterator[str]:
    if not isinstance(node, ast.Call):
        return
    function = node.func
    name = function.attr if isinstance(function, ast.Attribute) else None
    if isinstance(function, ast.Name):
        name = function.id
    if name not in SPAWNING_CALLS:
        return
    for argument in ast.walk(node):
        if (
            isinstance(argument, ast.Constant)
            and isinstance(argument.value, str)
            and argument.value.startswith("--")
        ):
            yield f"GNU-style option {argument.value!r} passed to a host tool"


def scan_source(source: str, where: str) -> list[Finding]:
    """The Linux-only uses in one module's ``source`` outside platform guards."""
    tree = ast.parse(source, filename=where)
    docstrings = _docstrings(tree)
    own_command_line = where.startswith(OWN_COMMAND_LINES)
    findings: list[Finding] = []
    for node in _unguarded(tree):
        line = getattr(node, "lineno", 0)
        whats: list[str] = list(_name_findings(node))
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            whats.extend(_path_findings(node.value))
        if not own_command_line:
            whats.extend(_option_findings(node))
        findings.extend(Finding(where, line, what) for what in whats)
    return findings


def package_modules() -> Iterator[tuple[str, str]]:
    for directory in PACKAGE_DIRS:
        for path in sorted(directory.rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), path.read_text()


# -- the scanner itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("open('/proc/self/status')", "Linux-only path '/proc/self/status'"),
        ("PATH = '/sys/class/net'", "Linux-only path '/sys/class/net'"),
        ("PID = '/run/sysadmd.pid'", "Linux-only path '/run/sysadmd.pid'"),
        ("import ctypes\nctypes.CDLL('libc.so.6')", "Linux-only path 'libc.so.6'"),
        ("import select\npoller = select.epoll()", "Linux-only name select.epoll"),
        ("import os\nfd = os.pidfd_open(1)", "Linux-only name os.pidfd_open"),
        ("from socket import SO_PEERCRED", "Linux-only name socket.SO_PEERCRED"),
        ("from twisted.internet import epollreactor", "twisted.internet.epollreactor"),
        ("runner.run('/sbin/zfs', ('list', '--recursive'))", "GNU-style option '--recursive'"),
        ("reactor.spawnProcess(p, 'ifconfig', ['ifconfig', '--all'])", "GNU-style option"),
    ],
)
def test_scanner_reports_linux_only_code(source: str, expected: str) -> None:
    findings = scan_source(source, "sysadmd/example.py")
    assert len(findings) == 1, findings
    assert expected in findings[0].what


@pytest.mark.parametrize(
    "source",
    [
        '"""Reads /proc on Linux only (a docstring)."""',
        "import sys\nif sys.platform.startswith('linux'):\n    open('/proc/self/status')",
        "import os, select\nif hasattr(select, 'epoll'):\n    poller = select.epoll()",
        "import platform\nx = open('/proc/x') if platform.system() == 'Linux' else None",
        "try:\n    import select\n    select.epoll()\nexcept AttributeError:\n    pass",
        "open('/var/run/sysadmd.pid')",
        "runner.run('/sbin/zpool', ('list', '-H', '-o', 'name'))",
        "command = [sys.executable, '-m', 'sysadmd.simulator', '--root', root]",
    ],
)
def test_scanner_accepts_guarded_and_portable_code(source: str) -> None:
    assert scan_source(source, "sysadmd/example.py") == []


def test_scanner_leaves_the_simulators_own_options_alone() -> None:
    source = "execute(['--root', root, 'list'])\nrun(ctx, ['--root', root])"
    assert scan_source(source, "sysadmd/simulator/cli.py") == []
    assert scan_source(source, "sysadmd/services/_host.py") != []


# -- the package ----------------------------------------------------------------------------------


def test_the_package_has_no_linux_only_code() -> None:
    modules = list(package_modules())
    assert len(modules) > 50
    findings = [finding for where, text in modules for finding in scan_source(text, where)]
    assert findings == [], "\n".join(map(str, findings))


# -- the simulator's FreeBSD tools refuse GNU-style options ---------------------------------------


@pytest.mark.parametrize(
    ("argv", "optstring", "refused"),
    [
        (["--help"], ":d:o:s:rt:Hp", "-"),
        (["-r", "--recursive", "tank"], "vpndfrR", "-"),
        (["-x", "tank"], "vpndfrR", "x"),
        (["-o", "--value", "--all"], ":d:o:s:rt:Hp", "-"),  # --value is -o's value
        (["-o--value", "--all"], ":d:o:s:rt:Hp", "-"),
        (["-Hp", "name"], ":d:o:s:rt:Hp", None),
        (["-o", "--value", "name"], ":d:o:s:rt:Hp", None),
        (["tank", "--recursive"], "vpndfrR", None),  # getopt stops at the first operand
        (["--", "--recursive"], "vpndfrR", None),
        (["-", "--recursive"], "vpndfrR", None),
        (["-:"], ":d:o:", ":"),
        ([], "rS", None),
    ],
)
def test_getopt_refusals(argv: list[str], optstring: str, refused: str | None) -> None:
    assert zfs.unknown_option(argv, optstring) == refused


class Sim:
    """``iohyve-sim --root <tmp>`` run in-process; a call returns (status, stdout, stderr)."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.capsys = capsys

    def __call__(self, *words: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main(["--root", str(self.root), *words])
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    return Sim(tmp_path, capsys)


ZPOOL_LIST_USAGE = (
    "usage:\n\tlist [-Hpv] [-o property[,...]] [-T d|u] [pool] ... [interval [count]]\n"
)
IFCONFIG_USAGE = (
    "usage: ifconfig [-j jail] [-f type:format] interface address_family\n"
    "                [address [dest_address]] [parameters]\n"
)


@pytest.mark.parametrize("option", ["--help", "--no-headings", "--output=name"])
def test_zpool_refuses_long_options(sim: Sim, option: str) -> None:
    assert sim("zpool", "list", option) == (2, "", "invalid option '-'\n" + ZPOOL_LIST_USAGE)
    assert sim("zpool", "list", "-H", option) == (2, "", "invalid option '-'\n" + ZPOOL_LIST_USAGE)


@pytest.mark.parametrize(
    "argv", [["--help"], ["--list"], ["-l", "--all"], ["--all", "em0"], ["-a", "--verbose"]]
)
def test_ifconfig_refuses_long_options(sim: Sim, argv: list[str]) -> None:
    assert sim("ifconfig", *argv) == (1, "", "ifconfig: illegal option -- -\n" + IFCONFIG_USAGE)


def test_ifconfig_options_freebsd_has_but_the_simulator_lacks(sim: Sim) -> None:
    status, out, err = sim("ifconfig", "-u")
    assert (status, out) == (SIMULATOR_ERROR, "")
    assert "not provided by the simulator" in err
    # Operands stay operands: a word after the interface is no option.
    assert sim("ifconfig", "em0")[0] == 0


@pytest.mark.parametrize(
    ("operation", "argv", "problem"),
    [
        (zfsops.destroy, ["--recursive", "tank/iohyve/web/disk0"], "invalid option '-'"),
        (zfsops.destroy, ["-x", "tank/iohyve/web/disk0"], "invalid option 'x'"),
        (zfsops.get_values, ["--all", "tank/iohyve/web"], "invalid option '-'"),
        (zfsops.inherit_recursive, ["--recursive", "iohyve:x", "tank"], "invalid option '-'"),
    ],
)
def test_zfs_refuses_long_options(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    operation: object,
    argv: list[str],
    problem: str,
) -> None:
    ctx = Context(PROFILES["0.7.9"], Root(str(tmp_path)), "tank", Output())
    assert callable(operation)
    with ctx.root.locked() as store:
        status = operation(ctx, store, argv)
        assert not store.dirty
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith(f"{problem}\nusage:\n")


def test_zfs_options_the_simulator_does_not_reproduce(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = Context(PROFILES["0.7.9"], Root(str(tmp_path)), "tank", Output())
    with ctx.root.locked() as store:
        assert zfsops.destroy(ctx, store, ["-r", "tank/iohyve/web"]) == SIMULATOR_ERROR
    assert "not provided by the simulator" in capsys.readouterr().err


# -- PAM on FreeBSD (OpenPAM) ---------------------------------------------------------------------

PAM_POLICY = REPO / "conf" / "pam.d" / "sysadmd"

#: The functions OpenPAM's libpam provides (the XSSO API and OpenPAM's own pam_* additions).
OPENPAM_FUNCTIONS = {
    "pam_acct_mgmt",
    "pam_authenticate",
    "pam_chauthtok",
    "pam_close_session",
    "pam_end",
    "pam_get_data",
    "pam_get_item",
    "pam_get_user",
    "pam_getenv",
    "pam_getenvlist",
    "pam_open_session",
    "pam_putenv",
    "pam_set_data",
    "pam_set_item",
    "pam_setcred",
    "pam_start",
    "pam_strerror",
    "pam_error",
    "pam_get_authtok",
    "pam_info",
    "pam_prompt",
    "pam_setenv",
    "pam_verror",
    "pam_vinfo",
    "pam_vprompt",
}


class RecordingPam:
    """Stands in for python-pam: refuses every password with ``code`` after one prompt."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.reason: object = "refused"
        self.messages: list[str] = []
        self.services: list[str] = []

    def authenticate(self, username: str, password: str, service: str, *, resetcreds: bool) -> bool:
        self.services.append(service)
        self.messages.append("Password:")
        return False


def test_the_pam_service_is_sysadmd() -> None:
    fake = RecordingPam(9)
    checker = PamChecker(authenticator=lambda: fake)
    assert checker.service == "sysadmd"
    assert checker._check_blocking("root", "wrong").verified is None
    assert fake.services == ["sysadmd"]


@pytest.mark.parametrize(
    ("platform", "openpam"),
    [
        ("freebsd14", True),
        ("freebsd15", True),
        ("darwin", True),
        ("netbsd10", True),
        ("linux", False),
        ("cygwin", False),
    ],
)
def test_openpam_platforms(platform: str, openpam: bool) -> None:
    assert uses_openpam(platform) is openpam


@pytest.mark.parametrize(
    ("openpam", "code", "broken"),
    [
        # OpenPAM (pam_constants.h): 9 is PAM_AUTH_ERR, a wrong password; 13 an unknown user;
        # 6 is PAM_CONV_ERR and 12 PAM_AUTHINFO_UNAVAIL, both a broken PAM.
        (True, 9, False),
        (True, 13, False),
        (True, 7, False),
        (True, 6, True),
        (True, 12, True),
        (True, 3, True),
        # Linux-PAM: 7 is PAM_AUTH_ERR, 10 PAM_USER_UNKNOWN; 9 is PAM_AUTHINFO_UNAVAIL and
        # 19 PAM_CONV_ERR.
        (False, 7, False),
        (False, 10, False),
        (False, 9, True),
        (False, 19, True),
    ],
)
def test_pam_results_are_read_in_the_platforms_numbering(
    openpam: bool, code: int, broken: bool
) -> None:
    checker = PamChecker(authenticator=lambda: RecordingPam(code), openpam=openpam)
    outcome = checker._check_blocking("root", "wrong")
    assert outcome.verified is None
    assert (outcome.problem is not None) is broken
    if broken:
        assert "wrong" not in (outcome.problem or "")


def test_broken_results_tables() -> None:
    assert broken_results(openpam=False) == {
        pam.PAM_OPEN_ERR,
        pam.PAM_SYMBOL_ERR,
        pam.PAM_SERVICE_ERR,
        pam.PAM_SYSTEM_ERR,
        pam.PAM_BUF_ERR,
        pam.PAM_CONV_ERR,
        pam.PAM_AUTHINFO_UNAVAIL,
        pam.PAM_ABORT,
        pam.PAM_MODULE_UNKNOWN,
    }
    assert broken_results(openpam=True) == {1, 2, 3, 4, 5, 6, 12, 26, 28}


def test_the_pam_binding_calls_only_what_openpam_has() -> None:
    """python-pam's ctypes calls: each ``libpam.<name>`` it binds exists in OpenPAM, and the
    values it passes that OpenPAM reads the same way agree with OpenPAM's constants."""
    source = Path(inspect.getfile(pam.PamAuthenticator)).read_text()
    bound = set(re.findall(r"\blibpam\.(pam_\w+)", source))
    assert {"pam_start", "pam_authenticate", "pam_acct_mgmt", "pam_end"} <= bound
    assert bound <= OPENPAM_FUNCTIONS
    # Linux-PAM's libpam_misc (absent on FreeBSD) is bound only when the library was found.
    assert "if getattr(libpam_misc, '_name', None)" in source
    # Same numbers in both: success, the message styles the conversation reads, PAM_TTY.
    assert (pam.PAM_SUCCESS, pam.PAM_PROMPT_ECHO_OFF, pam.PAM_PROMPT_ECHO_ON) == (0, 1, 2)
    assert (pam.PAM_ERROR_MSG, pam.PAM_TEXT_INFO, pam.PAM_TTY) == (3, 4, 3)


def pam_policy() -> list[list[str]]:
    lines = [line.split("#", 1)[0].split() for line in PAM_POLICY.read_text().splitlines()]
    return [fields for fields in lines if fields]


def test_the_shipped_pam_policy() -> None:
    """conf/pam.d/sysadmd: pam.conf(5) per-service lines of FreeBSD base modules, no nullok."""
    entries = pam_policy()
    facilities = set()
    for fields in entries:
        facility, control, module, *options = fields
        assert facility in {"auth", "account", "session", "password"}, fields
        assert control in {"required", "requisite", "sufficient", "binding", "optional"}
        assert module in {
            "pam_unix.so",
            "pam_nologin.so",
            "pam_login_access.so",
            "pam_deny.so",
            "pam_permit.so",
        }, fields
        assert "nullok" not in options
        facilities.add(facility)
    assert facilities == {"auth", "account", "session", "password"}
    auth = [fields for fields in entries if fields[0] == "auth"]
    assert auth == [["auth", "required", "pam_unix.so", "no_warn", "try_first_pass"]]
    account = [fields[2] for fields in entries if fields[0] == "account"]
    assert account[-1] == "pam_unix.so"
