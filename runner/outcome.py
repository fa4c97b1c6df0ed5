"""What one HTTP attempt means, ruled by "never twice": retry only when the API surely did not act.

Pure functions of the answer (or the failure), so that every class of outcome has a unit test.

=================================  ==========  ==============================================
answer                             kind        the recipient ends
=================================  ==========  ==============================================
2xx, ``success: true``             SENT        sent
2xx, ``success: false``            FAILED      failed (the API's ``result`` reported)
4xx JSON of the API (not 401/403)  FAILED      failed
429, 503, refused / DNS / TLS      RETRY       unsent once the retries run out
401, 403                           CAMPAIGN    unsent; the run stops (the token is wrong)
not the API's answer (HTML 404,    CAMPAIGN    unsent; the run stops (a wrong base_url)
3xx, a URL that cannot be used)
500, 502, 504, other 5xx           UNCERTAIN   uncertain: a gateway may answer after the API
no answer in time, dropped after   UNCERTAIN   acted, so it is never resent on its own
writing, 2xx not the API's JSON,
an answer past the size cap
=================================  ==========  ==============================================
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import aiohttp
import orjson

from runner.status import Status


class Kind(Enum):
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    UNCERTAIN = "uncertain"
    CAMPAIGN = "campaign"  # the whole campaign is wrong: every further call would fail too


# The status a recipient ends with when an attempt of this kind is its last.
FINAL: Mapping[Kind, Status] = {
    Kind.SENT: Status.SENT,
    Kind.FAILED: Status.FAILED,
    Kind.RETRY: Status.UNSENT,
    Kind.UNCERTAIN: Status.UNCERTAIN,
    Kind.CAMPAIGN: Status.UNSENT,
}

RETRY_AFTER_CAP = 60.0  # seconds; a longer wait leaves the recipient for a later run
MAX_ANSWER = 64 * 1024  # bytes of an answer read at most
SHOWN = 300  # characters of an answer's text kept for the report
EXCERPT = 120  # characters of an answer that is not the API's JSON, on one line


@dataclass(slots=True)
class Attempt:
    kind: Kind
    http_status: int | None = None
    result: str | None = None
    error: str | None = None
    retry_after: float | None = None
    latency_ms: float | None = None


def from_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    truncated: bool = False,
) -> Attempt:
    """The meaning of an answer; ``truncated``: more than `MAX_ANSWER` bytes came."""
    result, success, is_api = _parse(body, truncated)
    if status in (401, 403):
        return Attempt(
            Kind.CAMPAIGN,
            status,
            result,
            f"HTTP {status}: the API rejected the token; check bot.token",
        )
    if status in (429, 503):
        retry_after = parse_retry_after(headers.get("Retry-After") if headers else None)
        return Attempt(Kind.RETRY, status, result, f"HTTP {status}", retry_after)
    if truncated:
        return Attempt(
            Kind.UNCERTAIN, status, result, f"HTTP {status}: answer over {MAX_ANSWER} bytes"
        )
    if status in (500, 502, 504) or (status >= 500 and is_api):
        # A gateway's 502/504 (and a 500) can come after the API acted.
        return Attempt(Kind.UNCERTAIN, status, result, f"HTTP {status}: the API may have acted")
    if 200 <= status < 300:
        if success is True:
            return Attempt(Kind.SENT, status, result)
        if success is False:
            return Attempt(Kind.FAILED, status, result, "the API answered success: false")
        return Attempt(Kind.UNCERTAIN, status, result, f"HTTP {status} that is not the API's JSON")
    if 400 <= status < 500 and is_api:
        return Attempt(Kind.FAILED, status, result, f"HTTP {status}")
    return Attempt(
        Kind.CAMPAIGN,
        status,
        result,
        f"HTTP {status} that is not the API's answer; check bot.base_url",
    )


def from_exception(exc: BaseException) -> Attempt:
    """A request that got no answer. Only a failure to connect proves nothing was sent."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return Attempt(Kind.CAMPAIGN, error=f"the URL cannot be used: {detail}")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return Attempt(Kind.RETRY, error=f"connection failed: {detail}")
    if isinstance(exc, asyncio.TimeoutError):
        return Attempt(Kind.UNCERTAIN, error=f"no answer in time: {detail}")
    return Attempt(Kind.UNCERTAIN, error=f"connection lost after sending: {detail}")


def _parse(body: bytes, truncated: bool) -> tuple[str | None, bool | None, bool]:
    """(the API's result text, its success flag, whether the body is a JSON object)."""
    if not truncated:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(data, dict):
                result = data.get("result")
                success = data.get("success")
                return (
                    None if result is None else str(result),
                    success if isinstance(success, bool) else None,
                    True,
                )
    # Not the API's: a page of HTML from some other server. A short excerpt on one line says
    # what answered; the rest is noise.
    text = " ".join(body[: EXCERPT * 4].decode("utf-8", "replace").split())
    if len(text) > EXCERPT:
        text = text[:EXCERPT] + "…"
    return (text or None), None, False


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), uncapped."""
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
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)
