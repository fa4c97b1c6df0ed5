"""The pacer, on a fake clock: no window of the limit's length ever holds more starts."""

from __future__ import annotations

import asyncio

import pytest

from runner.pacing import Pacer, busiest_window, shared


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_a_burst_never_exceeds_the_rate_in_any_second() -> None:
    clock = FakeClock()
    pacer = Pacer(25, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def one() -> None:
        pacer.sent(await pacer.acquire())
        starts.append(clock.now)

    await asyncio.gather(*(one() for _ in range(1000)))
    assert len(starts) == 1000
    assert busiest_window(sorted(starts)) == 25  # a token bucket would allow ~50 here
    sustained = (len(starts) - 1) / (max(starts) - min(starts))
    assert sustained >= 24.25


async def test_releases_are_spread_evenly_over_the_window() -> None:
    clock = FakeClock()
    pacer = Pacer(5, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(6):
        pacer.sent(await pacer.acquire())
        times.append(round(clock.now, 6))
    assert times == [
        0.0,
        0.203,
        0.406,
        0.609,
        0.812,
        1.015,
    ]  # the oldest start must be a full window old


async def test_spaced_requests_never_wait() -> None:
    clock = FakeClock()
    pacer = Pacer(2, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        pacer.sent(await pacer.acquire())
        clock.now += 0.6
    assert clock.sleeps == []


async def test_waiters_are_served_in_order() -> None:
    clock = FakeClock()
    pacer = Pacer(1, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def one(i: int) -> None:
        pacer.sent(await pacer.acquire())
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]


async def test_a_request_written_late_holds_back_the_one_a_window_after_it() -> None:
    """The server counts arrivals: the log keeps when a request was written, not released."""
    clock = FakeClock()
    pacer = Pacer(2, clock=clock, sleep=clock.sleep)
    first = await pacer.acquire()
    pacer.sent(await pacer.acquire())
    clock.now = 0.5
    pacer.sent(first)  # the loop was busy: the first request went out half a second late
    await pacer.acquire()
    assert clock.now == 0.5 + 1.015  # a window after it was written, not after its release


async def test_a_request_not_yet_written_is_waited_for() -> None:
    clock = FakeClock()
    pacer = Pacer(1, clock=clock, sleep=clock.sleep)
    first = await pacer.acquire()

    async def write_later() -> None:
        while clock.now < 2.0:
            await asyncio.sleep(0)
        pacer.sent(first)

    writer = asyncio.ensure_future(write_later())
    await pacer.acquire()
    await writer
    assert clock.now >= 2.0 + 1.015


async def test_a_request_that_never_left_frees_its_place() -> None:
    clock = FakeClock()
    pacer = Pacer(1, clock=clock, sleep=clock.sleep)
    pacer.never_sent(await pacer.acquire())  # e.g. the connection was refused
    await pacer.acquire()
    assert clock.now == 1.015


def test_campaigns_sharing_a_bot_share_one_pacer_at_the_strictest_rate() -> None:
    a, b, c = shared([(("u", "bot1"), 25), (("u", "bot1"), 10), (("u", "bot2"), 25)])
    assert a is b
    assert a.rate == 10
    assert c is not a
    assert c.rate == 25


def test_busiest_window_counts_half_open_windows() -> None:
    assert busiest_window([]) == 0
    assert busiest_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3  # [0, 1) holds 3; 1.0 starts anew
    assert busiest_window([2.0, 0.0, 1.0]) == 1


async def test_a_429_lowers_the_rate_once_per_window_and_holds_the_bot() -> None:
    clock = FakeClock()
    pacer = Pacer(100, clock=clock, sleep=clock.sleep)
    for _ in range(30):  # 30 released within the first third of a second
        pacer.sent(await pacer.acquire())
    before = clock.now
    for _ in range(10):  # ten of the thirty refused: the API allows about twenty
        pacer.slow_down(retry_after=2.0)
    assert pacer.rate == 18.0  # 90% of the 30 released less the 10 refused
    assert pacer.lowest == 18.0
    pacer.sent(await pacer.acquire())
    assert clock.now >= before + 2.0  # Retry-After held the whole bot


async def test_the_rate_climbs_back_but_never_above_the_limit() -> None:
    clock = FakeClock()
    pacer = Pacer(25, clock=clock, sleep=clock.sleep)
    for _ in range(25):
        pacer.sent(await pacer.acquire())
    pacer.slow_down()  # one of 25 refused: the API allows 24; down to 21.6
    assert pacer.rate == pytest.approx(21.6)
    clock.now += 3.0
    pacer.sent(await pacer.acquire())
    assert pacer.rate == pytest.approx(22.8)  # quickly back to 95% of what the API allowed
    clock.now += 10.0
    pacer.sent(await pacer.acquire())
    assert pacer.rate == pytest.approx(23.3)  # then probing slowly above it
    clock.now += 100.0
    pacer.sent(await pacer.acquire())
    assert pacer.rate == 25.0


async def test_a_slowed_pacer_keeps_its_new_rate_in_every_window() -> None:
    clock = FakeClock()
    pacer = Pacer(50, clock=clock, sleep=clock.sleep)
    for _ in range(20):
        pacer.sent(await pacer.acquire())
    pacer.slow_down()  # 90% of the 19 the API allowed: 17.1/s
    starts = []
    for _ in range(40):
        pacer.sent(await pacer.acquire())
        starts.append(clock.now)
    first = [t for t in starts if t < starts[0] + 1.0]
    assert len(first) <= 18  # 17.1/s, and 1/s regained at most within that second
    assert busiest_window(starts) <= 19
    assert pacer.rate > 17.1
