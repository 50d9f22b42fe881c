"""Tests of sysadmd.auth._pam: system accounts through PAM.

The first group of tests replaces ``pam.PamAuthenticator`` by a fake and runs anywhere. The
second group talks to the real PAM ``login`` service; it needs root (CI runs as root) and is
skipped otherwise. It creates throwaway accounts with ``useradd``/``chpasswd`` (and the
``wheel``/``operator`` groups if they are missing) and removes all of it afterwards. Test runs
on the same host take turns through a lock file: otherwise one run's teardown deletes the
``wheel`` group that another run's users are in (seen as a flaky failure here).

What PAM on the Debian 12 test machine needs to know (``/etc/pam.d/login``):

* The stack is ``pam_faildelay delay=3000000``, ``pam_nologin``, then ``common-auth``
  (``pam_unix nullok``) and ``common-account`` (``pam_unix``). Running as root, pam_unix
  reads ``/etc/shadow`` itself (nothing to configure). Not as root, it can only check the
  calling user's own password (through ``unix_chkpwd``), so the daemon must run as root.
* ``pam_faildelay`` makes **every failed authentication take about 3 s** (libpam randomises
  it; 2.2 to 3.0 s measured) in the thread that asked, while a success takes ~30 ms. So the real
  PAM test runs all its failing checks concurrently and takes one delay, not one per case.
  It also shows why PamChecker authenticates users without a permitted role with a decoy
  password: a right password of such a user would otherwise come back 3 s sooner than a
  wrong one.
* ``pam_nologin`` fails every non-root login while ``/etc/nologin`` or ``/run/nologin``
  exists (systemd creates the latter while booting); the real tests skip then.
* python-pam calls ``pam_setcred`` after a success unless ``resetcreds=False``; in this
  stack that reaches ``pam_group`` and ``pam_cap``, which act on the calling process (the
  daemon). PamChecker always passes ``resetcreds=False``.
* An unknown user gets ``PAM_AUTH_ERR`` (7), the same code as a wrong password.
* ``nullok``: an account whose password field is empty (``passwd --delete``) authenticates
  with *any* password, in ~2 ms and without PAM ever asking for it. PamChecker refuses a
  success that came without a password prompt; the real test has such a ``wheel`` member.
"""

from __future__ import annotations

import fcntl
import grp
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pam  # type: ignore[import-untyped]
import pytest
from support import async_test
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults

from sysadmd.api import Role
from sysadmd.auth._pam import Authenticator, PamChecker, system_role

WAIT_LIMIT = 5.0


@dataclass
class Call:
    """One call of a fake authenticator."""

    username: str
    password: str
    service: str
    resetcreds: bool


class FakePam:
    """Stands in for python-pam: accepts the pairs in ``valid`` and records every call."""

    def __init__(self, valid: dict[str, str] | None = None, code: int = pam.PAM_AUTH_ERR) -> None:
        self.valid = valid or {}
        self.failure_code = code
        self.calls: list[Call] = []
        self.gate: threading.Event | None = None
        self.error: Exception | None = None
        # Users PAM lets in without asking for a password (nullok and an empty one).
        self.passwordless: set[str] = set()

    def __call__(self) -> Authenticator:
        """A new authenticator object, as PamChecker makes for every check."""
        fake = self

        class One:
            code = 0
            reason: object = None

            def __init__(self) -> None:
                self.messages: list[str] = []

            def authenticate(
                self, username: str, password: str, service: str, *, resetcreds: bool
            ) -> bool:
                fake.calls.append(Call(username, password, service, resetcreds))
                if username in fake.passwordless:
                    return True
                self.messages.append("Password: ")
                if fake.gate is not None:
                    fake.gate.wait(WAIT_LIMIT)
                if fake.error is not None:
                    raise fake.error
                if fake.valid.get(username) == password:
                    return True
                self.code = fake.failure_code
                self.reason = "Authentication failure"
                return False

        return One()


