"""How one request reaches the API: the engine's seam to the network.

The engine asks a `Transport` to send one request and gets back an `Attempt` (what the API
answered, or how the attempt failed); it never sees HTTP. `AiohttpTransport` is the real one;
the tests use an in-memory one on a fake clock (``tests/fakes.py``), as httpx's
``MockTransport`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Protocol

import aiohttp
from yarl import URL

from runner import outcome
from runner.apis import Request
from runner.model import Delivery
from runner.outcome import Attempt


class Transport(Protocol):
    async def send(self, request: Request, written: Callable[[], None]) -> Attempt:
        """Send ``request`` once; call ``written`` when its headers are on the wire (the
        pacer counts a request from then). Never raises for what the network or the API
        does: every failure is an `Attempt`."""
        ...

    async def close(self) -> None: ...


async def _headers_sent(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: object
) -> None:
    context.trace_request_ctx()


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The answer's body up to `outcome.MAX_ANSWER` bytes, and whether more came."""
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > outcome.MAX_ANSWER:
            response.close()  # never read an endless body; the connection is not reused
            return bytes(body[: outcome.MAX_ANSWER]), True
    return bytes(body), False


class AiohttpTransport:
    """One aiohttp session per campaign of a run, ``delivery.concurrency`` connections."""

    def __init__(self, delivery: Delivery, *, traced: bool = True) -> None:
        # One deadline for the whole attempt: a body that drips a byte at a time cannot keep a
        # request alive past it (sock_read would restart with every byte).
        timeout = aiohttp.ClientTimeout(total=delivery.timeout, connect=delivery.timeout)
        connector = aiohttp.TCPConnector(limit=delivery.concurrency, limit_per_host=0)
        traces = []
        self._traced = traced
        if traced:  # the pacer learns when each request is really written (see pacing.py)
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_headers_sent)
            traces.append(trace)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, trace_configs=traces
        )

    async def send(self, request: Request, written: Callable[[], None]) -> Attempt:
        try:
            async with self._session.request(
                request.method,
                URL(request.url, encoded=True),
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
                trace_request_ctx=written if self._traced else None,
            ) as response:
                body, truncated = await _read_capped(response)
            return outcome.from_response(
                response.status, body, response.headers, truncated=truncated
            )
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            return outcome.from_exception(exc)

    async def close(self) -> None:
        await self._session.close()
