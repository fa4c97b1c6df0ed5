"""Per-bot pacing: no window of one second ever holds more requests than the limit.

A token or leaky bucket lets a full bucket through and then refills it within the same second,
so a server counting arrivals per second sees up to twice the rate at the start. A sliding log
of the last ``rate`` requests cannot: the next one waits until the oldest in the log is a full
window old.

What the server counts is when it handles a request, not when the pacer let it go. A busy
event loop (forty bots at once) can write a request to the socket well after its release, so
each request's time in the log is corrected to the moment its headers were written, and a
request still waiting to be written holds back the one that would follow it by a window. A
busy server handles requests late and in bunches, so releases are also spread evenly, one per
window / rate, instead of a full window's worth at once: a burst of 25 per bot from 40 bots
queued at the server for 0.2 s and came out as 39 in one of its seconds; spread, the same load
stays within 25. The window is a little longer than a second so that network jitter cannot
squeeze two windows into one of the server's seconds; long runs sustain rate / window (98.5%
of the limit).

When the API pushes back (a 429), the bot's real limit is lower than ``rate_limit`` right now:
it is about what the pacer released in the last window less the requests refused (each 429 of
one storm lowers the estimate by one), and the pacer goes down to 90% of it, holds the whole
bot for the answer's
``Retry-After``, and then climbs back by one request/s every second (AIMD), never above
``rate_limit``. It remembers the rate at which the API pushed back: within 5% of that ceiling
it climbs twenty times slower, so against an API that allows less than the campaign asks the
rate settles just under the real limit, with a rare 429 to probe it, instead of sawing into
it (each 429 holds the whole bot for its Retry-After).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

WINDOW = 1.015  # seconds; see the module docstring
# Up to this rate each request's write time is traced. Above it (a private deployment, a
# benchmark) release times stand: tracing every request costs a few percent of throughput,
# and the even spreading still keeps bursts out.
TRACED_UP_TO = 1000
_RECHECK = 0.002  # seconds between looks at a request that is not written yet
BACK_OFF = 0.9  # of the rate actually released in the last window, after a 429
RECOVERY = 1.0  # requests/s regained per second without a 429
PROBE = 0.05  # requests/s regained per second near the rate the API last pushed back at
HOLD_CAP = 60.0  # seconds a Retry-After may hold a bot


class Slot:
    """One request's place in the log: its time, final once the request is on the wire."""

    __slots__ = ("sent", "t")

    def __init__(self, t: float) -> None:
        self.t = t
        self.sent = False


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
        self.limit = rate  #: the configured rate_limit
        self.rate = float(rate)  #: the rate now: lower than the limit after a 429
        self.lowest = float(rate)  #: the lowest rate of this run
        self._window = window
        self._clock = clock
        self._sleep = sleep
        self.traced = rate <= TRACED_UP_TO
        self._log: deque[Slot] = deque(maxlen=rate)
        self._spacing = window / rate
        self._next = 0.0  # the earliest moment of the next release
        self._hold = 0.0  # no release before this moment (Retry-After)
        self._changed = clock()  # when the rate last went down or up
        self._ceiling = float(rate)  # the API's real limit as the last 429s showed it
        self._storm = False  # 429s are arriving: later ones of the same window refine it
        self._lock = asyncio.Lock()

    def try_acquire(self) -> Slot | None:
        """A place for one more request now, or None (then await `acquire`)."""
        log = self._log
        if not self._lock.locked():
            now = self._clock()
            if self.rate < self.limit:
                self._recover(now)
            n = int(self.rate)
            if (
                now >= self._next
                and now >= self._hold
                and (len(log) < n or (log[-n].sent and now - log[-n].t >= self._window))
            ):
                return self._release(now)
        return None

    def slow_down(self, retry_after: float | None = None) -> None:
        """The API answered 429: lower the rate, and hold the bot for ``retry_after``."""
        now = self._clock()
        if retry_after:
            self._hold = max(self._hold, now + min(retry_after, HOLD_CAP))
        if self._storm and now - self._changed < self._window:
            self._ceiling = max(1.0, self._ceiling - 1)  # one more refused in the same storm
        else:
            released = sum(1 for slot in self._log if now - slot.t < self._window)
            self._ceiling = max(1.0, min(self.rate, released or self.rate) - 1)
            self._storm = True
            self._changed = now
        self.rate = max(1.0, self._ceiling * BACK_OFF)
        self.lowest = min(self.lowest, self.rate)
        self._spacing = self._window / self.rate

    def _recover(self, now: float) -> None:
        near = self.rate >= self._ceiling * 0.95
        gained = (now - self._changed) * (PROBE if near else RECOVERY)
        if gained >= 0.05:
            top = float(self.limit) if near else max(self._ceiling * 0.95, self.rate)
            self.rate = min(float(self.limit), top, self.rate + gained)
            self._spacing = self._window / self.rate
            self._changed = now
            self._storm = False

    async def acquire(self) -> Slot:
        """Wait until one more request may go; the caller marks it `sent` once written."""
        slot = self.try_acquire()
        if slot is not None:
            return slot
        log = self._log
        # Waiters queue up in order behind the lock, so nobody is starved.
        async with self._lock:
            while True:
                now = self._clock()
                if self.rate < self.limit:
                    self._recover(now)
                start = max(self._next, self._hold)
                if now < start:
                    await self._sleep(start - now)
                    continue
                n = int(self.rate)
                if len(log) < n:
                    break
                oldest = log[-n]
                if not oldest.sent:
                    await self._sleep(_RECHECK)
                    continue
                wait = oldest.t + self._window - now
                if wait <= 0:
                    break
                await self._sleep(wait)
            return self._release(now)

    def _release(self, now: float) -> Slot:
        slot = Slot(now)
        slot.sent = not self.traced
        self._log.append(slot)  # maxlen drops the oldest
        # Keep to the schedule when a timer fired a little late (else every late wake-up would
        # slow the rate); after a pause, start it again from now rather than allow a burst.
        on_time = now - self._next < self._spacing
        self._next = (self._next if on_time else now) + self._spacing
        return slot

    def sent(self, slot: Slot) -> None:
        """The request of ``slot`` is written: its time is now."""
        slot.t = self._clock()
        slot.sent = True

    @staticmethod
    def never_sent(slot: Slot) -> None:
        """The request of ``slot`` failed before it was written: it reached no server."""
        slot.sent = True


def shared(bots: list[tuple[tuple[str, ...], int]]) -> list[Pacer]:
    """One pacer per distinct bot ((base URL, bot id), rate) of a run, in the order given.

    Campaigns that share a bot share its pacer, at the strictest of their limits.
    """
    rates: dict[tuple[str, ...], int] = {}
    for key, rate in bots:
        rates[key] = min(rate, rates.get(key, rate))
    pacers = {key: Pacer(rate) for key, rate in rates.items()}
    return [pacers[key] for key, _ in bots]


def busiest_window(times: list[float], window: float = 1.0) -> int:
    """The most events in any half-open window [t, t + window): what the pacer bounds."""
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window:
            first += 1
        best = max(best, last - first + 1)
    return best