async def wait_until(condition: Callable[[], bool], limit: float = WAIT_LIMIT) -> None:
    """Let the reactor run until ``condition()`` holds or ``limit`` seconds have passed."""
    from twisted.internet import reactor  # noqa: PLC0415 - installed by pytest-twisted

    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        await task.deferLater(reactor, 0.01)


# -- with a fake PAM ----------------------------------------------------------------------


def test_system_role() -> None:
    assert system_role("root") == Role.ADMIN
    assert system_role("nobody") is None
    assert system_role("no-such-user-sysadmd") is None
    assert system_role("ROOT") is None
    assert system_role("ro\0ot") is None


@async_test
async def test_root_is_admin_and_gets_the_real_password() -> None:
    fake = FakePam({"root": "root pw"})
    checker = PamChecker(service="sysadmd-test", authenticator=fake)
    assert await checker.check("root", "root pw") == Role.ADMIN
    assert await checker.check("root", "wrong") is None
    assert fake.calls == [
        Call("root", "root pw", "sysadmd-test", resetcreds=False),
        Call("root", "wrong", "sysadmd-test", resetcreds=False),
    ]


@async_test
async def test_users_without_a_role_are_authenticated_with_a_decoy() -> None:
    # The fake would accept these passwords; PamChecker must not let it.
    fake = FakePam({"nobody": "nobody pw", "no-such-user-sysadmd": "pw"})
    checker = PamChecker(authenticator=fake)
    assert await checker.check("nobody", "nobody pw") is None
    assert await checker.check("no-such-user-sysadmd", "pw") is None
    assert await checker.check("nobody", "pässwörd") is None
    assert [(c.username, c.service, c.resetcreds) for c in fake.calls] == [
        ("nobody", "sysadmd", False),
        ("no-such-user-sysadmd", "sysadmd", False),
        ("nobody", "sysadmd", False),
    ]
    decoys = [c.password for c in fake.calls]
    assert decoys[0] != "nobody pw"
    assert decoys[1] != "pw"
    assert [len(d.encode()) for d in decoys] == [9, 2, len("pässwörd".encode())]


@async_test
async def test_impossible_input_is_refused_without_pam() -> None:
    fake = FakePam({"root": "root pw"})
    checker = PamChecker(authenticator=fake)
    for username, password in [
        ("root", ""),
        ("root", "x" * 1025),
        ("root", "root\0pw"),
        ("", "root pw"),
        ("ro\0ot", "root pw"),
        ("r" * 257, "root pw"),
    ]:
        d = checker.check(username, password)
        assert d.called
        assert await d is None
    assert fake.calls == []


@async_test
async def test_a_broken_pam_is_logged_without_the_password(errors: list[str]) -> None:
    checker = PamChecker(service="sysadmd-test", authenticator=FakePam(code=pam.PAM_SERVICE_ERR))
    assert await checker.check("root", "root pw") is None
    assert len(errors) == 1
    assert "sysadmd-test" in errors[0]
    assert "root pw" not in errors[0]

    errors.clear()
    assert await PamChecker(authenticator=FakePam()).check("root", "wrong") is None
    assert errors == []


@async_test
async def test_success_without_a_password_prompt_is_refused(errors: list[str]) -> None:
    fake = FakePam()
    fake.passwordless = {"root", "nobody"}
    checker = PamChecker(authenticator=fake)
    assert await checker.check("root", "anything") is None
    assert await checker.check("nobody", "anything") is None
    # Each refusal is followed by a call that fails like a wrong password does.
    assert [c.username for c in fake.calls] == [
        "root",
        "sysadmd:no-such-user",
        "nobody",
        "sysadmd:no-such-user",
    ]
    assert len(errors) == 2
    assert "without asking for a password" in errors[0]
    assert "anything" not in errors[0]


@async_test
async def test_an_exception_in_pam_is_logged_and_refuses(errors: list[str]) -> None:
    fake = FakePam({"root": "root pw"})
    fake.error = RuntimeError("libpam exploded")
    assert await PamChecker(authenticator=fake).check("root", "root pw") is None
    assert len(errors) == 1
    assert "libpam exploded" in errors[0]
    assert "root pw" not in errors[0]


