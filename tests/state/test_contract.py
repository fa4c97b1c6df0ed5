"""The state's promises, checked once per backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from runner.errors import LockHeld, StateError, StateLost
from runner.state import Location, journal, locate
from runner.state.core import read_status
from runner.state.filelock import CampaignLock
from runner.state.sqlite import connect
from runner.state.store import IN_FLIGHT_AT_STOP, Prior
from runner.status import Status
from tests.helpers import open_run


async def test_claims_and_outcomes_are_durable_and_read_back(location: Location) -> None:
    s = await open_run(location, "c", "run-1")
    await s.claim("u1", 1)
    await s.claim("u2", 2)
    s.record("u1", Status.SENT, 1, 200, "ok", None)
    s.record("u2", Status.FAILED, 2, 400, "bad", "HTTP 400")
    await s.close()
    again = await open_run(location, "c", "run-2")
    assert again.prior("u1") == Prior(Status.SENT, 1, 200, "ok", None)
    assert again.prior("u2") == Prior(Status.FAILED, 2, 400, "bad", "HTTP 400")
    assert again.prior("u3") is None
    await again.close()


async def test_a_claim_is_durable_before_it_returns(location: Location) -> None:
    s = await open_run(location, "c", "run-1")
    await s.claim("u1", 1)
    # Read from elsewhere, as another process would, while the run goes on.
    report = await read_status(location, "c")
    assert report["counts"]["sending"] == 1
    await s.close()


async def test_what_was_in_flight_at_a_crash_becomes_uncertain(location: Location) -> None:
    s = await open_run(location, "c", "run-1")
    await s.claim("u1", 1)
    s.abandon()  # as if the process had died with u1 in flight
    again = await open_run(location, "c", "run-2")
    assert again.prior("u1") == Prior(Status.UNCERTAIN, 0, None, None, IN_FLIGHT_AT_STOP)
    await again.close()


async def test_campaigns_in_one_state_are_apart(location: Location) -> None:
    a = await open_run(location, "a", "r")
    await a.claim("u1", 1)
    a.record("u1", Status.SENT, 1, 200, None, None)
    await a.close()
    b = await open_run(location, "b", "r")
    assert b.prior("u1") is None
    await b.close()


async def test_many_concurrent_claims_are_batched(location: Location) -> None:
    s = await open_run(location, "c", "r")
    await asyncio.gather(*(s.claim(f"u{i}", i) for i in range(500)))
    for i in range(500):
        s.record(f"u{i}", Status.SENT, 1, 200, None, None)
    await s.close()
    assert (await read_status(location, "c"))["counts"]["sent"] == 500


async def test_one_batch_at_a_time_and_each_claim_waits_for_its_own(
    location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches never overlap: one still in the store's hands when a later one commits could
    be lost with outcomes the run knew, and people sent would be taken for ones in flight."""
    s = await open_run(location, "c", "r")
    real = s.store.write
    in_flight = most = 0

    async def slow_write(*args: Any) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.005)  # a slow round trip: claims queue meanwhile
            await real(*args)
        finally:
            in_flight -= 1

    monkeypatch.setattr(s.store, "write", slow_write)

    async def one(i: int) -> None:
        await asyncio.sleep(i * 0.0005)
        await s.claim(f"u{i}", i)
        # Durable once awaited.
        assert (await read_status(location, "c"))["counts"]["sending"] >= 1
        s.record(f"u{i}", Status.SENT, 1, 200, None, None)

    await asyncio.gather(*(one(i) for i in range(60)))
    await s.close()
    assert most == 1
    assert (await read_status(location, "c"))["counts"]["sent"] == 60


async def test_a_second_run_of_a_campaign_is_refused_while_the_first_holds_it(
    location: Location,
) -> None:
    first = await open_run(location, "c", "r1")
    with pytest.raises(
        LockHeld, match=rf"campaign c is already running \(host \S+ pid {os.getpid()} since"
    ):
        await open_run(location, "c", "r2")
    other = await open_run(location, "other", "r1")  # other campaigns are not blocked
    await other.close()
    await first.close()
    again = await open_run(location, "c", "r3")
    await again.close()


async def test_a_lock_left_by_a_dead_process_does_not_block(location: Location) -> None:
    first = await open_run(location, "c", "r1")
    first.abandon()
    await asyncio.sleep(0.1)  # the server notices the dropped connection
    again = await open_run(location, "c", "r2")
    await again.close()


def _hold_lock(
    path: str, ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event
) -> None:
    lock = CampaignLock(Path(path), "c")
    lock.acquire()
    ready.set()
    done.wait(10)


def test_a_file_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), ready, done))
    holder.start()
    assert ready.wait(20)
    with pytest.raises(LockHeld, match=r"campaign c is already running \(host \S+ pid \d+ since"):
        CampaignLock(path, "c").acquire()
    holder.kill()
    holder.join(10)
    lock = CampaignLock(path, "c")
    lock.acquire()
    lock.release()


