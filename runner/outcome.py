"""What one HTTP attempt means, ruled by "never twice": retry only when the API surely did not act.

Pure functions of the answer (or the failure) so that every class of outcome has a unit test.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp
import orjson

SENT: Final = "sent"
FAILED: Final = "failed"  # permanent: the API said no
RETRY: Final = "retry"  # the API surely did not act: 429, 5xx, connection failed before sending
UNCERTAIN: Final = "uncertain"  # sent, and no answer: it may have been delivered
FATAL: Final = "fatal"  # the token was rejected: every further call would fail too

RETRY_AFTER_CAP = 300.0


@dataclass(slots=True)
class Attempt:
    kind: str
    http_status: int | None = None
    result: str | None = None
    error: str | None = None
    retry_after: float | None = None
    latency_ms: float | None = None


def from_response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Attempt:
    result, success = _parse(body)
    if status in (401, 403):
        return Attempt(FATAL, status, result, f"HTTP {status}: the API rejected the token")
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(headers.get("Retry-After") if headers else None)
        return Attempt(RETRY, status, result, f"HTTP {status}", retry_after)
    if 200 <= status < 300:
        if success is True:
            return Attempt(SENT, status, result)
        if success is False:
            return Attempt(FAILED, status, result, "the API answered success: false")
        # The API took the request and answered something else: it may have acted.
        return Attempt(UNCERTAIN, status, result, "unexpected answer: no JSON success field")
    if 400 <= status < 500:
        return Attempt(FAILED, status, result, f"HTTP {status}")
    return Attempt(FAILED, status, result, f"unexpected HTTP {status}")


def from_exception(exc: BaseException) -> Attempt:
    """A request that got no answer. Only a failure to connect proves nothing was sent."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return Attempt(RETRY, error=f"connection failed: {detail}")
    if isinstance(exc, asyncio.TimeoutError):
        return Attempt(UNCERTAIN, error=f"no answer in time: {detail}")
    return Attempt(UNCERTAIN, error=f"connection lost after sending: {detail}")


def _parse(body: bytes) -> tuple[str | None, bool | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        return (text or None), None
    if not isinstance(data, dict):
        return None, None
    result = data.get("result")
    success = data.get("success")
    return (None if result is None else str(result)), (
        success if isinstance(success, bool) else None
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)
