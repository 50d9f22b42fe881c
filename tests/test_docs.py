"""The documentation site builds without a single warning, and documents every setting."""

from __future__ import annotations

import html
import importlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sysadmd import config
from sysadmd.catalog import examples, reference

DOCS = Path(__file__).parent.parent / "docs"


def anchor(key: config.Key) -> str:
    """The HTML id of a key's entry: its label ``config-<section>.<name>`` as docutils makes ids."""
    return re.sub(r"[^a-z0-9]+", "-", f"config-{key.dotted}".lower()).strip("-")


@dataclass(frozen=True)
class Site:
    """A finished build: where its HTML is, and what Sphinx said."""

    html: Path
    returncode: int
    output: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """Build the site once, as `make -C docs html` does, into a temporary directory."""
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-b", "html"),
            *("-W", "--keep-going", "-n", "-q"),
            *("-d", str(out / "doctrees"), str(DOCS), str(out / "html")),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return Site(out / "html", result.returncode, result.stdout + result.stderr)


def test_site_builds_without_warnings(site: Site) -> None:
    """Warnings are errors, as in `make -C docs html`; the output says which one failed."""
    assert site.returncode == 0, site.output
    for page in (
        "index",
        "quickstart",
        "install-freebsd",
        "configuration",
        "security",
        "operations",
    ):
        assert (site.html / f"{page}.html").is_file()
    for page in ("api", "iohyve", "architecture"):
        assert (site.html / f"{page}.html").is_file()


def test_configuration_page_lists_every_key(site: Site) -> None:
    """Each key of sysadmd.config.KEYS has its own entry, so a new key cannot go unseen."""
    assert site.returncode == 0, site.output
    page = (site.html / "configuration.html").read_text(encoding="utf-8")
    missing = [
        key.dotted
        for key in config.KEYS
        if f'id="{anchor(key)}"' not in page or f">{key.dotted}<" not in page
    ]
    assert not missing, f"configuration.html has no entry for {missing}"


def test_configuration_page_shows_the_sample_file(site: Site) -> None:
    """conf/sysadmd.toml is shown as it is (literalinclude), comments and all."""
    page = (site.html / "configuration.html").read_text(encoding="utf-8")
    first_line = (DOCS.parent / "conf" / "sysadmd.toml").read_text().splitlines()[0]
    assert html.escape(first_line, quote=False) in page


def test_the_site_renders_generated_parts_from_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The site's extension replaces the pages' copies by what the declarations render now."""
    monkeypatch.syspath_prepend(str(DOCS / "_ext"))
    render = importlib.import_module("sysadmd_generated").render_generated_parts

    api = (DOCS / "api.md").read_text()
    start, end = api.index(reference.BEGIN), api.index(reference.END) + len(reference.END)
    stale = [api[:start] + f"{reference.BEGIN}\nan old copy\n{reference.END}" + api[end:]]
    render(None, "api", stale)
    assert stale == [api[:start] + reference.generated() + api[end:]]
    page = ["an old copy of the examples"]
    render(None, "iohyve", page)
    assert page == [examples.render()]
    other = ["untouched"]
    render(None, "security", other)
    assert other == ["untouched"]
