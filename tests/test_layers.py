"""The import graph keeps the contracts of ``.importlinter`` (checked with import-linter).

The daemon's layers import only downwards (app, ops, fleet, transport, catalog, services,
console, auth, tasks, backends, api, config, shared); the client and the simulator import
nothing from the daemon, the daemon nothing from them; one service never imports another. A
broken contract fails :func:`test_every_contract_is_kept` with import-linter's report, which
names each import.
"""

from __future__ import annotations

import ast
import configparser
import importlib
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


# --- Public surfaces ------------------------------------------------------------------------
# Each layer package keeps its modules private (``_name.py``) and re-exports, in its
# ``__init__``, the names other packages use. A name or module path segment that starts with one
# underscore is private to the package that holds it.


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_owner(dotted: str) -> str | None:
    """The package a dotted path reaches into privately, or None for a public path."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _imported_paths(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every dotted path an import statement of ``module`` names, with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def private_imports(root: Path, package: str = "sysadmd") -> list[str]:
    """Imports, in ``root/package``, of another package's private modules or names."""
    problems = []
    for path in sorted((root / package).rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, dotted in _imported_paths(tree, module, path.name == "__init__.py"):
            owner = _private_owner(dotted)
            if owner is not None and not (module == owner or module.startswith(owner + ".")):
                problems.append(f"{module}:{line} imports {dotted}, private to {owner}")
    return problems


def test_no_module_imports_another_packages_private_modules() -> None:
    """Outside a package only its ``__init__``'s names are used (tests may reach inside)."""
    assert private_imports(REPO) == []
    assert private_imports(REPO, "twisted") == []


def test_an_import_of_a_private_module_is_found(tmp_path: Path) -> None:
    """The check sees ``from pkg._mod import``, ``import pkg._mod`` and relative imports."""
    for name in ("sysadmd/api", "sysadmd/transport"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "sysadmd/__init__.py").write_text("")
    (tmp_path / "sysadmd/api/_errors.py").write_text("class ApiError(Exception): ...\n")
    (tmp_path / "sysadmd/api/_roles.py").write_text("from sysadmd.api._errors import ApiError\n")
    (tmp_path / "sysadmd/transport/_rest.py").write_text(
        "from sysadmd.api._errors import ApiError\n"
        "import sysadmd.api._roles\n"
        "from ..api import _errors\n"
        "from sysadmd.api import ApiError as Fine\n"
        "from sysadmd.transport._limits import x\n"
    )
    assert private_imports(tmp_path) == [
        "sysadmd.transport._rest:1 imports sysadmd.api._errors.ApiError, private to sysadmd.api",
        "sysadmd.transport._rest:2 imports sysadmd.api._roles, private to sysadmd.api",
        "sysadmd.transport._rest:3 imports sysadmd.api._errors, private to sysadmd.api",
    ]


def _surface(package: str) -> list[str]:
    return list(importlib.import_module(package).__all__)


LAYER_PACKAGES = [
    f"sysadmd.{path.parent.name}"
    for path in sorted((REPO / "sysadmd").glob("*/__init__.py"))
    if path.parent.name not in ("client", "simulator")
]


def test_every_layer_package_has_a_surface_that_resolves() -> None:
    """Each layer package declares ``__all__``; each name in it exists."""
    for package in LAYER_PACKAGES:
        module = importlib.import_module(package)
        assert len(_surface(package)) == len(set(_surface(package))), package
        for name in _surface(package):
            assert hasattr(module, name), f"{package}.{name}"


def test_every_public_name_is_used_outside_its_package() -> None:
    """The surface stays small: a name no other package imports is not exported."""
    used: set[str] = set()
    for root_package in ("sysadmd", "twisted"):
        for path in (REPO / root_package).rglob("*.py"):
            module = _module_name(path, REPO)
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ImportFrom)
                    and node.module in LAYER_PACKAGES
                    and not (module == node.module or module.startswith(node.module + "."))
                ):
                    used |= {f"{node.module}.{alias.name}" for alias in node.names}
    unused = [
        f"{package}.{name}"
        for package in LAYER_PACKAGES
        for name in _surface(package)
        if f"{package}.{name}" not in used
    ]
    assert unused == []
