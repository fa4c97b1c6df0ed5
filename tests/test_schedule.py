"""Send windows and quiet hours in each customer's own time zone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.schedule import Schedule
from tests.helpers import ThreadedMock, results, summary

CAMPAIGN = """\
version: 1
name: sale
bot: {{id: "1", token: "${{TEST_TOKEN}}", base_url: "{url}", rate_limit: {rate}}}
audience: {{file: people.csv}}
message:
  user_id: "{{{{ customer.id }}}}"
  block_name: Sale
schedule:
{schedule}
"""
PEOPLE = "id,tz\n1,UTC\n2,Etc/GMT-6\n3,Mars/Olympus\n4,UTC\n"


def write(tmp_path: Path, url: str, schedule: str, rate: int = 100, people: str = PEOPLE) -> Path:
    (tmp_path / "people.csv").write_text(people)
    path = tmp_path / "sale.yaml"
    path.write_text(CAMPAIGN.format(url=url, rate=rate, schedule=schedule))
    return path


def quiet_now() -> str:
    """Quiet hours that hold the present moment in UTC (and not six hours ahead of it)."""
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).strftime("%H:00")
    end = (now + timedelta(hours=1)).strftime("%H:00")
    return f'  timezone: "{{{{ customer.tz }}}}"\n  quiet_hours: {{start: "{start}", end: "{end}"}}'


QUIET_BY_ZONE = '  timezone: "{{ customer.tz }}"\n  quiet_hours: {start: "21:00", end: "23:00"}'


class ScheduleClock:
    """The schedule's clock, stopped at a moment; its sleeps move it instead of waiting."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ScheduleClock:
    """22:00 UTC on 2026-11-28, within the campaigns' quiet hours (21:00-23:00)."""
    import runner.schedule

    stopped = ScheduleClock(datetime(2026, 11, 28, 22, 0, tzinfo=UTC))
    monkeypatch.setattr(runner.schedule, "now", lambda: stopped.now)
    monkeypatch.setattr(runner.schedule, "sleep", lambda seconds: stopped.sleep(seconds))
    return stopped


def test_quiet_hours_are_counted_in_each_customers_own_zone() -> None:
    s = Schedule(timezone="x", quiet_start=time(21, 0), quiet_end=time(8, 0))
    at = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)  # 21:30 in Hanoi, 14:30 in London
    assert s.quiet_until("Asia/Ho_Chi_Minh", at) == datetime(
        2026,
        11,
        29,
        8,
        0,
        tzinfo=s.quiet_until("Asia/Ho_Chi_Minh", at).tzinfo,  # type: ignore[union-attr]
    )
    assert s.quiet_until("Europe/London", at) is None
    early = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)  # 06:00 in Hanoi: quiet until 08:00
    opens = s.quiet_until("Asia/Ho_Chi_Minh", early)
    assert opens is not None
    assert opens.astimezone(UTC) == datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        s.quiet_until("Mars/Olympus", at)


def test_recipients_in_their_quiet_hours_are_deferred_not_failed(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    path = write(tmp_path, server.url, quiet_now())
    path.write_text(
        path.read_text().replace(
            "audience: {file: people.csv}", "audience: {file: people.csv, max_invalid: 1}"
        )
    )
    preview = invoke("plan", path, "--report", "p")
    assert "  to send        1" in preview.output
    assert "  deferred       2" in preview.output
    result = invoke("run", path, "--quiet", "--report", "r")
    assert result.exit_code == 0, result.output  # deferred ones are not failures
    got = {r["row"]: (r["status"], r["reason"]) for r in results(Path("r"))}
    assert got[1][0] == "deferred"
    assert got[1][1].startswith("quiet hours in UTC until ")
    assert got[2] == ("sent", None)  # six hours ahead: awake
    assert got[3] == (
        "invalid",
        "unknown time zone 'Mars/Olympus' (expected an IANA name like Asia/Ho_Chi_Minh) in "
        "schedule.timezone",
    )
    assert [a.recipient for a in server.arrivals] == ["2"]
    assert summary(Path("r"))["deferred_until"] is not None


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            "  not_before: 2999-01-01T09:00:00+07:00",
            "the send window opens at 2999-01-01T09:00:00+07:00 (in ",
        ),
        (
            "  not_after: 2000-01-01T09:00:00+00:00",
            "the send window closed at 2000-01-01T09:00:00+00:00; nothing was sent",
        ),
    ],
)
def test_outside_the_window_nothing_is_sent(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    window: str,
    message: str,
) -> None:
    server = mock()
    path = write(tmp_path, server.url, window, people="id,tz\n1,UTC\n")
    result = invoke("run", path, "--quiet")
    assert result.exit_code == 2
    assert result.output.startswith(message)
    assert server.arrivals == []


