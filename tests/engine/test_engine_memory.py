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
from tests.fakes import MemoryState, MemoryTransport

REQUEST = Request("POST", "http://api.test/bots/1/users/1/send", {}, None)


def job(
    campaign: Campaign, writer: ReportWriter, state: MemoryState, rows: int, **extra: object
) -> Job:
    items = iter(Prepared(n, str(n), REQUEST, {"id": str(n)}) for n in range(1, rows + 1))
    return Job(
        campaign=campaign,
        items=items,
        report=writer,
        state=state,
        pacer=Pacer(1000),
        masker=Masker(),
        **extra,  # type: ignore[arg-type]
    )


def load(tmp_path: Path) -> Campaign:
    from runner import campaign as campaigns

    path = tmp_path / "c.yaml"
    path.write_text(
        "version: 1\nname: c\nbot: {api: v1, id: '1', token: '${TEST_TOKEN}'}\n"
        "audience: {customers: [{id: '1'}]}\n"
        "message: {user_id: '{{ customer.id }}', block_name: B}\n"
        "delivery: {concurrency: 2, retries: 2}\n"
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
