"""Masking: no value read from the environment leaves the process, whole, in part, or encoded."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import UsageError
from runner.secrets import HEAD, MASK, Masker, encodings, resolve, resolved_values

secrets_ = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=8, max_size=40
)
noise = st.text(alphabet="abc xyz=&?/%", max_size=30)
ENCODE = [
    lambda s: s,
    lambda s: quote(s, safe=""),
    lambda s: quote(s, safe="*"),  # how the V1 URL builder writes the token
    lambda s: quote_plus(s),
    lambda s: quote(s, safe="").lower(),
]


@given(secret=secrets_, before=noise, after=noise, encode=st.sampled_from(ENCODE))
def test_a_secret_never_survives_masking_in_any_encoding(
    secret: str, before: str, after: str, encode: object
) -> None:
    shown = encode(secret)  # type: ignore[operator]
    masked = Masker([secret])(before + shown + after)
    for form in encodings(secret):
        assert form not in masked


@given(secret=secrets_, before=noise, cut=st.integers(min_value=HEAD, max_value=39))
def test_a_secret_cut_by_someone_else_loses_its_head_too(
    secret: str, before: str, cut: int
) -> None:
    """An API that echoes the query string and cuts it after N characters."""
    text = before + "bot_token=" + quote(secret, safe="*")[:cut]
    masked = Masker([secret])(text)
    assert quote(secret, safe="*")[:HEAD] not in masked
    assert masked.endswith(MASK)


def test_masking_first_then_shortening_leaves_nothing() -> None:
    token = "abcdefghijklmnopqrstuvwxyz0123456789"
    page = "x" * 190 + "bot_token=" + token + " and more"
    shown = Masker([token])(page)[:200]
    assert token[:5] not in shown.replace("xxxxx", "")


def test_every_resolved_value_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_ID_FROM_ENV", "bot-7f3a9c")
    assert resolve("${BOT_ID_FROM_ENV}", "c.yaml:1:1: bot.id") == "bot-7f3a9c"
    assert "bot-7f3a9c" in resolved_values()
    assert Masker()("GET /bots/bot-7f3a9c/send") == f"GET /bots/{MASK}/send"


def test_an_unset_variable_names_it_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(UsageError, match=r"environment variable NOT_SET_ANYWHERE is not set"):
        resolve("${NOT_SET_ANYWHERE}", "c.yaml:1:1: bot.token")


def test_short_values_are_left_alone() -> None:
    assert Masker(["abc"])("abc abc") == "abc abc"
