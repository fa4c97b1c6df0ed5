"""Every class of outcome, ruled by "never twice"."""

from __future__ import annotations

import email.utils
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from runner import outcome
from runner.outcome import Kind

KEY: Any = SimpleNamespace(host="127.0.0.1", port=1, ssl=True, is_ssl=False)


@pytest.mark.parametrize(
    ("status", "body", "kind", "result"),
    [
        (200, b'{"success": true, "result": "ok"}', Kind.SENT, "ok"),
        (
            200,
            b'{"success": false, "result": "user blocked the bot"}',
            Kind.FAILED,
            "user blocked the bot",
        ),
        (200, b"<html>", Kind.UNCERTAIN, "<html>"),  # it took the request: maybe sent
        (200, b'{"result": "?"}', Kind.UNCERTAIN, "?"),
        (400, b'{"success": false, "result": "bad block"}', Kind.FAILED, "bad block"),
        (404, b'{"success": false, "result": "no such user"}', Kind.FAILED, "no such user"),
        # Not the API's answer: a wrong base_url. The whole campaign is wrong; nobody failed.
        (404, b"not found", Kind.CAMPAIGN, "not found"),
        (405, b"<html>Method Not Allowed</html>", Kind.CAMPAIGN, "<html>Method Not Allowed</html>"),
        (301, b"", Kind.CAMPAIGN, None),
        # Any other server: python -m http.server answers a POST with an HTML 501.
        (
            501,
            b"<html>\n<head>\n<title>Error</title>\n</head>\n</html>",
            Kind.CAMPAIGN,
            "<html> <head> <title>Error</title> </head> </html>",
        ),
        (505, b"HTTP Version Not Supported", Kind.CAMPAIGN, "HTTP Version Not Supported"),
        (501, b'{"success": false, "result": "later"}', Kind.UNCERTAIN, "later"),
        (401, b'{"success": false, "result": "bad token"}', Kind.CAMPAIGN, "bad token"),
        (403, b"", Kind.CAMPAIGN, None),
        (429, b'{"success": false}', Kind.RETRY, None),
        (503, b'{"success": false, "result": "busy"}', Kind.RETRY, "busy"),
        # A gateway may answer 502/504 (or the API 500) after the API acted: never resent.
        (500, b"oops", Kind.UNCERTAIN, "oops"),
        (502, b"bad gateway", Kind.UNCERTAIN, "bad gateway"),
        (504, b"gateway timeout", Kind.UNCERTAIN, "gateway timeout"),
    ],
)
def test_responses(status: int, body: bytes, kind: Kind, result: str | None) -> None:
    got = outcome.from_response(status, body)
    assert (got.kind, got.http_status, got.result) == (kind, status, result)


def test_the_token_error_says_so() -> None:
    assert (
        outcome.from_response(401, b"").error
        == "HTTP 401: the API rejected the token; check bot.token"
    )


def test_an_answer_past_the_cap_is_uncertain_unless_it_proves_nothing_was_done() -> None:
    assert outcome.from_response(200, b"x" * 10, truncated=True).kind is Kind.UNCERTAIN
    assert outcome.from_response(503, b"x" * 10, truncated=True).kind is Kind.RETRY


def test_every_kind_ends_in_a_status() -> None:
    assert {k: str(v) for k, v in outcome.FINAL.items()} == {
        Kind.SENT: "sent",
        Kind.FAILED: "failed",
        Kind.RETRY: "unsent",
        Kind.UNCERTAIN: "uncertain",
        Kind.CAMPAIGN: "unsent",
    }


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (aiohttp.ClientConnectorError(KEY, OSError(111, "Connection refused")), Kind.RETRY),
        (aiohttp.ConnectionTimeoutError("connect timeout"), Kind.RETRY),
        (aiohttp.SocketTimeoutError("read timeout"), Kind.UNCERTAIN),
        (TimeoutError(), Kind.UNCERTAIN),
        (aiohttp.ServerDisconnectedError(), Kind.UNCERTAIN),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), Kind.UNCERTAIN),
        (aiohttp.ClientPayloadError("cut"), Kind.UNCERTAIN),
        (aiohttp.InvalidURL("http://h:99999/x"), Kind.CAMPAIGN),
    ],
)
def test_failures_without_an_answer(exc: BaseException, kind: Kind) -> None:
    assert outcome.from_exception(exc).kind == kind


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert outcome.parse_retry_after("3") == 3.0
    assert outcome.parse_retry_after(None) is None
    assert outcome.parse_retry_after("soon") is None
    assert outcome.parse_retry_after("99999") == 99999.0  # the engine leaves it unsent
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (outcome.parse_retry_after(later) or 0) <= 31
    assert outcome.from_response(429, b"", {"Retry-After": "2"}).retry_after == 2.0


def test_an_answer_that_is_not_the_apis_is_shown_as_one_short_line() -> None:
    page = b"<html>\n" + b"<p>lorem ipsum dolor</p>\n" * 500 + b"</html>"
    found = outcome.from_response(501, page)
    assert found.kind is Kind.CAMPAIGN
    assert found.result is not None
    assert "\n" not in found.result
    assert len(found.result) == outcome.EXCERPT + 1
    assert found.result.endswith("…")
