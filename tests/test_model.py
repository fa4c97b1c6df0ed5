"""One base_url rule for every API."""

from __future__ import annotations

import pytest

from runner.model import api_base, base_url_problem


@pytest.mark.parametrize(
    ("given", "api", "base"),
    [
        ("https://api.smax.bot", "v1", "https://api.smax.bot"),
        ("https://api.smax.bot/", "chatfuel", "https://api.smax.bot"),
        ("https://api.smax.bot", "v2", "https://api.smax.bot/public"),
        ("https://api.smax.bot/public", "v2", "https://api.smax.bot/public"),  # the old form
        ("http://127.0.0.1:8025/", "v2", "http://127.0.0.1:8025/public"),
    ],
)
def test_the_product_adds_the_apis_own_path(given: str, api: str, base: str) -> None:
    assert base_url_problem(given) is None
    assert api_base(given, api) == base


@pytest.mark.parametrize(
    "bad", ["api.smax.bot", "ftp://x", "http://", "http://h:0", "http://h:70000", "http://h/#x"]
)
def test_unusable_base_urls_are_refused(bad: str) -> None:
    assert base_url_problem(bad) is not None
