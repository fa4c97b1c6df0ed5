"""Never twice across folders, runners and machines: the state from the command line, with
the default SQLite file and with PostgreSQL, counted at the server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import Result

from tests.helpers import (
    ThreadedMock,
    busiest_shared_second,
    delivered,
    results,
    summary,
    wait_for_arrivals,
)

pytestmark = pytest.mark.slow  # real processes, real time


def campaign_run(*args: str | Path, cwd: Path | None = None, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", *map(str, args), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
    )


def test_the_same_campaign_from_any_folder_uses_the_same_state(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    made = v1_campaign(server.url, rows=5)
    (repo / "campaigns").mkdir()
    path = repo / "campaigns" / "sale.yaml"
    path.write_text(made.read_text())
    (repo / "campaigns" / "customers.csv").write_text(made.with_name("customers.csv").read_text())
    monkeypatch.chdir(repo)
    assert invoke("run", "campaigns/sale.yaml", "--quiet").exit_code == 0
    for cwd, given in [
        (repo / "campaigns", "sale.yaml"),
        (tmp_path, str(path)),
        (repo / "campaigns", "../campaigns/./sale.yaml"),
    ]:
        monkeypatch.chdir(cwd)
        again = invoke("run", given, "--quiet")
        assert again.exit_code == 0, again.output
        assert "0 sent" in again.stdout
    assert len(server.arrivals) == 5
    assert (repo / ".campaign-state" / "test-campaign.sqlite3").is_file()
    assert len(list((repo / "reports" / "test-campaign").iterdir())) == 4


def test_postgres_state_shared_by_runs_from_anywhere(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=6)
    first = invoke("run", path, "--state", postgres_url, "--report", "r1", "--quiet")
    assert first.exit_code == 0, first.output
    assert f"test-campaign: state {postgres_url}" in first.stderr
    # Another runner: a fresh folder, no local state at all, the URL from the environment.
    for local in path.parent.glob(".campaign-state*"):
        raise AssertionError(f"a PostgreSQL run wrote local state: {local}")
    monkeypatch.setenv("CAMPAIGN_STATE", postgres_url)
    again = invoke("run", path, "--report", "r2", "--quiet")
    assert again.exit_code == 0
    assert [r["reason"] for r in results(Path("r2"))] == ["already sent"] * 6
    status = invoke("status", path, "--output", "json")
    assert json.loads(status.output)["counts"]["sent"] == 6
    assert len(server.arrivals) == 6


def test_an_unreachable_database_sends_nothing(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=3)
    result = invoke("run", path, "--state", "postgresql://postgres:pw-XYZ@127.0.0.1:1/x")
    assert result.exit_code == 2
    assert result.output.startswith("postgresql://postgres:***@127.0.0.1:1/x: cannot use the state")
    assert "pw-XYZ" not in result.output
    assert server.arrivals == []


def test_sigkill_and_rerun_with_postgres_send_nobody_twice(
    mock: Callable[..., ThreadedMock], v1_campaign: Callable[..., Path], postgres_url: str
) -> None:
    server = mock(latency_ms=10)
    path = v1_campaign(server.url, rows=200, rate=200, concurrency=10)
    first = campaign_run(path, "--report", "r1", "--state", postgres_url)
    wait_for_arrivals(server, 40)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=20)
    second = campaign_run(path, "--report", "r2", "--state", postgres_url)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1, err  # those in flight at the kill are uncertain
    counts = delivered(server)
    assert set(counts.values()) == {1}  # nobody twice
    uncertain = [r for r in results(Path("r2")) if r["status"] == "uncertain"]
    assert 0 < len(uncertain) <= 10
    assert len(counts) + len(uncertain) >= 200 - 0  # everyone else delivered
    assert {str(i) for i in range(1, 201)} - set(counts) <= {r["recipient"] for r in uncertain}


def test_a_second_run_at_once_is_refused_saying_who_holds_it(
    mock: Callable[..., ThreadedMock], v1_campaign: Callable[..., Path], postgres_url: str
) -> None:
    server = mock(latency_ms=50)
    path = v1_campaign(server.url, rows=60, rate=20, concurrency=2)
    first = campaign_run(path, "--report", "r1", "--state", postgres_url)
    try:
        wait_for_arrivals(server, 3)
        second = campaign_run(path, "--report", "r2", "--state", postgres_url)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 2
        assert (
            f"campaign test-campaign is already running (host {os.uname().nodename} pid {first.pid} since"
            in err
        )
        assert err.rstrip().endswith("; wait for that run to finish: nothing was sent")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert set(delivered(server).values()) == {1}


def test_two_processes_on_one_bot_keep_its_limit_together(
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    server = mock()
    first = v1_campaign(server.url, rows=40, rate=20, concurrency=10, name="first")
    second = tmp_path / "second.yaml"
    second.write_text(
        first.read_text()
        .replace("name: first", "name: second")
        .replace('user_id: "{{ customer.id }}"', 'user_id: "b{{ customer.id }}"')
    )
    a = campaign_run(first, "--report", "ra", "--state", postgres_url)
    b = campaign_run(second, "--report", "rb", "--state", postgres_url)
    _, err_a = a.communicate(timeout=60)
    _, err_b = b.communicate(timeout=60)
    assert (a.returncode, b.returncode) == (0, 0), err_a + err_b
    assert len(server.arrivals) == 80
    assert busiest_shared_second([x.t for x in server.arrivals]) <= 20
    assert "another process sharing this state is sending with the same bot" in err_a + err_b


def test_two_processes_taking_two_bots_in_opposite_orders_never_wait_for_each_other(
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    """A runs bot1 then bot3, B bot3 then bot1: leases are taken in one order, so both end."""
    server = mock()
    base = v1_campaign(server.url, rows=10, rate=50, concurrency=5, name="base").read_text()

    def one(name: str, bot: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            base.replace("name: base", f"name: {name}")
            .replace('id: "6123abcd"', f'id: "{bot}"')
            .replace('user_id: "{{ customer.id }}"', f'user_id: "{name}-{{{{ customer.id }}}}"')
        )
        return path

    a = campaign_run(
        one("a1", "bot1"), one("a3", "bot3"), "--report", "ra", "--state", postgres_url
    )
    b = campaign_run(
        one("b3", "bot3"), one("b1", "bot1"), "--report", "rb", "--state", postgres_url
    )
    _, err_a = a.communicate(timeout=60)
    _, err_b = b.communicate(timeout=60)
    assert (a.returncode, b.returncode) == (0, 0), err_a + err_b
    assert len(server.arrivals) == 40


def test_a_lost_database_connection_stops_the_run(
    mock: Callable[..., ThreadedMock], v1_campaign: Callable[..., Path], postgres_url: str
) -> None:
    server = mock(latency_ms=20)
    path = v1_campaign(server.url, rows=300, rate=50, concurrency=5)
    run = campaign_run(path, "--report", "r", "--state", postgres_url)
    wait_for_arrivals(server, 20)

    async def cut() -> None:
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await connection.close()

    asyncio.run(cut())
    try:
        stdout, err = run.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        run.kill()
        raise AssertionError("the run did not stop after losing its database") from None
    assert run.returncode == 3, err
    assert "the state database stopped answering" in stdout, err
    sent = len(server.arrivals)
    assert sent < 300
    time.sleep(0.5)
    assert len(server.arrivals) == sent  # nothing more after the stop
    assert summary(Path("r"))["aborted"].startswith(postgres_url.split("//")[0])
    # Back again: the next run finishes, nobody twice.
    again = campaign_run(path, "--report", "r2", "--state", postgres_url)
    again.communicate(timeout=60)
    assert set(delivered(server).values()) == {1}


def test_what_a_run_delivered_after_losing_its_state_is_never_called_uncertain_by_it(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The state lost mid-run keeps the claims of those in flight; the answers that came
    after are this run's to tell. It listed them 'uncertain' and advised resending them."""
    server = mock()
    path = v1_campaign(server.url, rows=30, concurrency=5)
    real, batches = asyncpg.Connection.fetch, []

    async def lost_at_third_batch(self: asyncpg.Connection, query: str, *args: Any) -> Any:
        if query.lstrip().startswith("WITH outcomes AS"):  # a batch of claims and outcomes
            batches.append(query)
            if len(batches) == 3:
                raise asyncpg.ConnectionDoesNotExistError("connection was closed")
        return await real(self, query, *args)

    monkeypatch.setattr(asyncpg.Connection, "fetch", lost_at_third_batch)
    result = invoke("run", path, "--state", postgres_url, "--report", "r")
    assert result.exit_code == 3, result.output
    s = summary(Path("r"))
    sent = {r["recipient"] for r in results(Path("r")) if r["status"] == "sent"}
    assert s["unrecorded_sent"] > 0
    assert (
        f"  {s['unrecorded_sent']} delivered by this run could not be recorded (the state was "
        "lost): the state shows them in flight and a later run reports them uncertain, but "
        "this report has them sent: never resend them with --resend-uncertain"
    ) in result.stdout
    listed = [line for line in result.stdout.splitlines() if line.startswith("  uncertain: row")]
    assert not [line for line in listed if line.split()[3] in sent]  # none it knows sent


