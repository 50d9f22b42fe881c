"""Which VM manager the daemon serves: ``[host] backend``, ``--backend``, and ``auto``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast

import pytest
from twisted.internet.task import Clock

from sysadmd import app, config
from sysadmd.backends import Iohyve, ProcessRunner, VmBhyve


def settings(tmp_path: Path, **values: object) -> config.Config:
    vm = tmp_path / "vm"
    rc = tmp_path / "rc.conf"
    overrides = {
        "vm-bhyve.path": str(vm),
        "vm-bhyve.rc_conf": str(rc),
        "daemon.state_dir": str(tmp_path / "state"),
        **values,
    }
    return config.load(None, overrides)


def install_vm(tmp_path: Path, rc_conf: str) -> None:
    vm = tmp_path / "vm"
    vm.write_text("#!/bin/sh\n")
    vm.chmod(0o755)
    (tmp_path / "rc.conf").write_text(rc_conf)


def test_auto_picks_vm_bhyve_only_when_installed_and_enabled(tmp_path: Path) -> None:
    assert app.choose_backend(settings(tmp_path)) == "iohyve"
    install_vm(tmp_path, 'vm_enable="NO"\n')
    assert app.choose_backend(settings(tmp_path)) == "iohyve"
    install_vm(tmp_path, 'vm_enable="NO"\nvm_enable="YES"  # on\nvm_dir="/vm"\n')
    assert app.choose_backend(settings(tmp_path)) == "vm-bhyve"
    # Simulated, 'auto' is iohyve whatever the host has; a named backend is taken as is.
    assert app.choose_backend(settings(tmp_path, **{"iohyve.simulate": True})) == "iohyve"
    chosen = settings(tmp_path, **{"host.backend": "vm-bhyve", "iohyve.simulate": True})
    assert app.choose_backend(chosen) == "vm-bhyve"
    assert app.choose_backend(settings(tmp_path, **{"host.backend": "iohyve"})) == "iohyve"


def test_a_bad_backend_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"host\.backend: must be one of"):
        settings(tmp_path, **{"host.backend": "bhyve"})
    with pytest.raises(config.ConfigError, match=r"vm-bhyve\.simulator_version"):
        settings(tmp_path, **{"vm-bhyve.simulator_version": "1.5"})


def test_the_flag_sets_the_key() -> None:
    options = importlib.import_module("twisted.plugins.sysadmd_plugin").Options()
    options.parseOptions(["--backend", "vm-bhyve", "--simulate"])
    assert options.overrides()["host.backend"] == "vm-bhyve"


def test_the_chosen_backend_is_built_on_its_tools(tmp_path: Path) -> None:
    """vm-bhyve on a host runs the configured vm and sysrc; simulated, every tool is a
    dialect of the simulator (FreeBSD's fetch by its path: the word fetch is iohyve's)."""
    runner = cast(ProcessRunner, object())
    host = settings(tmp_path, **{"host.backend": "vm-bhyve", "vm-bhyve.sysrc": "/s/sysrc"})
    built = app.make_backend(host, runner, Clock(), ["/x/iohyve"], "vm-bhyve")
    assert isinstance(built, VmBhyve) and built.tool == "vm-bhyve"
    assert built._commands.vm == (str(tmp_path / "vm"),)
    assert built._commands.sysrc == ("/s/sysrc",)
    simulated = settings(tmp_path, **{"iohyve.simulate": True})
    built = app.make_backend(simulated, runner, Clock(), ["/py", "-m", "sim"], "vm-bhyve")
    assert isinstance(built, VmBhyve)
    assert built._commands.vm == ("/py", "-m", "sim", "vm")
    assert built._commands.sysrc == ("/py", "-m", "sim", "sysrc")
    assert built._commands.pgrep == ("/py", "-m", "sim", "pgrep")
    assert built._commands.zfs == ("/py", "-m", "sim", "zfs")
    assert built._commands.fetch == ("/py", "-m", "sim", "/usr/bin/fetch")
    assert built._commands.xz == ("/py", "-m", "sim", "xz")
    assert isinstance(app.make_backend(host, runner, Clock(), ["/x/iohyve"], "iohyve"), Iohyve)