def record(into: list[Role | None]) -> Callable[[Role | None], Role | None]:
    """A callback that appends each result to ``into`` and passes it on."""

    def append(result: Role | None) -> Role | None:
        into.append(result)
        return result

    return append


@async_test
async def test_check_never_blocks_the_reactor_and_caps_concurrency() -> None:
    fake = FakePam({"root": "root pw"})
    fake.gate = threading.Event()
    checker = PamChecker(authenticator=fake, max_concurrent=2)
    fired: list[Role | None] = []
    try:
        pending = [checker.check("root", "root pw") for _ in range(3)]
        for d in pending:
            d.addCallback(record(fired))
        assert fired == []
        await wait_until(lambda: len(fake.calls) == 2)
        assert len(fake.calls) == 2
        await wait_until(lambda: False, WAIT_LIMIT / 50)  # time for a third one to arrive
        assert len(fake.calls) == 2
        assert fired == []
    finally:
        fake.gate.set()
    assert await gatherResults(pending) == [Role.ADMIN] * 3
    assert len(fake.calls) == 3


@async_test
async def test_role_of_needs_no_password_and_no_pam() -> None:
    fake = FakePam()
    checker = PamChecker(authenticator=fake)
    assert await checker.role_of("root") == Role.ADMIN
    assert await checker.role_of("nobody") is None
    assert await checker.role_of("no-such-user-sysadmd") is None
    assert await checker.role_of("") is None
    assert fake.calls == []


def test_invalid_constructor_arguments() -> None:
    with pytest.raises(TypeError):
        PamChecker(object())
    with pytest.raises(ValueError, match="max_concurrent"):
        PamChecker(max_concurrent=0)
    with pytest.raises(ValueError, match="service"):
        PamChecker(service="../etc/passwd")


# -- with the real PAM login service ------------------------------------------------------

USERADD = "/usr/sbin/useradd"
USERDEL = "/usr/sbin/userdel"
GROUPADD = "/usr/sbin/groupadd"
GROUPDEL = "/usr/sbin/groupdel"
CHPASSWD = "/usr/sbin/chpasswd"
PASSWD = "/usr/bin/passwd"
LOCK_FILE = "/run/lock/sysadmd-test-system-accounts.lock"


def _real_pam_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root: creates system accounts, and pam_unix reads /etc/shadow"
    if not Path("/etc/pam.d/login").exists():
        return "no PAM login service (/etc/pam.d/login)"
    for tool in (USERADD, USERDEL, GROUPADD, GROUPDEL, CHPASSWD, PASSWD):
        if not os.access(tool, os.X_OK):
            return f"{tool} is missing"
    if not Path(LOCK_FILE).parent.is_dir():
        return f"no directory for {LOCK_FILE}"
    for nologin in ("/etc/nologin", "/run/nologin", "/var/run/nologin"):
        if Path(nologin).exists():
            return f"{nologin} exists, so pam_nologin refuses every non-root login"
    return None


real_pam = pytest.mark.skipif(
    _real_pam_unavailable() is not None, reason=_real_pam_unavailable() or ""
)


def run(*argv: str, stdin: str | None = None) -> None:
    """Run an account tool, failing the test with its message if it fails."""
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"{argv[0]} failed: {result.stderr.strip()}")


