from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from runner import lock, state
from runner.errors import LockHeld


async def test_claims_and_outcomes_are_durable_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    s = state.CampaignState(path, "c", "run-1")
    await s.claim("u1", 1)
    await s.claim("u2", 2)
    s.record("u1", "sent", 1, 200, "ok", None)
    s.record("u2", "failed", 2, 400, "bad", "HTTP 400")
    s.close()
    again = state.CampaignState(path, "c", "run-2")
    assert again.prior("u1") == state.Prior("sent", 1, 200, "ok", None)
    assert again.prior("u2") == state.Prior("failed", 2, 400, "bad", "HTTP 400")
    assert again.prior("u3") is None
    again.close()


async def test_a_claim_is_committed_before_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    s = state.CampaignState(path, "c", "run-1")
    await s.claim("u1", 1)
    # Read from another connection, as a process after a crash would.
    report = state.status_report(path, "c")
    assert report["counts"]["sending"] == 1
    s.close()


async def test_what_was_in_flight_at_a_crash_becomes_uncertain(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    s = state.CampaignState(path, "c", "run-1")
    await s.claim("u1", 1)
    # no close(): as if the process had died with u1 in flight
    again = state.CampaignState(path, "c", "run-2")
    prior = again.prior("u1")
    assert prior is not None and prior.status == "uncertain"
    assert prior.error == state.IN_FLIGHT_AT_STOP
    again.close()


async def test_campaigns_in_one_state_file_are_apart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    a = state.CampaignState(path, "a", "r")
    await a.claim("u1", 1)
    a.record("u1", "sent", 1, 200, None, None)
    a.close()
    b = state.CampaignState(path, "b", "r")
    assert b.prior("u1") is None
    b.close()


async def test_many_concurrent_claims_group_commit(tmp_path: Path) -> None:
    s = state.CampaignState(tmp_path / "s.sqlite3", "c", "r")
    await asyncio.gather(*(s.claim(f"u{i}", i) for i in range(500)))
    for i in range(500):
        s.record(f"u{i}", "sent", 1, 200, None, None)
    s.close()
    assert state.status_report(tmp_path / "s.sqlite3", "c")["counts"]["sent"] == 500


def _hold_lock(
    path: str, ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event
) -> None:
    with lock.campaign_lock(Path(path), "c"):
        ready.set()
        done.wait(10)


def test_one_run_per_campaign_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), ready, done))
    holder.start()
    try:
        assert ready.wait(20)
        with (
            pytest.raises(LockHeld, match=r"campaign c is already running \(pid \d+ since"),
            lock.campaign_lock(path, "c"),
        ):
            pass
        with lock.campaign_lock(path, "other"):  # other campaigns are not blocked
            pass
    finally:
        done.set()
        holder.join(10)


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), ready, done))
    holder.start()
    assert ready.wait(20)
    holder.kill()
    holder.join(10)
    with lock.campaign_lock(path, "c"):
        pass


def test_sandbox_state_stands_apart() -> None:
    assert state.path_for(None, "c", False) == Path(".campaign-state/c.sqlite3")
    assert state.path_for(None, "c", True) == Path(".campaign-state/c.sandbox.sqlite3")
    assert state.path_for(Path("x/s.db"), "c", True) == Path("x/s.sandbox.db")
    assert state.path_for(Path("x/s.db"), "c", False) == Path("x/s.db")


def test_an_unusable_state_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite3"
    bad.write_text("this is not a database" * 100)
    from runner.errors import UsageError

    with pytest.raises(UsageError, match="cannot use this state file"):
        state.connect(bad)


async def test_a_torn_journal_line_is_ignored_and_folding_twice_changes_nothing(
    tmp_path: Path,
) -> None:
    from runner import journal

    path = tmp_path / "s.sqlite3"
    s = state.CampaignState(path, "c", "run-1")
    await s.claim("u1", 1)
    s.record("u1", "sent", 1, 200, "ok", None)
    await s.claim("u2", 2)
    s.flush()
    log = journal.path_for(path, "c")
    saved = log.read_bytes()
    with log.open("ab") as handle:
        handle.write(b'[2, "u2", "se')  # the process died in the middle of a write
    again = state.CampaignState(path, "c", "run-2")
    assert again.prior("u1") == state.Prior("sent", 1, 200, "ok", None)
    prior = again.prior("u2")
    assert prior is not None and prior.status == "uncertain"
    again.close()
    log.write_bytes(saved)  # the same journal again, as if its removal had been lost
    third = state.CampaignState(path, "c", "run-3")
    assert third.prior("u1") == state.Prior("sent", 1, 200, "ok", None)
    third.close()
