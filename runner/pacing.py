"""Per-bot pacing: no window of one second ever holds more request starts than the limit.

A token or leaky bucket lets a full bucket through and then refills it within the same second,
so a server counting arrivals per second sees up to twice the rate at the start. A sliding log
of the last ``rate`` start times cannot: the next start waits until the oldest one in the log
is a full window old. The window is a little longer than a second so that network jitter
between here and the server cannot squeeze two windows' starts into one of the server's
seconds; long runs still sustain rate / window (98.5% of the limit).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

WINDOW = 1.015  # seconds; see the module docstring


class Pacer:
    def __init__(
        self,
        rate: int,
        *,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 request per window")
        self.rate = rate
        self._window = window
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque(maxlen=rate)
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until one more request may start, and count it as started."""
        starts = self._starts
        if not self._lock.locked():
            now = self._clock()
            if len(starts) < self.rate or now - starts[0] >= self._window:
                starts.append(now)  # maxlen drops the oldest
                return
        # Waiters queue up in order behind the lock, so nobody is starved.
        async with self._lock:
            while True:
                now = self._clock()
                if len(starts) < self.rate:
                    break
                wait = starts[0] + self._window - now
                if wait <= 0:
                    break
                await self._sleep(wait)
            starts.append(now)


def shared(bots: list[tuple[tuple[str, str], int]]) -> list[Pacer]:
    """One pacer per distinct bot ((base URL, bot id), rate) of a run, in the order given.

    Campaigns that share a bot share its pacer, at the strictest of their limits.
    """
    rates: dict[tuple[str, str], int] = {}
    for key, rate in bots:
        rates[key] = min(rate, rates.get(key, rate))
    pacers = {key: Pacer(rate) for key, rate in rates.items()}
    return [pacers[key] for key, _ in bots]
