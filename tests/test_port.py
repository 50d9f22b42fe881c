"""The FreeBSD port skeleton in packaging/freebsd/sysutils/py-sysadmd.

Its RUN_DEPENDS are one line per runtime requirement of pyproject.toml, each naming the PyPI
requirement in a comment; these tests keep the two lists (names and lower bounds) in step, and
the port's rc.d script in step with conf/rc.d/sysadmd. Whether each origin exists was checked
against the FreeBSD ports tree when the line was written; here only its form is checked.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import sysadmd
from sysadmd.auth import _pam as pam_backend

REPO = Path(__file__).resolve().parent.parent
PORT = REPO / "packaging" / "freebsd" / "sysutils" / "py-sysadmd"
MAKEFILE = PORT / "Makefile"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

#: Ports categories a Python runtime dependency may live in.
CATEGORIES = {
    "databases",
    "devel",
    "dns",
    "net",
    "net-mgmt",
    "security",
    "sysutils",
    "textproc",
    "www",
}

_DEPENDS = re.compile(
    r"RUN_DEPENDS\+=\s+\$\{PYTHON_PKGNAMEPREFIX\}(?P<package>[A-Za-z0-9_.-]+?)"
    r">=(?P<bound>[0-9][0-9.]*)"
    r":(?P<origin>[a-z-]+/py-[A-Za-z0-9_.-]+)@\$\{PY_FLAVOR\}"
    r"\s+#\s+(?P<comment>\S.*)"
)


@dataclass(frozen=True)
class Depends:
    package: str
    bound: str
    origin: str
    comment: str


def port_depends() -> list[Depends]:
    found = []
    for line in MAKEFILE.read_text().splitlines():
        if line.startswith("RUN_DEPENDS"):
            match = _DEPENDS.fullmatch(line.rstrip())
            assert match, f"not a RUN_DEPENDS+= line with a PyPI comment: {line}"
            found.append(Depends(**match.groupdict()))
    return found


def makefile_value(name: str) -> str:
    match = re.search(rf"^{name}=\s*(.*)$", MAKEFILE.read_text(), re.M)
    assert match, name
    return match.group(1).strip()


def lower_bound(requirement: Requirement) -> str:
    bounds = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    assert len(bounds) == 1, requirement
    return bounds[0]


def test_run_depends_match_the_project_dependencies() -> None:
    """Each requirement has its line with the same lower bound, and nothing else is there."""
    depends = port_depends()
    requirements = [Requirement(text) for text in PROJECT["dependencies"]]
    direct = {}
    extras: dict[str, set[str]] = {}
    for entry in depends:
        requirement_text, _colon, extra_package = entry.comment.partition(": ")
        if requirement_text == "stdlib":
            assert extra_package == "sqlite3"
            assert entry.origin == "databases/py-sqlite3"
            continue
        if extra_package:
            extras.setdefault(requirement_text, set()).add(canonicalize_name(extra_package))
            assert entry.bound == "0"
            continue
        requirement = Requirement(requirement_text)
        assert canonicalize_name(entry.package) == canonicalize_name(requirement.name), entry
        direct[str(requirement)] = entry
    assert sorted(direct) == sorted(
        f"{r.name}[{','.join(sorted(r.extras))}]" if r.extras else r.name for r in requirements
    )
    for requirement in requirements:
        key = f"{requirement.name}[{','.join(sorted(requirement.extras))}]"
        entry = direct[key if requirement.extras else requirement.name]
        assert entry.bound == lower_bound(requirement), (requirement, entry)
        assert canonicalize_name(entry.package) == canonicalize_name(requirement.name)
    # twisted[tls]: the packages of Twisted's tls extra, by name (service-identity is also a
    # direct requirement, with its own line).
    assert extras == {"twisted[tls]": {"pyopenssl", "idna"}}


def test_origins_are_python_ports() -> None:
    depends = port_depends()
    assert len({entry.origin for entry in depends}) == len(depends)
    for entry in depends:
        category, _slash, port = entry.origin.partition("/")
        assert category in CATEGORIES, entry
        assert port.startswith("py-"), entry


def test_port_metadata() -> None:
    assert makefile_value("PORTNAME") == "sysadmd"
    assert makefile_value("DISTVERSION") == sysadmd.__version__
    assert makefile_value("MASTER_SITES") == "PYPI"
    assert makefile_value("LICENSE") == "BSD2CLAUSE"
    assert PROJECT["license"] == "BSD-2-Clause"
    assert makefile_value("USES") == "python:3.11+"
    assert PROJECT["requires-python"] == ">=3.11"
    assert set(makefile_value("USE_PYTHON").split()) >= {"autoplist", "pep517"}
    assert makefile_value("USE_RC_SUBR") == "sysadmd"
    assert "setuptools>=77:devel/py-setuptools" in MAKEFILE.read_text()
    assert (PORT / "pkg-descr").read_text().strip()


def test_samples_are_installed_from_the_sdist() -> None:
    """Each @sample in the plist is installed by post-install from a file of conf/."""
    text = MAKEFILE.read_text()
    samples = re.findall(r'"@sample (etc/\S+\.sample)"', text)
    assert sorted(samples) == [
        "etc/newsyslog.conf.d/sysadmd.conf.sample",
        "etc/pam.d/sysadmd.sample",
        "etc/sysadmd.toml.sample",
    ]
    installs = {
        target: source
        for source, target in re.findall(
            r"\$\{INSTALL_DATA\} \$\{WRKSRC\}/(\S+)(?: \\\n\s+| )\$\{STAGEDIR\}\$\{PREFIX\}/(\S+)",
            text,
        )
    }
    assert sorted(installs) == sorted(samples)
    for source in installs.values():
        assert (REPO / source).is_file(), source
    assert installs["etc/pam.d/sysadmd.sample"].endswith(f"pam.d/{pam_backend.SERVICE}")


def test_the_ports_rc_d_script_is_conf_rc_d() -> None:
    """files/sysadmd.in is conf/rc.d/sysadmd with %%PREFIX%% and this Python's twistd."""
    port_script = (PORT / "files" / "sysadmd.in").read_text()
    assert "/usr/local" not in port_script
    back = port_script.replace("twistd-%%PYTHON_VER%%", "twistd").replace(
        "%%PREFIX%%", "/usr/local"
    )
    assert back == (REPO / "conf" / "rc.d" / "sysadmd").read_text()
    assert ': ${sysadmd_twistd:="%%PREFIX%%/bin/twistd-%%PYTHON_VER%%"}' in port_script
    assert makefile_value("SUB_LIST") == "PYTHON_VER=${PYTHON_VER}"


def test_pkg_message_first_steps() -> None:
    message = (PORT / "pkg-message").read_text()
    assert message.lstrip().startswith("[")
    assert "type: install" in message
    for step in (
        "sysrc sysadmd_enable=YES",
        "service sysadmd start",
        f"pam.d/{pam_backend.SERVICE}",
        "sysadmd-admin user add",
        "12150",
    ):
        assert step in message, step
