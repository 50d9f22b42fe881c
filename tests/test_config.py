"""Configuration: defaults, the TOML file, flags that win, one-line errors."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from sysadmd import config

SAMPLE = Path(__file__).parent.parent / "conf" / "sysadmd.toml"


def test_defaults() -> None:
    """Without a file or flags the daemon listens on the sysadm ports, on every address."""
    settings = config.load()
    assert settings.listen == ("ssl:12150", "ssl:12151")
    assert settings.auth_backend == "auto"
    assert settings.auth_session_idle == 900
    assert settings.state_dir == Path("/var/db/sysadmd")
    assert settings.iohyve_path == Path("/usr/local/sbin/iohyve")
    assert settings.iohyve_simulate is False
    assert settings.fetch_concurrency == 1


def test_sample_documents_every_key_with_its_default() -> None:
    """conf/sysadmd.toml names every key, and its values are the defaults."""
    text = SAMPLE.read_text()
    document = tomllib.loads(text)
    for key in config.documented_keys():
        if key.default is None:
            assert f"# {key.name} = " in text, key.dotted
        else:
            assert document[key.section][key.name] == key.default, key.dotted
    assert config.load(SAMPLE) == config.load()


def test_each_key_is_declared_once_on_its_config_field() -> None:
    """The KEYS table is made from Config's fields, which carry each key's declaration."""
    declared = dataclasses.fields(config.Config)
    assert [key.attribute for key in config.KEYS] == [f.name for f in declared]
    for key, declaration in zip(config.KEYS, declared, strict=True):
        section, default, check, doc = declaration.metadata["sysadmd.config"]
        assert (key.section, key.default, key.check, key.doc) == (section, default, check, doc)
        assert doc and key.dotted == f"{section}.{key.name}"


def test_file_and_flags(tmp_path: Path) -> None:
    """The file overrides defaults and flags override the file."""
    path = tmp_path / "s.toml"
    path.write_text(
        '[daemon]\nlisten = ["tcp:8080"]\nstate_dir = "/tmp/x"\n'
        "[fetch]\nconcurrency = 2\nfile_roots = ['/srv/isos']\n"
    )
    settings = config.load(path, {"daemon.listen": ["tcp:9090", "tcp:9091"]})
    assert settings.listen == ("tcp:9090", "tcp:9091")
    assert settings.state_dir == Path("/tmp/x")
    assert settings.fetch_concurrency == 2
    assert settings.fetch_file_roots == (Path("/srv/isos"),)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[fetch]\nconcurrency = 0\n", "fetch.concurrency: must be a whole number from 1 to 16"),
        ("[fetch]\nconcurrency = true\n", "fetch.concurrency: must be a whole number"),
        ("[fetch]\nspeed = 1\n", "unknown key fetch.speed"),
        ("[network]\nx = 1\n", "unknown section [network]"),
        ("[daemon]\nlisten = []\n", "daemon.listen: must be a non-empty list"),
        ("[iohyve]\npath = 'iohyve'\n", "iohyve.path: must be an absolute path"),
        ("[iohyve]\nsimulator_profile = '0.8'\n", "iohyve.simulator_profile: must be one of"),
        ("[fetch]\ntimeout = 1\n", "fetch.timeout: must be a number of seconds from 10"),
        ("daemon = 3\n", "daemon must be a [daemon] table"),
        ("[daemon\n", "is not valid TOML"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, words: str) -> None:
    """A bad file gives one line naming the key and what is wrong."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as raised:
        config.load(path)
    assert words in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_file(tmp_path: Path) -> None:
    """A file that cannot be read is named."""
    with pytest.raises(config.ConfigError, match="cannot be read"):
        config.load(tmp_path / "missing.toml")


def test_relative_state_dir_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Children run in /, so the state directory is made absolute when it is read."""
    monkeypatch.chdir(tmp_path)
    assert config.load(None, {"daemon.state_dir": "state"}).state_dir == tmp_path / "state"
