"""The import graph keeps the contracts of ``.importlinter`` (checked with import-linter).

The daemon's layers import only downwards (app, ops, transport, catalog, services, auth, tasks,
backends, api, config, shared); the client and the simulator import nothing from the daemon,
the daemon nothing from them; one service never imports another. A broken contract fails
:func:`test_every_contract_is_kept` with import-linter's report, which names each import.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".importlinter"

# import-linter's own entry point, without its cache (nothing is written to the checkout).
_LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"
)


def lint(config: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter with ``config`` on this checkout's package."""
    return subprocess.run(
        [sys.executable, "-c", _LINT, str(config)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser


def listed(section: str, key: str) -> list[str]:
    return contracts()[section][key].split()


def test_every_contract_is_kept() -> None:
    result = lint(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """The lint sees the real imports: with the app put below the api it must fail."""
    parser = contracts()
    layers = listed("importlinter:contract:layers", "layers")
    app, api = layers.index("sysadmd.app"), layers.index("sysadmd.api")
    layers[app], layers[api] = layers[api], layers[app]
    parser["importlinter:contract:layers"]["layers"] = "\n" + "\n".join(layers)
    for section in [s for s in parser.sections() if s.startswith("importlinter:contract:")]:
        if section != "importlinter:contract:layers":
            parser.remove_section(section)
    config = tmp_path / "reversed.ini"
    with config.open("w") as out:
        parser.write(out)
    result = lint(config)
    assert result.returncode != 0
    assert "sysadmd.app is not allowed to import sysadmd.api" in result.stdout


def test_every_package_and_module_of_the_daemon_is_in_a_layer() -> None:
    """A new layer package or top-level module must be given its place in the contract."""
    package = REPO / "sysadmd"
    found = {f"sysadmd.{path.parent.name}" for path in package.glob("*/__init__.py")} | {
        f"sysadmd.{path.stem}" for path in package.glob("*.py") if path.stem != "__init__"
    }
    separate = set(listed("importlinter:contract:daemon", "forbidden_modules"))
    assert separate == {"sysadmd.client", "sysadmd.simulator"}
    layers = set(listed("importlinter:contract:layers", "layers")) - {"|"}
    assert found - separate == layers
