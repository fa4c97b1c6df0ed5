"""The engine through its seams, in memory: no server, no sockets."""

from __future__ import annotations

from pathlib import Path

from runner.apis import Request
from runner.engine import Engine, Job
from runner.model import Campaign
from runner.pacing import Pacer
from runner.pipeline import Prepared
from runner.report import ReportWriter
from runner.secrets import Masker
from runner.status import Status
from tests.fakes import FakeClock, MemoryState, MemoryTransport

REQUEST = Request("POST", "http://api.test/bots/1/users/1/send", {}, None)


def job(
    campaign: Campaign,
    writer: ReportWriter,
    state: MemoryState,
    rows: int,
    clock: FakeClock | None = None,
    rate: int = 1000,
    **extra: object,
) -> Job:
    items = iter(Prepared(n, str(n), REQUEST, {"id": str(n)}) for n in range(1, rows + 1))
    return Job(
        campaign=campaign,
        items=items,
        report=writer,
        state=state,
        pacer=Pacer(rate)
        if clock is None
        else Pacer(rate, clock=clock.monotonic, sleep=clock.sleep),
        masker=Masker(),
        **extra,  # type: ignore[arg-type]
    )


def load(tmp_path: Path, delivery: str = "") -> Campaign:
    from runner import campaign as campaigns

    path = tmp_path / "c.yaml"
    path.write_text(
        "version: 1\nname: c\nbot: {api: v1, id: '1', token: '${TEST_TOKEN}'}\n"
        "audience: {customers: [{id: '1'}]}\n"
        "message: {user_id: '{{ customer.id }}', block_name: B}\n"
        f"delivery: {{concurrency: 2, retries: 2{delivery}}}\n"
    )
    return campaigns.load(path)


async def test_a_503_is_retried_and_the_recipient_claimed_once(tmp_path: Path) -> None:
    state = MemoryState()
    transport = MemoryTransport([(503, b"busy")])
    writer = ReportWriter(tmp_path / "report")
    engine = Engine(
        [job(load(tmp_path), writer, state, 1)],
        transport=lambda _: transport,
        backoff_base=0.001,
        seed=1,
    )
    await engine.run()
    writer.close()
    assert len(transport.sent) == 2
    assert state.claims == ["1"]  # the retry is not a second claim
    assert state.outcomes == [("1", Status.SENT, 2, 200, None, None)]


async def test_a_spent_budget_claims_nobody_more_and_hands_rows_back(tmp_path: Path) -> None:
    state = MemoryState()
    transport = MemoryTransport()
    writer = ReportWriter(tmp_path / "report")
    engine = Engine(
        [job(load(tmp_path), writer, state, 10, budget=0.0)],
        transport=lambda _: transport,
    )
    await engine.run()
    writer.close()
    run = engine.runs[0]
    assert run.budget_spent
    assert transport.sent == []
    assert state.claims == []  # waiting for the pacer is not being in flight
    assert sorted(item.row for item in run.rest()) == list(range(1, 11))


REFUSED = (429, b'{"success": false, "result": "slow down"}')


async def test_an_api_that_refuses_forever_costs_a_bounded_number_of_attempts(
    tmp_path: Path,
) -> None:
    state = MemoryState()
    transport = MemoryTransport([REFUSED] * 1000)
    writer = ReportWriter(tmp_path / "report")
    clock = FakeClock()
    engine = Engine(
        [job(load(tmp_path), writer, state, 5, clock)],
        transport=lambda _: transport,
        clock=clock,
        backoff_base=0.0001,
        backoff_cap=0.0001,
    )
    await engine.run()
    writer.close()
    run = engine.runs[0]
    assert run.aborted is not None
    assert run.aborted.startswith("the API kept refusing requests (429) after 23 attempts")
    assert len(transport.sent) <= 2 * 23  # two workers, one recipient each, then the stop
    assert {status for _, status, *_ in state.outcomes} == {Status.UNSENT}


async def test_an_api_that_refuses_for_longer_than_allowed_stops_the_run(tmp_path: Path) -> None:
    state = MemoryState()
    transport = MemoryTransport([REFUSED] * 1000)
    writer = ReportWriter(tmp_path / "report")
    clock = FakeClock()
    engine = Engine(
        [job(load(tmp_path, ", rate_limited_for: 30"), writer, state, 5, clock)],
        transport=lambda _: transport,
        clock=clock,
        backoff_base=0.0001,
        backoff_cap=0.0001,
    )
    await engine.run()
    writer.close()
    aborted = engine.runs[0].aborted
    assert aborted == (
        "the API kept refusing requests (429) for 30 s; the run stopped and nobody was "
        "marked failed: run again later"
    )
    assert len(transport.sent) <= 2 * 23
    assert clock.now - 1_800_000_000.0 < 40  # stopped soon after the 30 s allowed


async def test_the_send_window_closing_mid_run_stops_starting_requests(tmp_path: Path) -> None:
    state = MemoryState()
    transport = MemoryTransport()
    clock = FakeClock()
    writer = ReportWriter(tmp_path / "report")
    engine = Engine(
        [job(load(tmp_path), writer, state, 80, clock, rate=10, deadline=clock.now + 4.0)],
        transport=lambda _: transport,
        clock=clock,
    )
    await engine.run()
    writer.close()
    run = engine.runs[0]
    assert run.window_closed
    assert 35 <= len(transport.sent) <= 45  # four seconds at ten a second
    assert len(state.claims) == len(transport.sent)  # nobody claimed who was not sent
    assert len(transport.sent) + sum(1 for _ in run.rest()) == 80