def test_a_run_reaching_not_after_stops_starting_requests(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    """Wired from the campaign file to the engine (its cases: tests/engine, fake clock)."""
    server = mock()
    closes = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    people = "id,tz\n" + "".join(f"{i},UTC\n" for i in range(1, 41))  # 4 s of sending
    path = write(tmp_path, server.url, f"  not_after: {closes}", rate=10, people=people)
    result = invoke("run", path, "--quiet", "--report", "r")
    assert result.exit_code == 1
    s = summary(Path("r"))
    assert 1 <= s["counts"]["sent"] < 40
    assert s["counts"]["sent"] + s["counts"]["unsent"] + s["not_reached"] == 40
    assert s["note"].startswith("The send window closed at ")
    assert s["window_closed"] is True
    said = (
        f"  {s['not_reached']} rows not reached: the send window has closed, so they are not sent"
    )
    assert said in result.output


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("  not_before: 2026-12-01T09:00:00", "add an offset (e.g. +07:00 or Z)"),
        ("  not_before: tomorrow", "expected an ISO 8601 date and time with an offset"),
        (
            "  not_before: 2026-12-02T09:00:00Z\n  not_after: 2026-12-01T09:00:00Z",
            "not_after must come after not_before",
        ),
        ("  timezone: Asia/Hanoi", "unknown time zone 'Asia/Hanoi'"),
        (
            '  quiet_hours: {start: "21:00", end: "08:00"}',
            "quiet hours are local hours: give schedule.timezone",
        ),
        (
            '  timezone: UTC\n  quiet_hours: {start: "9pm", end: "08:00"}',
            "schedule.quiet_hours.start: expected text matching",
        ),
        ('  timezone: "{{ customer.zone }}"', "customer.zone: no such column in the audience"),
    ],
)
def test_schedule_mistakes_are_found_at_validate(
    invoke: Callable[..., Result], tmp_path: Path, schedule: str, expected: str
) -> None:
    path = write(tmp_path, "http://127.0.0.1:9", schedule)
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert expected in result.output


def test_wait_sends_the_deferred_when_their_quiet_hours_end(
    mock: Callable[..., ThreadedMock], tmp_path: Path, clock: ScheduleClock
) -> None:
    """On a fake clock: the run waits until the quiet hours end, then sends the rest."""
    from runner.commands.run import RunOptions, run

    server = mock()
    schedule = '  timezone: UTC\n  quiet_hours: {start: "21:00", end: "23:00"}'
    path = write(tmp_path, server.url, schedule, people="id,tz\n1,UTC\n2,UTC\n")
    result: dict[str, Any] = {}

    def go() -> None:
        result["run"] = run([str(path)], RunOptions(quiet=True, wait=True, report=Path("w")))

    worker = threading.Thread(target=go)
    worker.start()
    worker.join(60)
    assert result["run"].exit_code == 0
    assert clock.now >= datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    assert sorted(a.recipient for a in server.arrivals) == ["1", "2"]


