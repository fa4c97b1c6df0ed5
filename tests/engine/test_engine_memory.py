"""The engine through its seams, in memory: no server, no sockets, time on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import campaign as campaigns
from runner.apis import Request
from runner.engine import Engine, Job, JobRun
from runner.errors import StateLost
from runner.pacing import Pacer
from runner.pipeline import Prepared
from runner.report import ReportWriter
from runner.secrets import Masker
from runner.status import Status
from tests.fakes import FakeClock, MemoryState, MemoryTransport

REQUEST = Request("POST", "http://api.test/bots/1/users/1/send", {}, None)
REFUSED = (429, b'{"success": false, "result": "slow down"}')


@dataclass
class Ran:
    """What one in-memory run did: its state of the run, and what reached the 'API'."""

    run: JobRun
    state: MemoryState
    transport: MemoryTransport
    clock: FakeClock = field(default_factory=FakeClock)
    report: ReportWriter | None = None


async def run(
    tmp_path: Path,
    rows: int,
    *,
    script: list[tuple[int, bytes]] | None = None,
    rate: int = 1000,
    delivery: str = "",
    clock: FakeClock | None = None,
    state: MemoryState | None = None,
    **job: Any,
) -> Ran:
    """Send ``rows`` recipients through the engine, answered by ``script`` (then 200s)."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "version: 1\nname: c\nbot: {api: v1, id: '1', token: '${TEST_TOKEN}'}\n"
        "audience: {customers: [{id: '1'}]}\n"
        "message: {user_id: '{{ customer.id }}', block_name: B}\n"
        f"delivery: {{concurrency: 2, retries: 2{delivery}}}\n"
    )
    clock, state = clock or FakeClock(), state or MemoryState()
    transport = MemoryTransport(script)
    writer = ReportWriter(tmp_path / "report")
    engine = Engine(
        [
            Job(
                campaign=campaigns.load(path),
                items=iter(
                    Prepared(n, str(n), REQUEST, {"id": str(n)}) for n in range(1, rows + 1)
                ),
                report=writer,
                state=state,
                pacer=Pacer(rate, clock=clock.monotonic, sleep=clock.sleep),
                masker=Masker(),
                **job,
            )
        ],
        transport=lambda _: transport,
        clock=clock,
        backoff_base=0.0001,
        backoff_cap=0.0001,
        seed=1,
    )
    await engine.run()
    writer.close()
    return Ran(engine.runs[0], state, transport, clock, writer)


async def test_a_503_is_retried_and_each_attempt_claimed(tmp_path: Path) -> None:
    ran = await run(tmp_path, 1, script=[(503, b"busy")])
    assert len(ran.transport.sent) == 2
    # The retry's claim proves the state still holds the campaign before it is sent.
    assert ran.state.claims == ["1", "1"]
    assert ran.state.outcomes == [("1", Status.SENT, 2, 200, None, None)]


class LostAfterFirstClaim(MemoryState):
    """A state whose connection (and with it the campaign's lock and the bot's lease) is gone
    after the first claim: another process may hold the campaign now."""

    async def claim(self, recipient: str, row: int) -> None:
        if self.claims:
            raise StateLost("the state database stopped answering")
        await super().claim(recipient, row)


async def test_a_retry_is_not_sent_once_the_state_is_lost(tmp_path: Path) -> None:
    """A worker paused while its connection was cut sent its retries on waking, beside the
    worker that took over the bot: 27 in a second at a limit of 25."""
    ran = await run(tmp_path, 1, script=[(503, b"busy")], state=LostAfterFirstClaim())
    assert len(ran.transport.sent) == 1
    assert ran.run.aborted == "the state database stopped answering"
    [(recipient, status, attempts, http_status, _, error)] = ran.state.outcomes
    assert (recipient, status, attempts, http_status) == ("1", Status.UNSENT, 1, 503)
    assert str(error).endswith("; the state was lost before its retry")


async def test_a_spent_budget_claims_nobody_more_and_hands_rows_back(tmp_path: Path) -> None:
    ran = await run(tmp_path, 10, budget=0.0)
    assert ran.run.budget_spent
    assert ran.transport.sent == []
    assert ran.state.claims == []  # waiting for the pacer is not being in flight
    assert sorted(item.row for item in ran.run.rest()) == list(range(1, 11))


async def test_an_api_that_refuses_forever_costs_a_bounded_number_of_attempts(
    tmp_path: Path,
) -> None:
    ran = await run(tmp_path, 5, script=[REFUSED] * 1000)
    assert ran.run.aborted is not None
    assert ran.run.aborted.startswith("the API kept refusing requests (429) after 23 attempts")
    assert len(ran.transport.sent) <= 2 * 23  # two workers, one recipient each, then the stop
    assert {status for _, status, *_ in ran.state.outcomes} == {Status.UNSENT}


async def test_an_api_that_refuses_for_longer_than_allowed_stops_the_run(tmp_path: Path) -> None:
    ran = await run(tmp_path, 5, script=[REFUSED] * 1000, delivery=", rate_limited_for: 30")
    assert ran.run.aborted == (
        "the API kept refusing requests (429) for 30 s; the run stopped and nobody was "
        "marked failed: run again later"
    )
    assert len(ran.transport.sent) <= 2 * 23
    assert ran.clock.now - 1_800_000_000.0 < 40  # stopped soon after the 30 s allowed


async def test_the_send_window_closing_mid_run_stops_starting_requests(tmp_path: Path) -> None:
    ran = await run(tmp_path, 80, rate=10, deadline=1_800_000_000.0 + 4.0)
    assert ran.run.window_closed
    assert 35 <= len(ran.transport.sent) <= 45  # four seconds at ten a second
    assert len(ran.state.claims) == len(ran.transport.sent)  # nobody claimed who was not sent
    assert len(ran.transport.sent) + sum(1 for _ in ran.run.rest()) == 80


class SlowFirstClaim(MemoryState):
    """A state whose first commit takes a while (a cold database), as on a real first run."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._clock = clock

    async def claim(self, recipient: str, row: int) -> None:
        if not self.claims:
            await self._clock.sleep(0.03)
        await super().claim(recipient, row)


async def test_a_short_paced_run_never_reports_a_rate_above_its_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    ran = await run(tmp_path, 5, rate=25, clock=clock, state=SlowFirstClaim(clock))
    assert len(ran.transport.sent) == 5
    assert ran.report is not None
    rate = ran.report.tally.requests_per_s()
    assert rate is not None
    assert 20 < rate <= 25
