"""In-memory stand-ins for the engine's seams: a transport that answers from a script, and a
run state that keeps claims in a list."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from runner import outcome
from runner.apis import Request
from runner.outcome import Attempt
from runner.state.store import Prior
from runner.status import Status


class MemoryTransport:
    """Answers each request with the next (status, body) of ``script``, then 200 success."""

    def __init__(self, script: list[tuple[int, bytes]] | None = None) -> None:
        self.script = list(script or [])
        self.sent: list[Request] = []

    async def send(self, request: Request, written: Callable[[], None]) -> Attempt:
        written()
        self.sent.append(request)
        status, body = self.script.pop(0) if self.script else (200, b'{"success": true}')
        return outcome.from_response(status, body, {}, truncated=False)

    async def close(self) -> None:
        pass


class MemoryState:
    """Claims and outcomes in lists; a claim is durable at once."""

    has_history = False
    schemes: tuple[tuple[str, ...], ...] = ()

    def __init__(self) -> None:
        self.claims: list[str] = []
        self.outcomes: list[tuple[Any, ...]] = []

    def prior(self, recipient: str) -> Prior | None:  # noqa: ARG002 (no history)
        return None

    async def claim(self, recipient: str, row: int) -> None:  # noqa: ARG002 (kept by key)
        self.claims.append(recipient)

    def record(
        self,
        recipient: str,
        status: Status,
        attempts: int,
        http_status: int | None,
        result: str | None,
        error: str | None,
    ) -> None:
        self.outcomes.append((recipient, status, attempts, http_status, result, error))


class FakeClock:
    """Time that passes only when someone sleeps: a pacer's waits take no real time."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)
