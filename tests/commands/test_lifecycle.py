"""A campaign over many runs: standings, due sweeps, budgets, the emergency stop, history kept.

Driven through the command line as a scheduler or a person would, against the mock server,
with real processes where a second process must act while the first sends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from runner.state.filelock import CampaignLock
from tests.helpers import (
    ThreadedMock,
    busiest_shared_second,
    customers_csv,
    delivered,
    summary,
    wait_for_arrivals,
)

pytestmark = pytest.mark.slow  # real processes, real time

CAMPAIGN = """\
version: 1
name: {name}
bot:
  api: v1
  id: "{bot}"
  token: ${{TEST_TOKEN}}
  base_url: {base_url}
  rate_limit: {rate}
audience:
  file: {audience}
message:
  user_id: "{{{{ customer.id }}}}"
  block_name: Sale
delivery:
  concurrency: 5
  retries: 0
"""


@pytest.fixture(autouse=True)
def _repository(tmp_path: Path) -> None:
    """Campaigns live in a git repository: its root holds .campaign-state/ and reports/."""
    (tmp_path / ".git").mkdir()


def campaign(
    folder: Path,
    name: str,
    base_url: str,
    rows: int = 5,
    *,
    rate: int = 1000,
    bot: str = "bot1",
    schedule: str = "",
    start: int = 1,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.csv").write_text(customers_csv(rows, start))
    path = folder / f"{name}.yaml"
    text = CAMPAIGN.format(name=name, bot=bot, base_url=base_url, rate=rate, audience=f"{name}.csv")
    path.write_text(text + schedule)
    return path


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="seconds")


def quiet_now() -> str:
    """Quiet hours in UTC that hold now and end in about two hours."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=2)
    return (
        "schedule:\n  timezone: UTC\n"
        f'  quiet_hours: {{start: "{start:%H:00}", end: "{end:%H:00}"}}\n'
    )