def test_state_copy_both_ways_resends_nobody(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    server = mock(fail_rate=0.3, seed=5)
    path = v1_campaign(server.url, rows=20, retries=0)
    invoke("run", path, "--report", "r1", "--quiet")
    local = tmp_path / ".campaign-state" / "test-campaign.sqlite3"
    before = json.loads(invoke("status", path, "--output", "json").output)["counts"]
    copied = invoke("state", "copy", local, postgres_url)
    assert copied.exit_code == 0, copied.output
    assert copied.output.splitlines()[0] == "test-campaign: 20 recipients copied"
    on_postgres = json.loads(
        invoke("status", path, "--state", postgres_url, "--output", "json").output
    )["counts"]
    assert on_postgres == before
    arrivals = len(server.arrivals)
    invoke("run", path, "--state", postgres_url, "--report", "r2", "--quiet")
    delivered_ones = {r["recipient"] for r in results(Path("r1")) if r["status"] == "sent"}
    assert not delivered_ones & {a.recipient for a in server.arrivals[arrivals:]}
    back = tmp_path / "back.sqlite3"
    assert invoke("state", "copy", postgres_url, back).exit_code == 0
    assert (
        json.loads(invoke("status", path, "--state", back, "--output", "json").output)["counts"]
        == json.loads(invoke("status", path, "--state", postgres_url, "--output", "json").output)[
            "counts"
        ]
    )
    again = invoke("state", "copy", local, postgres_url)
    assert again.exit_code == 2  # the local file says where its history went
    assert "were copied to another state already, which holds their true history" in again.output
    stale = invoke("run", path, "--state", local, "--quiet")
    assert stale.exit_code == 2  # a run on the copied-from state would ignore what came since
    assert "campaign test-campaign was moved by " in stale.output
    assert "run it with that state" in stale.output


async def test_state_copy_refuses_while_a_run_holds_a_campaign(
    invoke: Callable[..., Result], postgres_url: str, tmp_path: Path
) -> None:
    from runner.state import Location
    from tests.helpers import open_run

    local = tmp_path / "s.sqlite3"
    running = await open_run(Location(path=local), "busy", "r1")
    await running.claim("u1", 1)
    try:
        for source, target in ((local, postgres_url), (postgres_url, tmp_path / "b.sqlite3")):
            if source == postgres_url:  # a run holding the campaign in the database
                await running.close()
                running = await open_run(Location(url=postgres_url), "busy", "r2")
                await running.claim("u1", 1)
            result = await asyncio.to_thread(invoke, "state", "copy", source, target)
            assert result.exit_code == 2
            assert "campaign busy is already running" in result.output
            assert result.output.rstrip().endswith(
                "wait for that run to finish: nothing was copied"
            )
    finally:
        await running.close()
    assert not (tmp_path / "b.sqlite3").exists()


def test_a_password_anywhere_in_the_state_url_never_leaves(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The red team's URL: a password= parameter (trust auth lets it through unused)."""
    summary_file = Path("step-summary.md")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    server = mock(fail_rate=0.5, seed=3)
    path = v1_campaign(server.url, rows=6, retries=0)
    url = postgres_url + "?password=QueryPw_S3cr3t"
    outputs = [
        invoke("run", path, "--state", url, "--report", "r"),
        invoke("status", path, "--state", url),
        invoke("status", path, "--state", url, "--output", "json"),
        invoke("plan", path, "--state", url, "--report", "p"),
        invoke("state", "copy", url, "copy.sqlite3"),
    ]
    texts = [r.output for r in outputs]
    texts += [p.read_text() for p in [*Path("r").iterdir(), *Path("p").iterdir()] if p.is_file()]
    texts.append(summary_file.read_text())
    for text in texts:
        for piece in ("QueryP", "S3cr3t", "Pw_S3c", "Pw\\_S3"):
            assert piece not in text
    assert "password=***" in outputs[0].stderr


def test_a_stalled_state_database_stops_the_run_instead_of_hanging_it(
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    postgres_url: str,
) -> None:
    """The database's backend for the run stops answering (SIGSTOP): the run stops starting
    requests within seconds (exit 3), and nothing is sent after."""
    import asyncio

    import asyncpg

    server = mock()
    path = v1_campaign(server.url, rows=400, rate=20, concurrency=5)
    run = campaign_run(path, "--report", "r", "--state", postgres_url)
    stopped: list[int] = []
    try:
        wait_for_arrivals(server, 10)

        async def backends() -> list[int]:
            connection = await asyncpg.connect(postgres_url)
            try:
                rows = await connection.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            finally:
                await connection.close()
            return [r["pid"] for r in rows]

        for pid in asyncio.run(backends()):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        assert stopped, "the run's backend was not found"
        out, err = run.communicate(timeout=40)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        run.kill()
        run.communicate()
    assert run.returncode == 3, err
    assert "did not answer within" in out + err
    assert len(server.arrivals) < 400
