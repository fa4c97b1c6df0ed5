"""Masking: no value read from the environment leaves the process, whole, in part, or encoded."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import UsageError
from runner.secrets import (
    GRAM,
    HEAD,
    MASK,
    Masker,
    _secret_units,
    _units,
    encodings,
    resolve,
    resolved_values,
)

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


def shown_runs(secret: str, masked: str) -> list[str]:
    """The runs of `GRAM` consecutive characters of ``secret`` that ``masked`` still shows,
    read as bytes whatever mix of raw and percent-encoded characters stands for them."""
    units = _secret_units(secret)
    once = _units(masked)[0]
    readings = (_units(masked, decode=False)[0], once, _units(once)[0])  # as is, decoded, twice
    return [
        units[i : i + GRAM]
        for i in range(len(units) - GRAM + 1)
        if any(units[i : i + GRAM] in text for text in readings)
    ]


@given(secret=secrets_, before=noise, cut=st.integers(min_value=HEAD, max_value=39))
def test_a_secret_cut_by_someone_else_shows_no_run_of_it(
    secret: str, before: str, cut: int
) -> None:
    """An API that echoes the query string and cuts it after N characters."""
    text = before + "bot_token=" + quote(secret, safe="*")[:cut]
    assert shown_runs(secret, Masker([secret])(text)) == []


@given(
    secret=secrets_,
    before=noise,
    after=noise,
    raw=st.lists(st.booleans(), min_size=40, max_size=40),
    start=st.integers(min_value=0, max_value=10),
)
def test_no_run_of_a_secret_survives_any_mix_of_encodings(
    secret: str, before: str, after: str, raw: list[bool], start: int
) -> None:
    """A server that decoded some characters and left others encoded, then cut the front."""
    mixed = "".join(c if keep else quote(c, safe="") for c, keep in zip(secret, raw, strict=False))
    text = before + mixed[start:] + after
    assert shown_runs(secret, Masker([secret])(text)) == []


def test_the_red_teams_token_echoed_half_decoded_is_masked() -> None:
    token = "Xq9#k2&Lp=7vR!mZ"
    echoed = "bot_token=Xq9#k2%26Lp%3D7vR!mZ&block_name=x"  # what its server decoded
    masked = Masker([token])(echoed)
    assert masked == f"bot_token={MASK}&block_name=x"
    assert Masker([token])("...k2%26Lp%3D7v...") == f"...{MASK}..."  # the middle alone


def test_a_base_url_from_the_environment_masks_its_host_not_every_scheme() -> None:
    masker = Masker(["http://api.private.example:8443"])
    assert masker("see https://docs.python.org/x") == "see https://docs.python.org/x"
    assert masker("cannot reach api.private.example:8443") == f"cannot reach {MASK}"


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


def test_a_token_holding_percent_escapes_is_masked_raw_encoded_and_encoded_twice() -> None:
    token = "Zq7%2F%3D%41%42xYz-Long-Secret-Value"
    masker = Masker([token])
    for shown in (token, quote(token, safe=""), quote(quote(token, safe=""), safe="")):
        assert shown_runs(token, masker(f"echo: {shown} end")) == []
    twice = quote(quote("K9/x=Q!tok-en+42", safe=""), safe="")
    assert shown_runs("K9/x=Q!tok-en+42", Masker(["K9/x=Q!tok-en+42"])(twice)) == []
