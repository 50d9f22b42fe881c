"""The one redaction and the one output cut of sysadmd.shared._text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sysadmd.shared import OUTPUT_TAIL, redact_urls, shorten, tail


@given(st.text(), st.integers(min_value=0, max_value=64))
def test_tail_keeps_whole_characters_within_the_limit(text: str, limit: int) -> None:
    kept = tail(text, limit)
    assert len(kept.encode("utf-8", "surrogatepass")) <= limit
    assert text.endswith(kept)
    # At most one character (of at most 4 bytes) more would have fitted.
    assert len(kept.encode("utf-8", "surrogatepass")) > limit - 4 or kept == text


def test_tail_defaults_to_the_task_output_size() -> None:
    assert tail("é" * OUTPUT_TAIL) == "é" * (OUTPUT_TAIL // 2)
    assert tail("x" * 10) == "x" * 10


def test_shorten_marks_the_cut() -> None:
    assert shorten("abcdef", 6) == "abcdef"
    assert shorten("abcdefg", 6) == "abcde…"


def test_redact_then_cut_exposes_no_secret() -> None:
    output = "fetch https://joe:hunter2@mirror.example/a.iso failed\n" + "y" * 10
    assert "hunter2" not in tail(redact_urls(output), 40)
    assert redact_urls(output).startswith("fetch https://<redacted>@mirror.example/a.iso")
