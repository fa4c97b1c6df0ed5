"""Text from the API or the audience cannot drive a terminal or rewrite a job summary."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runner import inert


@given(st.text())
def test_no_control_character_reaches_a_terminal(text: str) -> None:
    shown = inert.terminal(text)
    assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in shown)


@given(st.text())
def test_markdown_is_one_literal_line(text: str) -> None:
    shown = inert.markdown(text)
    assert "\n" not in shown
    for special in "`<>|*_[]":
        assert shown.count(special) == shown.count("\\" + special)


def test_a_title_escape_is_shown_not_obeyed() -> None:
    assert inert.terminal("\x1b]0;PWNED\x07ok\x9b2J") == "?]0;PWNED?ok?2J"
    assert inert.markdown("<b>`x`</b> | y") == r"\<b\>\`x\`\</b\> \| y"