@pytest.mark.usefixtures("clock")
def test_wait_says_each_pass_as_it_ends_and_keeps_each_passs_report(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    """One written over the other showed those the first pass sent as skipped."""
    server = mock()
    people = "id,tz\n1,UTC\n2,UTC\n5,Asia/Tokyo\n"
    path = write(tmp_path, server.url, QUIET_BY_ZONE, people=people)
    result = invoke("run", path, "--wait", "--report", "w")
    assert result.exit_code == 0, result.output
    summaries = [line for line in result.stdout.splitlines() if line.startswith("sale: ")]
    assert [line.split(" in ")[0] for line in summaries] == [
        "sale: 1 sent, 0 failed, 0 unsent, 0 uncertain, 0 invalid, 0 skipped, 2 deferred",
        "sale: 2 sent, 0 failed, 0 unsent, 0 uncertain, 0 invalid, 1 skipped",
    ]
    assert "  report: w\n" in result.stdout
    assert "  report: w/pass-2\n" in result.stdout
    assert ":00:00+00:00; this command waits and sends them then\n" in result.stdout
    first = {r["recipient"]: r["status"] for r in results(Path("w"))}
    assert first == {"1": "deferred", "2": "deferred", "5": "sent"}
    second = {r["recipient"]: r["status"] for r in results(Path("w/pass-2"))}
    assert second == {"1": "sent", "2": "sent", "5": "skipped"}
    assert sorted(a.recipient for a in server.arrivals) == ["1", "2", "5"]


@pytest.mark.usefixtures("clock")
def test_limit_with_wait_sends_at_most_n_in_all(
    mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    """On a fake clock: two now, the wait, then only one more of the four who opened."""
    from runner.commands.run import RunOptions, run

    server = mock()
    people = "id,tz\n1,UTC\n2,UTC\n3,UTC\n4,UTC\n5,Asia/Tokyo\n6,Asia/Tokyo\n"
    path = write(tmp_path, server.url, QUIET_BY_ZONE, people=people)
    result = run([str(path)], RunOptions(quiet=True, wait=True, limit=3, report=Path("w")))
    assert result.exit_code == 0
    assert len(server.arrivals) == 3
    assert {a.recipient for a in server.arrivals} >= {"5", "6"}


def test_a_pause_reaches_a_run_waiting_for_quiet_hours(
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    invoke: Callable[..., Result],
    clock: ScheduleClock,
) -> None:
    import runner.schedule
    from runner.commands.run import PausedWhileWaiting, RunOptions, run

    server = mock()
    path = write(
        tmp_path,
        server.url,
        '  timezone: UTC\n  quiet_hours: {start: "21:00", end: "23:00"}',
        people="id,tz\n1,UTC\n2,UTC\n",
    )

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 3:  # a few polls into the wait, someone pauses it elsewhere
            assert invoke("pause", path, "--reason", "wrong coupon").exit_code == 0

    monkeypatch.setattr(runner.schedule, "sleep", sleep)
    with pytest.raises(PausedWhileWaiting) as stopped:
        run([str(path)], RunOptions(quiet=True, wait=True, report=Path("w")))
    assert stopped.value.exit_code == 3
    assert "campaign sale was paused by " in str(stopped.value)
    assert str(stopped.value).endswith("stopped waiting: 2 deferred recipients not sent")
    assert max(clock.slept) <= 2.0  # it looked at least every two seconds
    assert server.arrivals == []


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_while_waiting_for_quiet_hours_exits_130(
    tmp_path: Path, sig: str
) -> None:
    import signal
    import subprocess
    import sys
    import time as clock

    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).strftime("%H:00")
    end = (now + timedelta(hours=2)).strftime("%H:00")
    schedule = f'  timezone: UTC\n  quiet_hours: {{start: "{start}", end: "{end}"}}'
    path = write(tmp_path, "http://127.0.0.1:9", schedule, people="id,tz\n1,UTC\n")
    run = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--sandbox", "--wait", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = clock.monotonic() + 30
    assert run.stderr is not None
    for line in run.stderr:  # until it says it is waiting
        if line.startswith("waiting until "):
            assert "when the first of 1 deferred recipient open (1 quiet hours in UTC until " in (
                line
            )
            break
        assert clock.monotonic() < deadline
    run.send_signal(getattr(signal, sig))
    _, err = run.communicate(timeout=30)
    assert run.returncode == 130
    assert "Traceback" not in err
    assert "interrupted while waiting: 1 deferred recipient not sent (1 quiet hours in UTC" in err


def test_a_hostile_zone_value_is_an_invalid_row_in_plan_and_run(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock()
    zone = "a/" * 300 + "b"
    path = write(tmp_path, server.url, quiet_now(), people=f"id,tz\n1,UTC\n2,{zone}\n")
    planned = invoke("plan", path)
    assert planned.exit_code == 2, planned.output  # one invalid row is more than allowed
    assert "1  unknown time zone 'a/a/a/" in planned.output
    sent = invoke("run", path, "--quiet")
    assert sent.exit_code == 2, sent.output
    assert "row 2: unknown time zone 'a/a/a/" in sent.output
    for result in (planned, sent):
        assert "Traceback" not in result.output
    assert server.arrivals == []


ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",
    "America/St_Johns",
    "Antarctica/Troll",  # 2-hour DST
    "Asia/Kathmandu",
]
QUIET = [
    (time(22, 0), time(2, 30)),  # ends inside New York's skipped hour in March
    (time(1, 30), time(6, 0)),  # begins inside its repeated hour in November
    (time(21, 0), time(8, 0)),
    (time(2, 15), time(2, 45)),
    (time(0, 0), time(3, 0)),
]


def _changes(zone: str) -> list[datetime]:
    """The instants in 2026 when ``zone``'s offset changes."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    found = []
    while t.year == 2026:
        nxt = t + timedelta(minutes=30)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            found.append(nxt)
        t = nxt
    return found


CHANGES = [(zone, at) for zone in ZONES for at in _changes(zone)]


@given(
    change=st.sampled_from(CHANGES),
    quiet=st.sampled_from(QUIET),
    minutes=st.integers(min_value=-36 * 60, max_value=36 * 60),
)
@settings(max_examples=600, deadline=None)
def test_quiet_hours_across_clock_changes_say_when_they_really_end(
    change: tuple[str, datetime], quiet: tuple[time, time], minutes: int
) -> None:
    """What is decided and what is said agree: at the opening given, a run sends; until it,
    every moment is quiet with the same opening; and it names a time the clock showed."""
    zone, at = change
    schedule = Schedule(timezone=zone, quiet_start=quiet[0], quiet_end=quiet[1])
    now = at + timedelta(minutes=minutes)
    opens = schedule.quiet_until(zone, now)
    if opens is None:
        return
    assert opens > now
    assert schedule.quiet_until(zone, opens) is None  # sent at the moment promised
    step = (opens - now) / 7
    for k in range(7):
        assert schedule.quiet_until(zone, now + step * k) == opens
    # The opening is the first moment the local clock shows the end or later.
    local = opens.replace(tzinfo=None)
    end = datetime.combine(local.date(), quiet[1])
    assert local >= end
    # (arithmetic on UTC: on a local datetime Python would step the wall clock, not time)
    instant = opens.astimezone(UTC)
    before = (instant - timedelta(seconds=1)).astimezone(opens.tzinfo).replace(tzinfo=None)
    assert before < end
    back = instant.astimezone(opens.tzinfo)
    assert back.replace(tzinfo=None) == local  # a time the clock really showed


def test_quiet_hours_ending_in_the_skipped_hour_end_when_the_clocks_jump() -> None:
    schedule = Schedule(timezone="America/New_York", quiet_start=time(22), quiet_end=time(2, 30))
    now = datetime(2026, 3, 8, 6, 45, tzinfo=UTC)  # 01:45 EST, the night of the change
    opens = schedule.quiet_until("America/New_York", now)
    assert opens is not None
    assert opens.isoformat() == "2026-03-08T03:00:00-04:00"
    assert schedule.quiet_until("America/New_York", datetime(2026, 3, 8, 7, tzinfo=UTC)) is None


def test_quiet_hours_begun_in_the_repeated_hour_last_until_their_end() -> None:
    schedule = Schedule(timezone="America/New_York", quiet_start=time(1, 30), quiet_end=time(6))
    second_pass = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST, after 01:30 EDT
    opens = schedule.quiet_until("America/New_York", second_pass)
    assert opens is not None
    assert opens.isoformat() == "2026-11-01T06:00:00-05:00"


def test_people_an_earlier_run_settled_are_not_deferred_by_their_quiet_hours(
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    invoke: Callable[..., Result],
    clock: ScheduleClock,
) -> None:
    """Sent at 20:00, quiet at 22:00: a later run, the plan and the status call them already
    sent, so a campaign spanning zones can be done."""
    server = mock()
    clock.now = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
    people = "id,tz\n1,UTC\n2,UTC\n3,Asia/Tokyo\n"
    path = write(tmp_path, server.url, QUIET_BY_ZONE, people=people)
    assert invoke("run", path, "--quiet", "--report", "r1").exit_code == 0
    assert len(server.arrivals) == 3
    clock.now = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)  # 1 and 2 are in quiet hours

    again = invoke("run", path, "--quiet", "--report", "r2")
    assert again.exit_code == 0, again.output
    assert len(server.arrivals) == 3
    s = summary(Path("r2"))
    assert (s["counts"]["deferred"], s["counts"]["skipped"]) == (0, 3)
    assert {r["reason"] for r in results(Path("r2"))} == {"already sent"}

    preview = invoke("plan", path, "--report", "p")
    assert preview.exit_code == 0, preview.output
    assert summary(Path("p"))["counts"]["deferred"] == 0

    status = invoke("status", path)
    assert "standing   done: every row settled (3 sent," in status.output, status.output
    assert "deferred" not in status.output