@dataclass
class SystemUsers:
    """Throwaway system accounts: name → password."""

    admin: str
    operator: str
    plain: str
    passwordless: str
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def system_users() -> Iterator[SystemUsers]:
    """New accounts: in ``wheel``, in ``operator``, in neither, and in ``wheel`` without a
    password (an empty password field)."""
    reason = _real_pam_unavailable()
    if reason is not None:
        pytest.skip(reason)
    # Other test runs on this host (as root, at the same time) create and delete the same
    # groups and lock /etc/passwd: take turns, or their teardown removes our wheel group.
    lock = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    created_groups: list[str] = []
    created_users: list[str] = []
    prefix = f"sysadmdt{secrets.randbelow(10**6):06d}"
    users = SystemUsers(prefix + "w", prefix + "o", prefix + "n", prefix + "e", {})
    try:
        for group in ("wheel", "operator"):
            try:
                grp.getgrnam(group)
            except KeyError:
                run(GROUPADD, group)
                created_groups.append(group)
        accounts = (
            (users.admin, "wheel"),
            (users.operator, "operator"),
            (users.plain, ""),
            (users.passwordless, "wheel"),
        )
        for name, groups in accounts:
            argv = [USERADD, "--no-create-home", "--shell", "/usr/sbin/nologin"]
            if groups:
                argv += ["--groups", groups]
            run(*argv, name)
            created_users.append(name)
        for name in (users.admin, users.operator, users.plain):
            users.passwords[name] = secrets.token_urlsafe(12)
        run(CHPASSWD, stdin="".join(f"{n}:{p}\n" for n, p in users.passwords.items()))
        # An empty password field, which pam_unix's nullok accepts with any password.
        run(PASSWD, "--delete", users.passwordless)
        yield users
    finally:
        for name in created_users:
            subprocess.run([USERDEL, name], capture_output=True, check=False)
        for group in created_groups:
            subprocess.run([GROUPDEL, group], capture_output=True, check=False)
        os.close(lock)


def _faildelay_configured() -> bool:
    return "pam_faildelay" in Path("/etc/pam.d/login").read_text()


@real_pam
@async_test
async def test_real_system_role(system_users: SystemUsers) -> None:
    assert system_role(system_users.admin) == Role.ADMIN
    assert system_role(system_users.operator) == Role.OPERATOR
    assert system_role(system_users.plain) is None
    checker = PamChecker(service="login")
    assert await checker.role_of(system_users.admin) == Role.ADMIN
    assert await checker.role_of(system_users.operator) == Role.OPERATOR
    assert await checker.role_of(system_users.plain) is None


@real_pam
@async_test
async def test_real_pam_login_service(system_users: SystemUsers, errors: list[str]) -> None:
    users = system_users
    right = users.passwords
    cases: list[tuple[str, str, Role | None]] = [
        (users.admin, right[users.admin], Role.ADMIN),
        (users.operator, right[users.operator], Role.OPERATOR),
        # The failures, all at once: each one costs PAM's failure delay.
        (users.plain, right[users.plain], None),
        (users.admin, right[users.operator], None),
        (users.operator, "wrong", None),
        (users.admin + "x", right[users.admin], None),
        # nullok would let any password in for an empty one; PamChecker must not.
        (users.passwordless, "anything", None),
    ]
    checker = PamChecker(service="login", max_concurrent=len(cases))
    elapsed: list[float] = [0.0] * len(cases)

    def timed(index: int, d: Deferred[Role | None]) -> Deferred[Role | None]:
        started = time.monotonic()

        def stop(result: Role | None) -> Role | None:
            elapsed[index] = time.monotonic() - started
            return result

        return d.addCallback(stop)

    pending = [timed(i, checker.check(name, pw)) for i, (name, pw, _) in enumerate(cases)]
    assert await gatherResults(pending) == [expected for _, _, expected in cases]
    assert len(errors) == 1
    assert f"accepted user {users.passwordless} without asking for a password" in errors[0]
    if _faildelay_configured():
        # Successes are quick; every failure, including the right password of a user
        # outside wheel and operator, waits out pam_faildelay like a wrong password.
        # Ordered rather than timed against a bound: a busy machine slows both kinds alike,
        # but only a failure waits out the delay.
        assert max(elapsed[:2]) < min(elapsed[2:])
        assert min(elapsed[2:]) > 1.0


@real_pam
@async_test
async def test_real_pam_leaves_the_daemon_process_alone(
    system_users: SystemUsers, errors: list[str]
) -> None:
    groups, uid, gid = os.getgroups(), os.getuid(), os.getgid()
    name = system_users.admin
    role = await PamChecker(service="login").check(name, system_users.passwords[name])
    assert errors == []
    assert role == Role.ADMIN
    assert (os.getgroups(), os.getuid(), os.getgid()) == (groups, uid, gid)