def test_the_default_state_follows_the_campaign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "campaigns" / "deep").mkdir(parents=True)
    campaign = repo / "campaigns" / "deep" / "sale.yaml"
    expected = Location(path=repo / ".campaign-state" / "sale.sqlite3")
    for cwd, given in [
        (tmp_path, campaign),
        (repo, Path("campaigns/deep/sale.yaml")),
        (repo / "campaigns" / "deep", Path("sale.yaml")),
        (repo / "campaigns", Path("../campaigns/deep/../deep/sale.yaml")),
    ]:
        monkeypatch.chdir(cwd)
        assert locate(None, given, "sale", False) == expected
    assert locate(None, campaign, "sale", True) == Location(
        path=repo / ".campaign-state" / "sale.sandbox.sqlite3"
    )
    outside = tmp_path / "loose" / "sale.yaml"
    outside.parent.mkdir()
    assert locate(None, outside, "sale", False) == Location(
        path=outside.parent / ".campaign-state" / "sale.sqlite3"
    )


def test_the_state_can_be_named_by_flag_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = tmp_path / "sale.yaml"
    monkeypatch.setenv("CAMPAIGN_STATE", "postgresql://u:pw@db:5432/x")
    found = locate(None, campaign, "sale", False)
    assert found == Location(url="postgresql://u:pw@db:5432/x")
    assert str(found) == "postgresql://u:***@db:5432/x"
    # A rehearsal never touches the shared state.
    assert (
        locate(None, campaign, "sale", True).path
        == tmp_path / ".campaign-state" / "sale.sandbox.sqlite3"
    )
    assert locate("x/s.db", campaign, "sale", False) == Location(path=Path("x/s.db"))
    assert locate("x/s.db", campaign, "sale", True) == Location(path=Path("x/s.sandbox.db"))


def test_an_unusable_state_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite3"
    bad.write_text("this is not a database" * 100)
    with pytest.raises(StateError, match="cannot use this state file"):
        connect(bad)


async def test_an_unreachable_database_is_a_clear_error_with_the_password_masked() -> None:
    url = "postgresql://postgres:hunter22@127.0.0.1:1/test"
    with pytest.raises(StateError) as caught:
        await open_run(Location(url=url), "c", "r")
    assert "hunter22" not in str(caught.value)
    assert str(caught.value).startswith("postgresql://postgres:***@127.0.0.1:1/test: cannot use")


async def test_a_torn_journal_line_is_ignored_and_folding_twice_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    s = await open_run(Location(path=path), "c", "run-1")
    await s.claim("u1", 1)
    s.record("u1", Status.SENT, 1, 200, "ok", None)
    await s.claim("u2", 2)
    s.abandon()
    log = journal.path_for(path, "c")
    saved = log.read_bytes()
    with log.open("ab") as handle:
        handle.write(b'[2, "u2", "se')  # the process died in the middle of a write
    again = await open_run(Location(path=path), "c", "run-2")
    assert again.prior("u1") == Prior(Status.SENT, 1, 200, "ok", None)
    prior = again.prior("u2")
    assert prior is not None
    assert prior.status == Status.UNCERTAIN
    await again.close()
    log.write_bytes(saved)  # the same journal again, as if its removal had been lost
    third = await open_run(Location(path=path), "c", "run-3")
    assert third.prior("u1") == Prior(Status.SENT, 1, 200, "ok", None)
    await third.close()


async def test_a_damaged_journal_is_kept_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    s = await open_run(Location(path=path), "c", "run-1")
    await s.claim("u1", 1)
    await s.claim("u2", 2)
    s.abandon()
    log = journal.path_for(path, "c")
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + b"\x00garbage\n" + b"".join(lines[1:]))
    with pytest.raises(StateError, match=r"the journal is damaged at line 2; it was kept"):
        await open_run(Location(path=path), "c", "run-2")
    assert log.exists()
    with pytest.raises(StateError, match="damaged"):
        await read_status(Location(path=path), "c")


async def test_status_reads_a_read_only_state_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "s.sqlite3"
    s = await open_run(Location(path=path), "c", "r")
    await s.claim("u1", 1)
    s.record("u1", Status.SENT, 1, 200, None, None)
    await s.close()
    folder.chmod(0o555)
    try:
        assert (await read_status(Location(path=path), "c"))["counts"]["sent"] == 1
    finally:
        folder.chmod(0o755)


async def test_once_the_connection_holding_the_lock_is_gone_no_claim_commits(
    postgres_url: str,
) -> None:
    """The campaign's lock and its claims share one connection: when the server drops it, the
    lock is free for another worker at once, so no claim of this run may commit after it."""
    import asyncpg

    s = await open_run(Location(url=postgres_url), "c", "r")
    await s.claim("u1", 1)
    killer = await asyncpg.connect(postgres_url)
    try:
        killed = await killer.fetchval(
            "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a "
            "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND EXISTS "
            "(SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')"
        )
        assert killed == 1
        with pytest.raises(StateLost):
            await s.claim("u2", 2)
        claimed = await killer.fetchval(
            "SELECT count(*) FROM campaign_runner_recipients WHERE recipient = 'u2'"
        )
    finally:
        await killer.close()
    s.abandon()
    assert claimed == 0


