"""Tests of ``sysadmd-admin`` (sysadmd.auth.admin), called through ``main([...])``.

Standard input is replaced by a ``StringIO`` (not a terminal: the password is its first
line) or by one that claims to be a terminal, with ``getpass.getpass`` replaced too. The CLI
hashes with argon2's default parameters, so each added password costs ~50-100 ms.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import argon2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support import async_test

from sysadmd.api import Role
from sysadmd.auth import KEYS_FILE, KeyStore
from sysadmd.auth._accounts import ACCOUNTS_FILE, LocalAccounts
from sysadmd.auth.admin import DEFAULT_STATE_DIR, build_parser, main


@dataclass
class Result:
    """What one run of the CLI did."""

    code: int
    out: str
    err: str


class Terminal(io.StringIO):
    """Standard input that claims to be a terminal."""

    def isatty(self) -> bool:
        """Always a terminal."""
        return True


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The state directory handed to --state-dir (it does not exist yet)."""
    return tmp_path / "state"


class Cli:
    """Runs ``main`` with a state directory and a given standard input."""

    def __init__(
        self, state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.state = state
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    def __call__(self, *argv: str, stdin: io.StringIO | None = None) -> Result:
        """Run ``sysadmd-admin --state-dir STATE ARGV...``."""
        self.monkeypatch.setattr(sys, "stdin", stdin if stdin is not None else io.StringIO(""))
        self.capsys.readouterr()
        code = main(["--state-dir", str(self.state), *argv])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def hashes(self) -> dict[str, str]:
        """The stored hash of every user."""
        users = json.loads((self.state / ACCOUNTS_FILE).read_text())["users"]
        return {name: entry["hash"] for name, entry in users.items()}


@pytest.fixture
def cli(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """The CLI on a fresh state directory; the usual config files are looked for in tmp_path."""
    monkeypatch.setattr(
        "sysadmd.auth.admin.CONFIG_FILES", (tmp_path / "usr-local-etc.toml", tmp_path / "etc.toml")
    )
    return Cli(state, monkeypatch, capsys)


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Answers for ``getpass.getpass``, taken in order; the prompts shown are recorded."""
    answers: list[str] = []
    shown: list[str] = []

    def fake_getpass(prompt: str = "Password: ", stream: object = None) -> str:
        shown.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    yield answers
    assert not answers, "not every prepared answer was asked for"


def verifies(hashed: str, password: str) -> bool:
    """Whether ``password`` matches the argon2 hash ``hashed``."""
    try:
        return argon2.PasswordHasher().verify(hashed, password)
    except argon2.exceptions.VerifyMismatchError:
        return False


def one_error_line(result: Result, message: str) -> None:
    """Assert exit status 1 and exactly ``sysadmd-admin: <message>`` on stderr."""
    assert result.code == 1
    assert result.out == ""
    assert result.err == f"sysadmd-admin: {message}\n"


def test_add_reads_the_password_from_stdin(cli: Cli) -> None:
    result = cli("user", "add", "alice", "--role", "admin", stdin=io.StringIO("s3cret pw \n"))
    assert result == Result(0, "added user alice with role admin\n", "")
    hashed = cli.hashes()["alice"]
    assert hashed.startswith("$argon2id$")
    # Only the newline is stripped, spaces belong to the password.
    assert verifies(hashed, "s3cret pw ")
    assert not verifies(hashed, "s3cret pw")
    assert (cli.state / ACCOUNTS_FILE).stat().st_mode & 0o777 == 0o600


def test_add_then_list_aligns_columns(cli: Cli) -> None:
    assert cli("user", "list") == Result(0, "NAME  ROLE\n", "")
    for name, role in (("bob", "operator"), ("alice", "admin"), ("operator_long", "operator")):
        assert cli("user", "add", name, "--role", role, stdin=io.StringIO("pw\n")).code == 0
    result = cli("user", "list")
    assert result.code == 0
    assert result.err == ""
    assert result.out == (
        "NAME           ROLE\n"
        "alice          admin\n"
        "bob            operator\n"
        "operator_long  operator\n"
    )


def test_passwd_replaces_the_password(cli: Cli) -> None:
    cli("user", "add", "alice", "--role", "operator", stdin=io.StringIO("old pw\n"))
    result = cli("user", "passwd", "alice", stdin=io.StringIO("new pw\r\n"))
    assert result == Result(0, "changed the password of user alice\n", "")
    hashed = cli.hashes()["alice"]
    assert verifies(hashed, "new pw")
    assert not verifies(hashed, "old pw")
    assert cli("user", "list").out.splitlines()[1].split() == ["alice", "operator"]


def test_del_removes_the_account(cli: Cli) -> None:
    cli("user", "add", "alice", "--role", "admin", stdin=io.StringIO("pw\n"))
    cli("user", "add", "bob", "--role", "admin", stdin=io.StringIO("pw\n"))
    assert cli("user", "del", "alice") == Result(0, "deleted user alice\n", "")
    assert list(cli.hashes()) == ["bob"]
    one_error_line(cli("user", "del", "alice"), "no such user: alice")


def test_errors_are_one_line(cli: Cli) -> None:
    cli("user", "add", "alice", "--role", "admin", stdin=io.StringIO("pw\n"))
    one_error_line(
        cli("user", "add", "alice", "--role", "operator", stdin=io.StringIO("pw\n")),
        "user alice already exists",
    )
    result = cli("user", "add", "Bad Name", "--role", "admin", stdin=io.StringIO("pw\n"))
    assert result.code == 1
    assert result.err.startswith("sysadmd-admin: invalid user name 'Bad Name'")
    assert result.err.count("\n") == 1
    one_error_line(cli("user", "passwd", "bob", stdin=io.StringIO("pw\n")), "no such user: bob")
    one_error_line(
        cli("user", "add", "bob", "--role", "admin", stdin=io.StringIO("")),
        "no password on standard input",
    )
    one_error_line(
        cli("user", "add", "bob", "--role", "admin", stdin=io.StringIO("\n")),
        "the password must not be empty",
    )
    result = cli("user", "add", "bob", "--role", "admin", stdin=io.StringIO("x" * 1025 + "\n"))
    one_error_line(result, "the password is longer than 1024 characters")
    assert list(cli.hashes()) == ["alice"]


def test_an_unusable_state_dir_is_one_line(cli: Cli, state: Path) -> None:
    state.write_text("not a directory")
    result = cli("user", "add", "alice", "--role", "admin", stdin=io.StringIO("pw\n"))
    one_error_line(result, f"{state / ACCOUNTS_FILE}: Not a directory")
    one_error_line(cli("user", "list"), f"{state / ACCOUNTS_FILE}: Not a directory")


def test_a_damaged_database_is_one_line(cli: Cli, state: Path) -> None:
    state.mkdir()
    (state / ACCOUNTS_FILE).write_text("{\n")
    result = cli("user", "list")
    assert result.code == 1
    assert result.err.startswith(f"sysadmd-admin: {state / ACCOUNTS_FILE}: not valid JSON")
    assert result.err.count("\n") == 1


def test_on_a_terminal_the_password_is_asked_twice(cli: Cli, prompts: list[str]) -> None:
    prompts.extend(["typed pw", "typed pw"])
    result = cli("user", "add", "alice", "--role", "admin", stdin=Terminal())
    assert result == Result(0, "added user alice with role admin\n", "")
    assert verifies(cli.hashes()["alice"], "typed pw")


def test_on_a_terminal_different_passwords_are_refused(cli: Cli, prompts: list[str]) -> None:
    prompts.extend(["typed pw", "typo pw"])
    result = cli("user", "add", "alice", "--role", "admin", stdin=Terminal())
    one_error_line(result, "the passwords do not match")
    assert "typed pw" not in result.err
    assert not (cli.state / ACCOUNTS_FILE).exists()


def test_passwd_of_an_unknown_user_asks_nothing(cli: Cli, prompts: list[str]) -> None:
    one_error_line(cli("user", "passwd", "nobody", stdin=Terminal()), "no such user: nobody")


def test_usage_errors_exit_2(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        [],
        ["user"],
        ["user", "add", "alice"],
        ["user", "add", "alice", "--role", "public"],
        ["user", "del"],
        ["group", "list"],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert "usage: sysadmd-admin" in capsys.readouterr().err


def test_default_state_dir() -> None:
    assert build_parser().parse_args(["user", "list"]).state_dir == Path("/var/db/sysadmd")
    assert Path("/var/db/sysadmd") == DEFAULT_STATE_DIR


@async_test
async def test_the_daemon_sees_changes_made_by_the_cli(cli: Cli, state: Path) -> None:
    daemon = LocalAccounts(state / ACCOUNTS_FILE)
    assert await daemon.check("carol", "carol pw") is None
    cli("user", "add", "carol", "--role", "operator", stdin=io.StringIO("carol pw\n"))
    assert await daemon.check("carol", "carol pw") == Role.OPERATOR
    cli("user", "del", "carol")
    assert await daemon.check("carol", "carol pw") is None


def test_a_separate_process_with_piped_stdin(tmp_path: Path) -> None:
    # The console script if this environment has it (dev/test installs it), else the module.
    script = Path(sys.executable).parent / "sysadmd-admin"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sysadmd.auth.admin"]
    state = tmp_path / "state"
    base = [*command, "--state-dir", str(state), "user"]
    added = subprocess.run(
        [*base, "add", "alice", "--role", "admin"],
        input="piped pw\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert (added.returncode, added.stderr) == (0, "")
    assert "piped pw" not in added.stdout
    listed = subprocess.run([*base, "list"], capture_output=True, text=True, check=False)
    assert (listed.returncode, listed.stdout) == (0, "NAME   ROLE\nalice  admin\n")
    missing = subprocess.run([*base, "del", "bob"], capture_output=True, text=True, check=False)
    assert (missing.returncode, missing.stderr) == (1, "sysadmd-admin: no such user: bob\n")


def test_role_changes_the_role_and_keeps_the_password(cli: Cli) -> None:
    cli("user", "add", "alice", "--role", "admin", stdin=io.StringIO("pw\n"))
    before = cli.hashes()["alice"]
    assert cli("user", "role", "alice", "operator") == Result(
        0, "user alice now has role operator\n", ""
    )
    assert cli("user", "list").out.splitlines()[1].split() == ["alice", "operator"]
    assert cli.hashes()["alice"] == before
    one_error_line(cli("user", "role", "bob", "admin"), "no such user: bob")


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        (
            None,
            "auth.backend = 'auto' on a real host (the defaults): the daemon checks "
            "sysadmd's own accounts",
        ),
        ('[auth]\nbackend = "pam"\n', "auth.backend = 'pam' on a real host"),
        ("[iohyve]\nsimulate = true\n", "auth.backend = 'auto' on simulate mode"),
    ],
)
def test_backends_says_whose_passwords_the_daemon_checks(
    cli: Cli, tmp_path: Path, toml: str | None, says: str
) -> None:
    if toml is not None:
        (tmp_path / "etc.toml").write_text(toml)
    result = cli("backends")
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(says)
    both = ", then system accounts (PAM"
    assert (both in result.out) == (toml is None)
    if toml is not None:
        assert f"({tmp_path / 'etc.toml'})" in result.out


def test_a_daemon_that_ignores_local_accounts_is_noted(cli: Cli, tmp_path: Path) -> None:
    """Adding an account that could never log in is not silent."""
    config = tmp_path / "given.toml"
    config.write_text('[auth]\nbackend = "pam"\n')
    result = cli(
        "--config",
        str(config),
        "user",
        "add",
        "alice",
        "--role",
        "admin",
        stdin=io.StringIO("pw\n"),
    )
    assert result.code == 0
    assert result.err == (
        f"sysadmd-admin: note: with auth.backend = 'pam' ({config}) the daemon does not "
        "consult these accounts\n"
    )
    config.write_text('[auth]\nbackend = "auto"\n')
    result = cli("--config", str(config), "user", "passwd", "alice", stdin=io.StringIO("pw\n"))
    assert (result.code, result.err) == (0, "")


def test_a_bad_config_is_one_line(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[auth]\nbackend = "ldap"\n')
    result = cli("--config", str(config), "backends")
    assert result.code == 1
    assert result.err.startswith("sysadmd-admin: auth.backend: ")
    assert result.err.count("\n") == 1


def test_del_removes_the_account_s_registered_keys(cli: Cli) -> None:
    """A key left behind would log in whoever gets the name next."""
    cli("user", "add", "alice", "--role", "admin", stdin=io.StringIO("pw\n"))
    cli("user", "add", "bob", "--role", "admin", stdin=io.StringIO("pw\n"))
    store = KeyStore(cli.state / KEYS_FILE)
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
    pems = [
        k.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
        for k in keys
    ]
    store.register("alice", pems[0])
    store.register("alice", pems[1])
    store.register("bob", pems[2])
    assert cli("user", "del", "alice") == Result(
        0, "deleted user alice\nremoved 2 registered keys of alice\n", ""
    )
    assert list(KeyStore(cli.state / KEYS_FILE).list()) == ["bob"]


def test_lockout_clear_checks_the_address(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--state-dir", str(state), "lockout", "clear", "--address", "not-an-ip"])
    assert stopped.value.code == 2
    assert "'not-an-ip' is not an IP address" in capsys.readouterr().err