def standings(invoke: Callable[..., Result], *args: str | Path) -> dict[str, str]:
    result = invoke("status", *args, "--output", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return {c["campaign"]: c["standing"] for c in data.get("campaigns", [data])}


def test_status_tells_where_every_campaign_stands(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    folder = tmp_path / "campaigns"
    for name in ("fresh", "done", "canary", "paused", "cancelled", "held"):
        campaign(folder, name, server.url)
    campaign(
        folder,
        "later",
        server.url,
        schedule=f"schedule:\n  not_before: {iso(timedelta(hours=3))}\n",
    )
    campaign(
        folder, "over", server.url, schedule=f"schedule:\n  not_after: {iso(-timedelta(hours=1))}\n"
    )
    campaign(folder, "night", server.url, schedule=quiet_now())
    for name in ("done", "paused", "cancelled", "held"):
        assert invoke("run", folder / f"{name}.yaml", "--quiet").exit_code == 0
    assert invoke("run", folder / "canary.yaml", "--limit", "2", "--quiet").exit_code == 0
    night = invoke("run", folder / "night.yaml", "--quiet")
    assert night.exit_code == 0, night.output
    assert ", 5 deferred in " in night.stdout  # counted in the closing line
    assert "5 deferred (their quiet hours): the first open at " in night.stdout
    assert invoke("pause", folder / "paused.yaml", "--reason", "wrong coupon").exit_code == 0
    cancelled = invoke("cancel", folder / "cancelled.yaml", "--reason", "replaced by v2")
    assert cancelled.exit_code == 0, cancelled.output
    holder = CampaignLock(tmp_path / ".campaign-state" / "held.sqlite3", "held")
    holder.acquire()  # as a run going on holds it
    try:
        found = standings(invoke, folder)
    finally:
        holder.release()
    assert found == {
        "canary": "due",
        "cancelled": "cancelled",
        "done": "done",
        "fresh": "new",
        "held": "running",
        "later": "scheduled",
        "night": "waiting",
        "over": "closed",
        "paused": "paused",
    }
    lines = invoke("status", folder).stdout.splitlines()
    paused = next(line for line in lines if line.startswith("paused "))
    assert "campaign paused was paused by " in paused
    assert ": wrong coupon; `campaign resume` makes it due again" in paused
    canary = next(line for line in lines if line.startswith("canary "))
    assert "due: 3 left by the last run" in canary


def test_run_due_runs_only_what_is_due_and_says_where_the_rest_stand(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    folder = tmp_path / "campaigns"
    campaign(folder, "fresh", server.url, start=1)
    campaign(folder, "done", server.url, start=100)
    campaign(
        folder,
        "later",
        server.url,
        start=200,
        schedule=f"schedule:\n  not_before: {iso(timedelta(hours=3))}\n",
    )
    campaign(folder, "stopped", server.url, start=300)
    assert invoke("run", folder / "done.yaml", "--quiet").exit_code == 0
    assert invoke("pause", folder / "stopped.yaml", "--reason", "legal review").exit_code == 0
    before = len(server.arrivals)
    swept = invoke("run", "--due", folder, "--quiet")
    assert swept.exit_code == 0, swept.output
    sent = {a.recipient for a in server.arrivals[before:]}
    assert sent == {str(i) for i in range(1, 6)}  # only the new one
    assert "done: done: every row settled" in swept.stderr
    assert "later: scheduled: opens at " in swept.stderr
    assert "stopped: campaign stopped was paused by " in swept.stderr
    nothing = invoke("run", "--due", folder, "--quiet")
    assert nothing.exit_code == 0, nothing.output
    assert "fresh: done: every row settled" in nothing.stderr
    # Resumed, it is due again and a sweep sends it.
    assert invoke("resume", "stopped").exit_code == 0  # by name: the state knows it now
    assert invoke("run", "--due", folder, "--quiet").exit_code == 0
    assert max(delivered(server).values()) == 1
    assert set(delivered(server)) >= {str(i) for i in range(300, 305)}


def test_a_budget_stops_a_run_and_the_next_due_run_finishes_it(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    path = campaign(tmp_path, "big", server.url, rows=60, rate=20)
    first = invoke("run", path, "--max-duration", "1s", "--report", "r1")
    assert first.exit_code == 0, first.output
    assert "big: 60 still to send at 20/s do not fit in --max-duration 1s (about 19 a run): " in (
        first.stderr
    )
    assert "about 4 runs; each `campaign run --due` continues" in first.stderr
    assert "  the time budget ran out: " in first.stdout
    summary = json.loads((Path("r1") / "summary.json").read_text())
    assert summary["budget_spent"] is True
    assert 0 < summary["remaining"] < 60
    assert summary["counts"]["sent"] + summary["remaining"] == 60
    assert standings(invoke, path) == {"big": "due"}
    limited = invoke("run", path, "--max-duration", "1s", "--limit", "5", "--report", "r3")
    assert "do not fit in --max-duration" not in limited.stderr  # 5 fit in a second
    second = invoke("run", "--due", path, "--max-duration", "1s", "--report", "r2")
    assert second.exit_code == 0, second.output
    left = 60 - summary["counts"]["sent"] - 5  # the estimate counts only those still to send
    assert f"big: {left} still to send at 20/s do not fit in --max-duration 1s" in second.stderr
    rest = invoke("run", "--due", path, "--quiet")
    assert rest.exit_code == 0, rest.output
    counts = delivered(server)
    assert len(counts) == 60
    assert max(counts.values()) == 1
    assert standings(invoke, path) == {"big": "done"}


def test_a_pause_from_another_process_stops_a_sending_run_within_two_seconds(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    state_args: list[str],
) -> None:
    server = mock()
    path = campaign(tmp_path, "sale", server.url, rows=100, rate=20)
    given = state_args
    sender = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--report", "r1", "--quiet", *given],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        wait_for_arrivals(server, 50)
        # Elsewhere meanwhile, status sees the run and how far it came.
        running = invoke("status", path, *given).stdout
        assert "  standing   running on host " in running
        standing = running.split("  standing   ", 1)[1].splitlines()[0]
        assert " sent" in standing
        assert standing.endswith(", under way)")  # its own run, not one that did not finish
        assert " -> under way  " in running.split("Runs (newest first):")[1].splitlines()[1]
        # A sweep meanwhile says the same line at every look: no progress in it.
        swept = invoke("run", "--due", path, "--quiet", *given)
        assert swept.exit_code == 0, swept.output
        [line] = [line for line in swept.stderr.splitlines() if line.startswith("sale: ")]
        assert line.startswith("sale: running on host ")
        assert "so far" not in line
        paused = invoke("pause", path, "--reason", "wrong coupon", *given)
        assert paused.exit_code == 0, paused.output
        at = len(server.arrivals)
        out, err = sender.communicate(timeout=15)
    finally:
        sender.kill()
        sender.communicate()
    assert sender.returncode == 3, err
    assert len(server.arrivals) - at <= 2 * 20 + 5  # at most two seconds at 20/s, plus in flight
    assert "was paused by " in out
    assert ": wrong coupon;" in out
    assert " rows not reached: `campaign resume`, then run again to continue" in out
    summary = json.loads((Path("r1") / "summary.json").read_text())
    assert summary["paused"].startswith("campaign sale was paused by ")
    refused = invoke("run", path, "--quiet", *given)
    assert refused.exit_code == 2
    assert (
        ": wrong coupon; `campaign resume` makes it due again. Nothing was sent" in refused.stderr
    )
    assert invoke("resume", path, *given).exit_code == 0
    path.write_text(path.read_text().replace("rate_limit: 20", "rate_limit: 1000"))
    assert invoke("run", path, "--quiet", *given).exit_code == 0
    counts = delivered(server)
    assert len(counts) == 100
    assert max(counts.values()) == 1


def test_a_sweep_alone_carries_quiet_hours_and_a_big_audience_to_done(
    mock: Callable[..., ThreadedMock], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a fake wall clock, a sweep every 15 minutes with a 1 s budget: Tokyo now, UTC once
    its quiet hours end, nobody twice, nobody forgotten."""
    import runner.schedule
    from runner.commands.run import RunOptions, run

    server = mock()
    clock = {"now": datetime(2026, 11, 28, 22, 0, tzinfo=UTC)}  # 07:00 in Tokyo
    monkeypatch.setattr(runner.schedule, "now", lambda: clock["now"])
    people = ["id,tz"] + [f"{i},Asia/Tokyo" for i in range(1, 41)]
    people += [f"{i},UTC" for i in range(41, 51)]
    folder = tmp_path / "campaigns"
    path = campaign(
        folder,
        "night",
        server.url,
        rate=20,
        schedule='schedule:\n  timezone: "{{ customer.tz }}"\n'
        '  quiet_hours: {start: "21:00", end: "23:00"}\n',
    )
    (folder / "night.csv").write_text("\n".join(people) + "\n")
    said: list[str] = []
    for _ in range(12):
        result = run([str(folder)], RunOptions(due=True, max_duration=1.0, quiet=True))
        assert result.exit_code == 0
        said += result.lines
        if "night: done: every row settled" in result.lines:
            break
        clock["now"] += timedelta(minutes=15)
    else:
        pytest.fail(f"never done: {said}")
    counts = delivered(server)
    assert sorted(counts, key=int) == [str(i) for i in range(1, 51)]
    assert max(counts.values()) == 1
    assert "night: waiting: 10 deferred, next at 2026-11-28 23:00 UTC" in said
    assert path.exists()


def test_cancel_is_final(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    path = campaign(tmp_path, "gone", server.url)
    assert invoke("cancel", path, "--reason", "replaced by gone-v2").exit_code == 0
    refused = invoke("run", path, "--quiet")
    assert refused.exit_code == 2
    assert "campaign gone was cancelled by " in refused.stderr
    assert "a cancelled campaign never sends again under this name" in refused.stderr
    resumed = invoke("resume", path)
    assert resumed.exit_code == 2
    assert "Nothing was changed" in resumed.stderr
    assert server.arrivals == []


def test_a_pause_needs_a_reason_and_works_on_a_broken_file(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nname: broken\nbot: {api: v9}\n")
    blank = invoke("pause", path, "--reason", "  ")
    assert blank.exit_code == 2
    assert "--reason is required" in blank.stderr
    paused = invoke("pause", path, "--reason", "stop it")
    assert paused.exit_code == 0, paused.output
    assert paused.stdout.startswith("broken: paused by ")


def test_history_in_another_state_is_never_ignored(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    path = campaign(tmp_path, "moved", server.url, rows=20)
    assert invoke("run", path, "--quiet").exit_code == 0  # the default local file
    refused = invoke("run", path, "--state", postgres_url, "--quiet")
    assert refused.exit_code == 2
    local = tmp_path / ".campaign-state" / "moved.sqlite3"
    assert (
        f"has no history of campaign moved, but {local} has: 20 recipients sent there"
        in refused.stderr
    )
    assert f"campaign state copy {local} {postgres_url} --campaign moved " in refused.stderr
    assert "Running here would ignore it; nothing was sent" in refused.stderr
    assert len(server.arrivals) == 20
    # status and plan tell the same before anyone tries.
    assert standings(invoke, path, "--state", postgres_url) == {"moved": "elsewhere"}
    planned = invoke("plan", path, "--state", postgres_url).stdout
    assert "  run would start: no, not here and now:" in planned
    assert f"but {local} has: 20 recipients sent there" in planned
    # Once moved, the state it was moved from points on to the true one: a copy from there
    # would be refused, and its counts are stale.
    assert invoke("state", "copy", local, postgres_url).exit_code == 0
    third = invoke("run", path, "--state", tmp_path / "third.sqlite3", "--quiet")
    assert third.exit_code == 2
    assert "was moved by " in third.stderr
    assert f"its history was copied to {postgres_url}" in third.stderr
    assert "campaign state copy" not in third.stderr
    # The reverse: the history in the database named by CAMPAIGN_STATE, a run on a file.
    other = campaign(tmp_path, "shared", server.url, rows=5, start=100)
    monkeypatch.setenv("CAMPAIGN_STATE", postgres_url)
    assert invoke("run", other, "--quiet").exit_code == 0
    again = invoke("run", other, "--state", tmp_path / "elsewhere.sqlite3", "--quiet")
    assert again.exit_code == 2
    assert "but postgresql://" in again.stderr
    assert "5 recipients sent there" in again.stderr
    fresh = invoke(
        "run", other, "--state", tmp_path / "elsewhere.sqlite3", "--fresh-state", "--quiet"
    )
    assert fresh.exit_code == 0, fresh.output


def test_one_campaign_is_copied_out_of_a_state_that_holds_many(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    postgres_url: str,
) -> None:
    """Following the advice to copy a state that held several campaigns moved them all."""
    server = mock()
    a = campaign(tmp_path, "a", server.url)
    b = campaign(tmp_path, "b", server.url, start=100)
    for path in (a, b):
        assert invoke("run", path, "--state", postgres_url, "--quiet").exit_code == 0
    target = tmp_path / "a-only.sqlite3"
    none = invoke("state", "copy", postgres_url, target, "--campaign", "zzz")
    assert none.exit_code == 2
    assert none.stderr.strip().endswith(": holds no campaign zzz to copy; nothing was copied")
    copied = invoke("state", "copy", postgres_url, target, "--campaign", "a")
    assert copied.exit_code == 0, copied.output
    assert copied.stdout.splitlines()[0] == "a: 5 recipients copied"
    assert standings(invoke, a, b, "--state", postgres_url) == {"a": "moved", "b": "done"}
    assert standings(invoke, a, "--state", target) == {"a": "done"}


def test_a_folder_of_states_is_copied_campaign_by_campaign(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    postgres_url: str,
) -> None:
    server = mock()
    for name, start in (("a", 1), ("b", 100)):
        assert (
            invoke("run", campaign(tmp_path, name, server.url, start=start), "--quiet").exit_code
            == 0
        )
    assert invoke("run", tmp_path / "a.yaml", "--sandbox", "--quiet").exit_code == 0
    copied = invoke("state", "copy", tmp_path / ".campaign-state", postgres_url)
    assert copied.exit_code == 0, copied.output
    assert copied.stdout.splitlines()[:2] == ["a: 5 recipients copied", "b: 5 recipients copied"]
    found = standings(invoke, tmp_path / "a.yaml", tmp_path / "b.yaml", "--state", postgres_url)
    assert found == {"a": "done", "b": "done"}


def test_two_watch_workers_share_campaigns_bots_and_a_drain(
    mock: Callable[..., ThreadedMock], tmp_path: Path, postgres_url: str
) -> None:
    server = mock(rate=25)
    folder = tmp_path / "campaigns"
    for i, bot in enumerate(("bot1", "bot1", "bot2", "bot2")):
        campaign(folder, f"c{i}", server.url, rows=30, rate=25, bot=bot, start=i * 100)
    env = {**os.environ, "CAMPAIGN_STATE": postgres_url}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runner",
                "run",
                "--watch",
                "--every",
                "1s",
                str(folder),
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(delivered(server)) < 120:
            assert time.monotonic() < deadline, "the workers never finished"
            time.sleep(0.1)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=20) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()
    assert [worker.returncode for worker in workers] == [130, 130], outputs
    counts = delivered(server)
    assert len(counts) == 120
    assert max(counts.values()) == 1
    for bot in ("bot1", "bot2"):
        times = [a.t for a in server.arrivals if a.bot == bot]
        assert busiest_shared_second(times) <= 25, bot


def test_an_emergency_stop_does_all_it_can_and_says_what_it_could_not(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    folder = tmp_path / "campaigns"
    for name, start in (("a", 1), ("b", 100), ("c", 200)):
        campaign(folder, name, server.url, start=start)
    assert invoke("cancel", folder / "b.yaml", "--reason", "replaced").exit_code == 0
    (folder / "broken.yaml").write_text("{{{ not yaml")
    paused = invoke("pause", folder, "--reason", "wrong coupon\n::error::forged line")
    assert paused.exit_code == 2  # one file could not be read: said, after pausing the rest
    assert f"{folder / 'broken.yaml'}: no campaign name can be read from this file" in (
        paused.stderr
    )
    assert "b: cancelled already, which is final: left as it is" in paused.stdout
    found = standings(invoke, folder / "a.yaml", folder / "b.yaml", folder / "c.yaml")
    assert found == {"a": "paused", "b": "cancelled", "c": "paused"}
    status = invoke("status", folder / "a.yaml").stdout
    assert ": wrong coupon ::error::forged line; `campaign resume`" in status
    assert "\n  standing   paused: campaign a was paused by " in status  # its standing leads
    assert "\n::error::" not in status + paused.stdout + paused.stderr
    again = invoke("pause", folder / "a.yaml", "--reason", "someone else")
    assert again.exit_code == 0
    assert "a: already paused; kept as it was (campaign a was paused by " in again.stdout
    assert ": wrong coupon ::error::forged line;" in invoke("status", folder / "a.yaml").stdout


def test_a_bare_name_must_be_one_the_state_knows(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    typo = invoke("pause", "sprng-sale", "--reason", "x")
    assert typo.exit_code == 2
    assert "sprng-sale: no state at " in typo.stderr
    assert "knows a campaign of this name; nothing was changed" in typo.stderr
    for hostile in ("../../tmp/evil", "a" * 300, "-rf"):
        refused = invoke("pause", "--reason", "x", "--", hostile)
        assert refused.exit_code == 2, hostile
        assert "Traceback" not in refused.output
    assert not (tmp_path / ".campaign-state").exists()  # nothing written anywhere
    nothing = invoke("pause", "--reason", "x", str(tmp_path / "nowhere" / "*.yaml"))
    assert nothing.exit_code == 2
    assert "no campaign files match" in nothing.stderr


def test_a_pause_or_a_move_in_the_other_state_is_never_ignored(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    postgres_url: str,
) -> None:
    server = mock()
    path = campaign(tmp_path, "held", server.url, rows=6)
    assert invoke("pause", path, "--reason", "leaked token").exit_code == 0  # the local file
    refused = invoke("run", path, "--state", postgres_url, "--quiet")
    assert refused.exit_code == 2
    assert "campaign held was paused by " in refused.stderr
    assert ": leaked token;" in refused.stderr
    assert server.arrivals == []
    # Moved: the copy is the true history; the state it came from refuses, and it can return.
    assert invoke("resume", path).exit_code == 0
    assert invoke("run", path, "--limit", "2", "--quiet").exit_code == 0
    local = tmp_path / ".campaign-state" / "held.sqlite3"
    assert invoke("state", "copy", local, postgres_url).exit_code == 0
    assert standings(invoke, path) == {"held": "moved"}
    assert invoke("run", path, "--quiet").exit_code == 2
    assert invoke("run", path, "--state", postgres_url, "--limit", "2", "--quiet").exit_code == 0
    back = invoke("state", "copy", postgres_url, local)
    assert back.exit_code == 0, back.output
    assert invoke("run", path, "--quiet").exit_code == 0  # the rest, from the file again
    counts = delivered(server)
    assert len(counts) == 6
    assert max(counts.values()) == 1


def test_one_broken_campaign_never_holds_a_sweep_back(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    folder = tmp_path / "campaigns"
    campaign(folder, "good", server.url, start=1)
    (folder / "broken.yaml").write_text("version: 1\nname: broken\nbot: {api: v9}\n")
    twin = campaign(folder, "twin", server.url, start=100)
    (folder / "twin-copy.yaml").write_text(twin.read_text())
    lacking = campaign(folder, "lacking", server.url, start=200)
    lacking.write_text(lacking.read_text().replace("${TEST_TOKEN}", "${NOT_SET_HERE}"))
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    swept = invoke("run", "--due", folder, "--quiet")
    assert swept.exit_code == 2  # a person must look at the broken ones...
    assert sorted(a.recipient for a in server.arrivals) == ["1", "2", "3", "4", "5"]  # ...not wait
    assert f"{folder / 'broken.yaml'}: invalid, passed over: " in swept.stderr
    assert "the name 'twin' is taken by another file too; passed over" in swept.stderr
    assert "lacking: passed over: " in swept.stderr
    assert "NOT_SET_HERE is not set" in swept.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--watch", "--every", "99999999999h"], "'99999999999h': a duration is at most 30 days"),
        (["--every", "5s"], "--every goes with --watch (how often a worker looks)"),
        (["--max-duration", ""], "'': a duration is written like 5h30m, 90m, 45s or 3600"),
        (["--max-duration", "0s"], "'0s': a duration must be longer than nothing"),
    ],
)
def test_durations_that_cannot_be_meant_are_refused(
    invoke: Callable[..., Result], tmp_path: Path, args: list[str], said: str
) -> None:
    path = campaign(tmp_path, "d", "http://127.0.0.1:9")
    result = invoke("run", path, *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == said


def test_small_things_a_new_user_noticed(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    path = campaign(tmp_path, "small", server.url)
    assert invoke("run", path, "--quiet").exit_code == 0
    (folder,) = (tmp_path / "reports" / "small").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["run_id"] == folder.name  # one id for the run, its history and its folder
    assert f"  {folder.name}  " in invoke("status", path).stdout
    assert invoke("cancel", path, "--reason", "over").exit_code == 0
    test = invoke("run", path, "--to", "1", "--quiet")
    assert test.exit_code == 2  # a cancelled campaign is over, for a test send too
    assert "campaign small was cancelled by " in test.stderr
    (tmp_path / "copy.yaml").write_text(path.read_text())
    twice = invoke("status", path, tmp_path / "copy.yaml")
    assert "the name 'small' is taken by another file too" in twice.output


def test_a_rehearsals_standing_counts_its_own_runs(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    path = campaign(tmp_path, "rehearsed", "http://127.0.0.1:9")
    assert invoke("run", "--due", path, "--sandbox", "--quiet").exit_code == 0
    assert standings(invoke, path, "--sandbox") == {"rehearsed": "done"}
    assert standings(invoke, path) == {"rehearsed": "new"}  # the real state knows nothing


def test_a_run_of_several_campaigns_with_nothing_left_to_send_ends(
    mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    """Its pause watch once swallowed its cancellation and kept the run alive forever."""
    server = mock()
    paths = [str(campaign(tmp_path, n, server.url, start=s)) for n, s in (("one", 1), ("two", 9))]
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "runner", "run", *paths, "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    assert len(server.arrivals) == 10


def test_rows_added_while_a_run_sends_make_the_campaign_due_again(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    path = campaign(tmp_path, "grow", server.url, rows=60, rate=30)
    sender = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_arrivals(server, 10)
        audience = tmp_path / "grow.csv"
        audience.write_text(
            audience.read_text() + "".join(f"{i},New{i}\n" for i in range(900, 905))
        )
        assert sender.wait(timeout=30) == 0
    finally:
        sender.kill()
    assert standings(invoke, path) == {"grow": "due"}
    assert invoke("run", "--due", path, "--quiet").exit_code == 0
    counts = delivered(server)
    assert {str(i) for i in range(900, 905)} <= set(counts)
    assert max(counts.values()) == 1


def test_only_the_state_a_campaign_moved_to_can_bring_it_back(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    postgres_url: str,
) -> None:
    import shutil

    server = mock()
    path = campaign(tmp_path, "kappa", server.url, rows=20)
    assert invoke("run", path, "--limit", "5", "--quiet").exit_code == 0
    local = tmp_path / ".campaign-state" / "kappa.sqlite3"
    backup = tmp_path / "backup.sqlite3"
    shutil.copy(local, backup)  # a stale copy, kept aside
    assert invoke("state", "copy", local, postgres_url).exit_code == 0
    assert invoke("run", path, "--state", postgres_url, "--limit", "5", "--quiet").exit_code == 0
    stale = invoke("state", "copy", backup, local)
    assert stale.exit_code == 2
    assert "marks campaign kappa as moved to postgresql://" in stale.stderr
    assert "only that state's history can come back; nothing was copied" in stale.stderr
    resumed = invoke("resume", path)
    assert resumed.exit_code == 2
    assert "Resuming it here would send again those the other state reached" in resumed.stderr
    assert invoke("run", path, "--state", postgres_url, "--quiet").exit_code == 0
    counts = delivered(server)
    assert len(counts) == 20
    assert max(counts.values()) == 1
    assert invoke("pause", "", "--reason", "x").exit_code == 2  # "" is not "here"
    assert standings(invoke, path, "--state", postgres_url) == {"kappa": "done"}


def test_an_emergency_stop_where_a_campaign_moved_from_refuses_and_says_where(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    postgres_url: str,
) -> None:
    """The stop must never report success while the runs go on in the state it moved to."""
    server = mock()
    path = campaign(tmp_path, "lamda", server.url, rows=20)
    assert invoke("run", path, "--limit", "5", "--quiet").exit_code == 0
    local = tmp_path / ".campaign-state" / "lamda.sqlite3"
    assert invoke("state", "copy", local, postgres_url).exit_code == 0
    for verb, done in (("pause", "PAUSED"), ("cancel", "CANCELLED")):
        stop = invoke(verb, path, "--reason", "wrong coupon")
        assert stop.exit_code == 2, stop.output
        assert f"lamda: NOT {done}: its runs use the state it was moved to, not " in stop.stderr
        assert f"campaign {verb} lamda --state {postgres_url} --reason ..." in stop.stderr
        assert stop.stderr.count("run it with that state") == 1
        assert "already paused" not in stop.output
    everywhere = invoke("pause", "--all", "--reason", "wrong coupon")
    assert everywhere.exit_code == 2
    assert "lamda: NOT PAUSED" in everywhere.stderr
    # The mark stays a move: a run here still refuses, and the state it moved to still runs.
    assert invoke("run", path, "--quiet").exit_code == 2
    assert invoke("pause", path, "--state", postgres_url, "--reason", "x").exit_code == 0
    assert standings(invoke, path, "--state", postgres_url) == {"lamda": "paused"}


def test_history_copied_into_any_state_file_of_the_repository_is_never_ignored(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PostgreSQL state copied into one file beside the defaults (every campaign in it):
    a default run of one of them must find that history, not send its people again."""
    server = mock()
    path = campaign(tmp_path, "mu", server.url, rows=6)
    monkeypatch.setenv("CAMPAIGN_STATE", postgres_url)
    assert invoke("run", path, "--limit", "3", "--quiet").exit_code == 0
    shared = tmp_path / ".campaign-state" / "all.sqlite3"
    assert invoke("state", "copy", postgres_url, shared).exit_code == 0
    monkeypatch.delenv("CAMPAIGN_STATE")
    elsewhere = tmp_path / "another" / "folder"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # the repository's states are found from the campaign file
    refused = invoke("run", path, "--quiet")
    assert refused.exit_code == 2, refused.output
    assert f"but {shared} has: 3 recipients sent there" in refused.stderr
    assert standings(invoke, path) == {"mu": "elsewhere"}
    assert max(delivered(server).values()) == 1
    assert invoke("run", path, "--state", shared, "--quiet").exit_code == 0
    counts = delivered(server)
    assert (len(counts), max(counts.values())) == (6, 1)


def test_a_run_cancelled_midway_says_its_rest_is_never_sent(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    path = campaign(tmp_path, "nu", server.url, rows=100, rate=20)
    sender = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--report", "r1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        wait_for_arrivals(server, 10)
        assert invoke("cancel", path, "--reason", "wrong coupon").exit_code == 0
        out, err = sender.communicate(timeout=15)
    finally:
        sender.kill()
        sender.communicate()
    assert sender.returncode == 3, err
    summary = json.loads((Path("r1") / "summary.json").read_text())
    assert summary["cancelled"] is True
    line = f"  {summary['not_reached']} rows not reached: the campaign is cancelled, so they are "
    assert line + "never sent" in out
    assert "campaign resume" not in out


def test_a_state_url_that_cannot_be_used_is_refused_for_that_not_for_history(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    postgres_url: str,
) -> None:
    server = mock()
    path = campaign(tmp_path, "xi", server.url, rows=4)
    assert invoke("run", path, "--limit", "2", "--quiet").exit_code == 0
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database_for_xi"
    refused = invoke("run", path, "--state", missing, "--quiet")
    assert refused.exit_code == 2, refused.output
    assert 'database "no_such_database_for_xi" does not exist' in refused.stderr
    assert "has no history" not in refused.output
    assert len(server.arrivals) == 2


def test_a_damaged_state_file_beside_the_defaults_neither_blocks_nor_is_named(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    path = campaign(tmp_path, "omicron", server.url, rows=3)
    states = tmp_path / ".campaign-state"
    states.mkdir()
    (states / "junk.sqlite3").write_bytes(b"not a database\x00" * 100)
    (states / "empty.sqlite3").write_bytes(b"")
    first = invoke("run", path, "--quiet")
    assert first.exit_code == 0, first.output
    assert "junk" not in first.output
    assert len(delivered(server)) == 3


def test_a_worker_says_a_campaign_it_cannot_run_once_until_something_changes(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    folder = tmp_path / "campaigns"
    campaign(folder, "ok", server.url)
    bad = campaign(folder, "bad", server.url, start=100)
    with (folder / "bad.csv").open("a") as rows:
        rows.write(",,no id\n")  # a row whose user_id renders empty: invalid
    looks: list[float] = []

    def look_again(seconds: float) -> None:
        looks.append(seconds)
        if len(looks) == 2:  # the file is fixed while the worker sleeps
            bad.write_text(
                bad.read_text().replace("file: bad.csv", "file: bad.csv\n  max_invalid: 1")
            )
        if len(looks) == 4:
            raise KeyboardInterrupt  # as SIGTERM does

    monkeypatch.setattr("runner.schedule.sleep", look_again)
    import runner.pipeline

    checked: list[str] = []
    check = runner.pipeline.check_invalid

    def counted(c: Any, target: Any, counted: Any = None) -> Any:
        if counted is None:  # rendered whole, not counted by an earlier pass
            checked.append(c.name)
        return check(c, target, counted)

    monkeypatch.setattr(runner.pipeline, "check_invalid", counted)
    found = invoke("run", "--watch", "--every", "1s", folder)
    assert found.exit_code == 130, found.output
    refused = "bad: passed over: " + f"{bad}: 1 of 6 rows are invalid"
    assert found.stderr.count(refused) == 1
    assert found.stderr.count("ok: done: every row settled") == 1  # said at look 2, not 3, 4
    assert found.stderr.count("bad: done: every row settled") == 1  # fixed, sent, then done
    looked = [line for line in found.stderr.splitlines() if line.startswith("watch: ")]
    assert [line.split(" UTC")[1] for line in looked] == [
        "; SIGTERM or Ctrl-C stops the worker"
    ] + [
        " (1 passed over as at the last look, not said again); SIGTERM or Ctrl-C stops the worker"
    ] * 3
    # Not rendered again to be refused again while its file and audience stayed the same.
    assert checked.count("bad") == 2  # the first look, and once it was fixed
    counts = delivered(server)  # ok at the first look, bad once it was fixed; nobody twice
    assert (len(counts), max(counts.values())) == (10, 1)


def test_a_pause_given_while_a_run_waits_for_its_bot_holds_before_the_first_request(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run waits for a bot's lease while another process sends with it, which can last as
    long as that run does; the pause watch starts only with the sending."""
    from runner.state.core import Stores

    server = mock()
    path = campaign(tmp_path, "sale", server.url)
    wait_for_the_bot = Stores.lease_bots

    async def paused_meanwhile(self: Stores, *args: Any) -> None:
        await wait_for_the_bot(self, *args)
        paused = await asyncio.to_thread(invoke, "pause", path, "--reason", "wrong coupon")
        assert paused.exit_code == 0, paused.output

    async def no_watch(*_: Any) -> None:
        """The watch's first look races the first requests (on PostgreSQL it lost, and a
        request went out 8 s after the pause): the check before them must hold alone."""

    monkeypatch.setattr(Stores, "lease_bots", paused_meanwhile)
    monkeypatch.setattr("runner.commands.broadcast._watch", no_watch)
    result = invoke("run", path, "--quiet", "--report", "r")
    assert result.exit_code == 3, result.output
    assert server.arrivals == []
    assert summary(Path("r"))["paused"].startswith("campaign sale was paused by ")
    assert ": wrong coupon;" in result.stdout


def test_a_campaign_file_renamed_is_refused_until_named_back_or_started_on_purpose(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    state_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new `name:` is a new campaign to every state: the same file then sent everyone
    again, silently."""
    server = mock()
    path = campaign(tmp_path, "sale", server.url)
    git_repository(tmp_path)  # files are told apart by their repository and their path in it
    given = state_args
    assert invoke("run", path, "--quiet", *given).exit_code == 0
    path.write_text(path.read_text().replace("name: sale", "name: sale-2026"))
    elsewhere = tmp_path / "another" / "folder"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # the repository is found from the campaign file
    refused = invoke("run", path, "--quiet", *given)
    assert refused.exit_code == 2, refused.output
    state = given[1] if given else f"{tmp_path}/.campaign-state/sale.sqlite3"
    assert f"but this file ran as campaign sale in {state}: 5 recipients sent there. " in (
        refused.stderr
    )
    assert "Put back `name: sale` to go on with it (or start sale-2026 on purpose" in (
        refused.stderr
    )
    assert standings(invoke, path, *given) == {"sale-2026": "elsewhere"}
    swept = invoke("run", "--due", path, "--quiet", *given)
    assert swept.exit_code == 2  # passed over, and a person must look
    assert "sale-2026: elsewhere: the state " in swept.stderr
    assert swept.stderr.rstrip().endswith("; passed over")
    assert len(server.arrivals) == 5
    path.write_text(path.read_text().replace("name: sale-2026", "name: sale"))
    assert invoke("run", path, "--quiet", *given).exit_code == 0  # named back: done
    assert len(server.arrivals) == 5
    path.write_text(path.read_text().replace("name: sale", "name: sale-2026"))
    again = invoke("run", path, "--quiet", "--fresh-state", *given)
    assert again.exit_code == 0, again.output
    assert len(server.arrivals) == 10  # a new campaign on purpose: everyone again


def git_repository(folder: Path, *, origin: str | None = None) -> None:
    """A real git repository of ``folder``'s files, with one commit (and a remote)."""
    commands = [["init", "-q"], ["add", "."], ["commit", "-qm", "campaigns"]]
    if origin is not None:
        commands.append(["remote", "add", "origin", origin])
    for command in commands:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(folder), *command],
            check=True,
        )


@pytest.mark.parametrize("git", [True, False])
def test_one_state_shared_by_two_repositories_tells_their_same_named_files_apart(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path_factory: pytest.TempPathFactory,
    postgres_url: str,
    git: bool,
) -> None:
    """`campaigns/sale.yaml` of one repository is not the file of another's campaign; and
    where repositories cannot be told apart (no git), no file is taken for another's."""
    server = mock()
    for repo, name, start in (("one", "sale-one", 1), ("two", "sale-two", 100)):
        folder = tmp_path_factory.mktemp(repo)  # outside this test's own repository
        path = campaign(folder / "campaigns", "sale", server.url, start=start)
        path.write_text(path.read_text().replace("name: sale", f"name: {name}"))
        if git:
            git_repository(folder)
        ran = invoke("run", path, "--quiet", "--state", postgres_url)
        assert ran.exit_code == 0, ran.output
    assert len(server.arrivals) == 10


def test_a_repository_is_known_by_its_remote_however_it_is_spelled(tmp_path: Path) -> None:
    """A sweep's shallow clone from https and a laptop's from ssh are one repository."""
    from runner.repository import identity

    spellings = ["git@github.com:Owner/repo.git", "https://ci@github.com/Owner/repo/"]
    found = set()
    for n, origin in enumerate(spellings):
        folder = tmp_path / str(n)
        folder.mkdir()
        (folder / "c.yaml").write_text("x")
        git_repository(folder, origin=origin)
        found.add(identity(folder))
    assert found == {"github.com/Owner/repo"}


def test_a_campaign_fixed_while_a_worker_checks_it_is_not_kept_refused(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fix landed after the worker loaded the file and before it read the file's digest:
    the old file's refusal was kept under the new file's digest, for good."""
    import runner.lifecycle

    server = mock()
    folder = tmp_path / "campaigns"
    bad = campaign(folder, "bad", server.url)
    with (folder / "bad.csv").open("a") as rows:
        rows.write(",,no id\n")
    digests = runner.lifecycle.digests

    def fixed_meanwhile(c: Any) -> Any:
        if "max_invalid" not in bad.read_text():
            bad.write_text(
                bad.read_text().replace("file: bad.csv", "file: bad.csv\n  max_invalid: 1")
            )
        return digests(c)

    looks: list[float] = []

    def look_again(seconds: float) -> None:
        looks.append(seconds)
        if len(looks) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.lifecycle, "digests", fixed_meanwhile)
    monkeypatch.setattr("runner.schedule.sleep", look_again)
    assert invoke("run", "--watch", "--every", "1s", folder).exit_code == 130
    assert len(delivered(server)) == 5  # refused at the first look, sent at the second
