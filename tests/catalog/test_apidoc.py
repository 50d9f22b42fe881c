"""docs/api.md carries the reference the registry renders, unchanged."""

from __future__ import annotations

from pathlib import Path

from sysadmd.catalog import reference as apidoc

DOC = Path(__file__).parents[2] / "docs" / "api.md"


def test_reference_is_current() -> None:
    """Refresh with `python -m sysadmd.catalog.reference --update docs/api.md` when this fails."""
    assert apidoc.generated() in DOC.read_text()


def test_reference_names_every_action_and_argument() -> None:
    """Every action and every argument appears in the rendered reference."""
    text = apidoc.render(apidoc.all_specs())
    for spec in apidoc.all_specs():
        assert f"`{spec.title}`" in text
        for arg in spec.args:
            assert f"| `{arg.name}` |" in text
