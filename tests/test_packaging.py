"""The sdist and the wheel build, install into a new virtual environment and run.

``python -m build`` makes the sdist and then the wheel from the unpacked sdist, so a file the
sdist forgets breaks the wheel too; it builds from a copy of the source without any earlier
build's leftovers. A clean virtual environment (no system site-packages)
installs the sdist with its dependencies from the index pip is configured with (the pip cache
makes repeated runs fast), runs ``twistd sysadmd --help`` and the console scripts, then
installs the wheel over it and runs them again. One test builds once: it takes about a minute.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import sysadmd

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_version_has_one_source() -> None:
    """pyproject.toml takes the version from sysadmd.__version__ (read without importing)."""
    project = PYPROJECT["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "sysadmd.__version__"}
    tree = ast.parse((REPO / "sysadmd" / "__init__.py").read_text())
    literal = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    assert literal == [sysadmd.__version__]


def run(*argv: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def check_installed(bin_dir: Path, tmp_path: Path) -> None:
    python = bin_dir / "python"
    # Imported from the environment, not from the checkout.
    where = run(python, "-c", "import sysadmd; print(sysadmd.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(bin_dir.parent)
    version = run(
        python,
        "-c",
        "import importlib.metadata, sysadmd;"
        "print(importlib.metadata.version('sysadmd'), sysadmd.__version__)",
        cwd=tmp_path,
    )
    assert version.split() == [sysadmd.__version__, sysadmd.__version__]
    usage = run(bin_dir / "twistd", "sysadmd", "--help", cwd=tmp_path)
    assert "--listen" in usage
    assert "--simulate" in usage
    for script in ("sysadmd-admin", "sysadm", "iohyve-sim"):
        assert run(bin_dir / script, "--help", cwd=tmp_path).strip(), script


#: What a checkout may hold that is not source: left out of the copy the test builds from, so
#: that nothing a previous build or install left behind (an egg-info's SOURCES.txt above all)
#: can stand in for the manifest.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "*.egg-info",
    "build",
    "dist",
    "_build",
    "_generated",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "dropin.cache",
)


@pytest.mark.slow
def test_sdist_and_wheel_install_and_run_in_a_clean_venv(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, source, timeout=600)
    [sdist] = dist.glob("sysadmd-*.tar.gz")
    [wheel] = dist.glob("sysadmd-*.whl")
    assert sdist.name == f"sysadmd-{sysadmd.__version__}.tar.gz"
    assert wheel.name.startswith(f"sysadmd-{sysadmd.__version__}-py3-none-any")

    # What the daemon needs at run time is in the wheel; what a port installs is in the sdist.
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = Parser().parsestr(
            archive.read(f"sysadmd-{sysadmd.__version__}.dist-info/METADATA").decode()
        )
    assert {"sysadmd/py.typed", "twisted/plugins/sysadmd_plugin.py"} <= names
    # Every module of every package is found (the packages are discovered, not listed).
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "sysadmd").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert "twisted/plugins/__init__.py" not in names  # Twisted's namespace stays Twisted's
    assert metadata["Version"] == sysadmd.__version__
    assert len(metadata.get_all("Requires-Dist") or []) >= len(PYPROJECT["project"]["dependencies"])
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "conf/rc.d/sysadmd",
        "conf/pam.d/sysadmd",
        "conf/sysadmd.toml",
        "conf/newsyslog.conf.d/sysadmd.conf",
        "packaging/freebsd/sysutils/py-sysadmd/Makefile",
    ):
        assert needed in members, needed

    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(environment)
    bin_dir = environment / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", sdist, timeout=900)
    check_installed(bin_dir, tmp_path)
    run(
        bin_dir / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--force-reinstall",
        "--no-deps",
        wheel,
    )
    check_installed(bin_dir, tmp_path)
