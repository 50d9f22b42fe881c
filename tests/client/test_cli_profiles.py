"""Saved router profiles: ``sysadm router save|list|forget`` and ``--profile`` (the real
``sysadm`` script; the runs through a real router are in tests/fleet/test_fleet_router.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from clientkit import free_port, sysadm

from sysadmd.fleet import ensure_host_key

#: A router address where nothing listens: the error names the URL a command used.
DEAD = f"ws://127.0.0.1:{free_port()}/ws"
OTHER = f"ws://127.0.0.1:{free_port()}/other"


def save(config: Path, name: str, *extra: str, router: str = DEAD) -> None:
    saved = sysadm(
        config, "router", "save", name, "--router", router, "--router-user", "olga", *extra
    )
    assert saved.status == 0, saved
    assert f"Saved the router profile {name}" in saved.stdout


def test_a_profile_is_saved_private_and_without_a_ticket(tmp_path: Path) -> None:
    config = tmp_path / "config"
    ca = tmp_path / "ca.pem"
    ca.write_bytes(
        b"-----BEGIN CERTIFICATE-----\n"
        b"MIIBaTCCAQ+gAwIBAgIUHWq7kFXHgwX8zkJp5wJ0rKJ8XY8wCgYIKoZIzj0EAwIw\n"
        b"-----END CERTIFICATE-----\n"
    )
    saved = sysadm(
        config,
        "router",
        "save",
        "lab",
        "--router",
        DEAD,
        "--realm",
        "lab.one",
        "--router-user",
        "olga",
        env={"SYSADM_ROUTER_TICKET": "secret-ticket"},
    )
    assert saved.status == 0, saved
    path = config / "routers.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    text = path.read_text()
    assert "secret-ticket" not in text and "ticket" not in text
    assert json.loads(text) == {
        "version": 1,
        "profiles": {
            "lab": {
                "router": DEAD,
                "realm": "lab.one",
                "router_user": "olga",
                "router_ca_file": None,
                "router_key": None,
            }
        },
    }
    listed = sysadm(config, "router", "list")
    assert listed.status == 0
    assert listed.stdout.split("\n")[2].split() == ["lab", DEAD, "lab.one", "olga"]
    assert (
        json.loads(sysadm(config, "router", "list", "--json").stdout)["lab"]["realm"] == "lab.one"
    )
    # A file that is no certificate is refused, and nothing is saved.
    refused = sysadm(
        config,
        "router",
        "save",
        "x",
        "--router",
        DEAD,
        "--router-user",
        "o",
        "--router-ca-file",
        str(ca),
    )
    assert refused.status == 2 and "is not a PEM certificate" in refused.stderr
    assert set(json.loads(path.read_text())["profiles"]) == {"lab"}


def test_bad_names_and_addresses_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    config = tmp_path / "config"
    for argv, message in [
        (["../x", "--router", DEAD, "--router-user", "o"], "is not a profile name"),
        (["lab", "--router", "http://router/ws", "--router-user", "o"], "is not a router URL"),
        (["lab", "--router", "ws://router:70000/ws", "--router-user", "o"], "port must be"),
        (["lab", "--router", DEAD, "--realm", "two words", "--router-user", "o"], "realm name"),
        (["lab", "--router", DEAD, "--router-user", "-o"], "is not a router user name"),
        (["lab", "--router-user", "o"], "Missing option '--router'"),
    ]:
        result = sysadm(config, "router", "save", *argv)
        assert result.status == 2, (argv, result)
        assert message in result.stderr, (argv, result.stderr)
    assert not (config / "routers.json").exists()
    # A key file others may read is refused when saved, not at its first use.
    ensure_host_key(tmp_path / "key")
    key_file = tmp_path / "key" / "fleet-host.key"
    key_file.chmod(0o644)
    leaky = sysadm(
        config,
        "router",
        "save",
        "kim",
        "--router",
        DEAD,
        "--router-user",
        "kim",
        "--router-key",
        str(key_file),
    )
    assert leaky.status == 2 and "make it mode 0600" in leaky.stderr
    assert not (config / "routers.json").exists()


def test_forget_removes_one_profile(tmp_path: Path) -> None:
    config = tmp_path / "config"
    save(config, "lab")
    save(config, "prod", router=OTHER)
    forgot = sysadm(config, "router", "forget", "lab")
    assert forgot.status == 0 and "Forgot the router profile lab" in forgot.stdout
    assert set(json.loads((config / "routers.json").read_text())["profiles"]) == {"prod"}
    again = sysadm(config, "router", "forget", "lab")
    assert again.status == 1 and "no router profile 'lab' to forget" in again.stderr
    assert sysadm(config, "router", "forget", "prod").status == 0
    assert "No router profiles" in sysadm(config, "router", "list").stdout


def test_a_profile_is_used_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "config"
    save(config, "lab")
    env = {"SYSADM_ROUTER_TICKET": "t"}
    used = sysadm(config, "--profile", "lab", "fleet", "hosts", env=env)
    assert used.status == 3 and f"cannot reach the router {DEAD}" in used.stderr
    # SYSADM_PROFILE names it as well; -H needs no --router then.
    by_env = sysadm(config, "-H", "all", "vm", "list", env={**env, "SYSADM_PROFILE": "lab"})
    assert by_env.status == 3 and DEAD in by_env.stderr
    # --router on the command line wins over the profile; SYSADM_ROUTER does not.
    over = sysadm(config, "--profile", "lab", "--router", OTHER, "fleet", "hosts", env=env)
    assert over.status == 3 and OTHER in over.stderr
    ambient = sysadm(
        config, "--profile", "lab", "fleet", "hosts", env={**env, "SYSADM_ROUTER": OTHER}
    )
    assert ambient.status == 3 and DEAD in ambient.stderr
    unknown = sysadm(config, "--profile", "nope", "fleet", "hosts", env=env)
    assert unknown.status == 2 and "no router profile 'nope' (saved: lab)" in unknown.stderr
    assert sysadm(config, "--profile", "../x", "fleet", "hosts").status == 2


def test_a_damaged_profiles_file_is_refused_and_kept(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir(mode=0o700)
    path = config / "routers.json"
    path.write_text('{"version": 1, "profiles": {"lab": {"router": "http://x"}}}')
    listed = sysadm(config, "router", "list")
    assert listed.status == 1 and "routers.json is damaged" in listed.stderr
    saved = sysadm(config, "router", "save", "new", "--router", DEAD, "--router-user", "o")
    assert saved.status == 1 and "routers.json is damaged" in saved.stderr
    assert path.read_text() == '{"version": 1, "profiles": {"lab": {"router": "http://x"}}}'
