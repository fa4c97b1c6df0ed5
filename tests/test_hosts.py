"""One bot, one limit, however its URL is spelled."""

from __future__ import annotations

from runner import pacing
from runner.hosts import bot_identity


def test_loopback_names_default_ports_and_case_are_one_bot() -> None:
    spellings = [
        "http://127.0.0.1:8025",
        "http://localhost:8025",
        "http://LOCALHOST:8025/",
        "http://[::1]:8025",
    ]
    assert len({bot_identity(url, "bot") for url in spellings}) == 1
    assert bot_identity("https://API.smax.bot", "b") == bot_identity(
        "https://api.smax.bot:443", "b"
    )
    assert bot_identity("http://127.0.0.1:1", "b") != bot_identity("http://127.0.0.1:2", "b")


def test_one_bot_spelled_twice_shares_one_pacer_at_the_stricter_limit() -> None:
    a = bot_identity("http://127.0.0.1:8025", "bot")
    b = bot_identity("http://localhost:8025", "bot")
    first, second = pacing.shared([(a, 25), (b, 20)])
    assert first is second
    assert first.limit == 20


def test_a_v1_and_a_v2_campaign_of_one_bot_share_its_limit() -> None:
    """The limit is the bot's, whichever version of the API a campaign uses (V2 lives under
    /public on the same host)."""
    v1 = bot_identity("https://api.smax.bot", "6123abcd")
    v2 = bot_identity("https://api.smax.bot/public", "6123abcd")
    assert v1 == v2
    assert bot_identity("https://api.smax.bot", "other") != v1
