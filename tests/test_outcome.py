"""Every class of outcome, ruled by "never twice"."""

from __future__ import annotations

import email.utils
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from runner import outcome

KEY: Any = SimpleNamespace(host="127.0.0.1", port=1, ssl=True, is_ssl=False)


@pytest.mark.parametrize(
    ("status", "body", "kind", "result"),
    [
        (200, b'{"success": true, "result": "ok"}', outcome.SENT, "ok"),
        (
            200,
            b'{"success": false, "result": "user blocked the bot"}',
            outcome.FAILED,
            "user blocked the bot",
        ),
        (200, b"<html>", outcome.UNCERTAIN, "<html>"),  # it took the request: maybe sent
        (200, b'{"result": "?"}', outcome.UNCERTAIN, "?"),
        (400, b'{"success": false, "result": "bad block"}', outcome.FAILED, "bad block"),
        (404, b"not found", outcome.FAILED, "not found"),
        (401, b'{"success": false, "result": "bad token"}', outcome.FATAL, "bad token"),
        (403, b"", outcome.FATAL, None),
        (429, b'{"success": false}', outcome.RETRY, None),
        (500, b"oops", outcome.RETRY, "oops"),
        (503, b'{"success": false, "result": "busy"}', outcome.RETRY, "busy"),
        (301, b"", outcome.FAILED, None),
    ],
)
def test_responses(status: int, body: bytes, kind: str, result: str | None) -> None:
    got = outcome.from_response(status, body)
    assert (got.kind, got.http_status, got.result) == (kind, status, result)


def test_the_token_error_says_so() -> None:
    assert outcome.from_response(401, b"").error == "HTTP 401: the API rejected the token"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (aiohttp.ClientConnectorError(KEY, OSError(111, "Connection refused")), outcome.RETRY),
        (aiohttp.ConnectionTimeoutError("connect timeout"), outcome.RETRY),
        (aiohttp.SocketTimeoutError("read timeout"), outcome.UNCERTAIN),
        (TimeoutError(), outcome.UNCERTAIN),
        (aiohttp.ServerDisconnectedError(), outcome.UNCERTAIN),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), outcome.UNCERTAIN),
        (aiohttp.ClientPayloadError("cut"), outcome.UNCERTAIN),
    ],
)
def test_failures_without_an_answer(exc: BaseException, kind: str) -> None:
    assert outcome.from_exception(exc).kind == kind


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert outcome.parse_retry_after("3") == 3.0
    assert outcome.parse_retry_after(None) is None
    assert outcome.parse_retry_after("soon") is None
    assert outcome.parse_retry_after("99999") == outcome.RETRY_AFTER_CAP
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (outcome.parse_retry_after(later) or 0) <= 31
    assert outcome.from_response(429, b"", {"Retry-After": "2"}).retry_after == 2.0