async def test_a_first_run_on_a_new_state_database_looks_each_outcome_up_by_its_key(
    postgres_url: str,
) -> None:
    """The batch's plan is made while a new state's table is empty; it must still find each
    outcome's row by its key, not read the campaign's rows for every batch (which made a
    first big run slower with every batch)."""
    import asyncpg

    s = await open_run(Location(url=postgres_url), "c", "r")
    outcomes = 0
    for batch in range(60):  # well past the five runs after which a connection keeps a plan
        names = [f"u{batch}-{i}" for i in range(10)]
        await asyncio.gather(*(s.claim(name, i) for i, name in enumerate(names)))
        for name in names:
            s.record(name, Status.SENT, 1, 200, None, None)
        outcomes += len(names)
    await s.close()
    watcher = await asyncpg.connect(postgres_url)
    try:
        for _ in range(100):  # a backend's counters reach the view once it has gone
            found = await watcher.fetchrow(
                "SELECT n_tup_upd, idx_tup_fetch FROM pg_stat_user_tables "
                "WHERE relname = 'campaign_runner_recipients'"
            )
            if found["n_tup_upd"] >= outcomes:
                break
            await asyncio.sleep(0.05)
            await watcher.execute("SELECT pg_stat_clear_snapshot()")
    finally:
        await watcher.close()
    assert found["n_tup_upd"] == outcomes
    # One row fetched per outcome (a join would have read thousands per batch).
    assert found["idx_tup_fetch"] <= outcomes + 100


async def test_a_bots_lease_passes_on_only_a_pacing_window_after_its_holder_let_go(
    postgres_url: str,
) -> None:
    """Two processes taking turns with one bot: the last requests of one and the first of the
    next must never share one of the API's seconds, whether the holder closed or died."""
    from runner import pacing
    from runner.secrets import Masker
    from runner.state.core import open_store

    location = Location(url=postgres_url)
    said: list[str] = []
    first = await open_store(location, Masker([]))
    await first.lease_bots(["bot"], said.append)
    second = await open_store(location, Masker([]))
    let_go = asyncio.get_running_loop().time()
    waiting = asyncio.ensure_future(second.lease_bots(["bot"], said.append))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # held: the second waits for its turn
    await first.close()
    await waiting
    assert asyncio.get_running_loop().time() - let_go >= pacing.WINDOW
    assert said == [
        "waiting: another process sharing this state is sending with the same bot; "
        "processes take turns with a bot so that its limit holds"
    ]
    second.abandon()  # dies holding the lease: when it let go is unknown, so a whole window
    await asyncio.sleep(0.1)  # the server notices the dropped connection
    third = await open_store(location, Masker([]))
    started = asyncio.get_running_loop().time()
    await third.lease_bots(["bot"], said.append)
    assert asyncio.get_running_loop().time() - started >= pacing.WINDOW
    await third.close()


async def test_a_state_says_cheaply_whether_it_mentions_a_campaign(location: Location) -> None:
    """Asked of every state of a repository for each campaign new to the chosen one: a
    recipient, a run or a pause is a mention; another campaign's are not."""
    from runner.secrets import Masker
    from runner.state.core import open_store
    from runner.state.store import Control

    s = await open_run(location, "claimed", "r")
    await s.claim("u1", 1)
    await s.close()
    store = await open_store(location, Masker([]))
    try:
        await store.set_control("paused", Control("paused", "someone", 1.0, "why"))
    finally:
        await store.close()
    run_only = await open_run(location, "ran", "r")  # a run that claimed nobody
    await run_only.close()
    reader = await open_store(location, Masker([]), readonly=True)
    try:
        found = {c: await reader.mentions(c) for c in ("claimed", "paused", "ran", "other")}
    finally:
        await reader.close()
    assert found == {"claimed": True, "paused": True, "ran": True, "other": False}


async def test_a_connection_the_server_ended_is_said_in_words_about_the_database(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ended by the server mid-run, a connection could leave the driver saying only "cannot
    switch to state 12; another operation (2) is in progress"."""
    import asyncpg

    s = await open_run(Location(url=postgres_url), "c", "r")
    driver = "cannot switch to state 12; another operation (2) is in progress"

    async def broken(*_: Any) -> None:
        raise asyncpg.exceptions.InternalClientError(driver)

    monkeypatch.setattr(asyncpg.Connection, "fetch", broken)
    with pytest.raises(StateLost) as lost:
        await s.claim("u1", 1)
    s.abandon()
    assert "(the connection was broken off, by the server or the network)" in str(lost.value)
    assert "state 12" not in str(lost.value)
