"""The broadcast against a real local HTTP server: every outcome class, pacing, masking, exits."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from runner.commands.run import RunOptions, RunResult, run
from runner.pacing import busiest_window
from tests.helpers import results, summary
from tests.scripted import ScriptedAPI

TOKEN = "s3cr3t-T0KEN"  # set by conftest as TEST_TOKEN


async def serve(api: ScriptedAPI, aiohttp_server: Any) -> str:
    server: TestServer = await aiohttp_server(api.app())
    return str(server.make_url("")).rstrip("/")


async def broadcast(path: Path, **options: Any) -> RunResult:
    options.setdefault("report", Path("out"))
    options.setdefault("quiet", True)
    return await asyncio.to_thread(run, [str(path)], RunOptions(**options))


def by_row(report: Path = Path("out")) -> dict[int, dict[str, Any]]:
    return {r["row"]: r for r in results(report)}


async def test_every_recipient_delivered(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI()
    path = v1_campaign(await serve(api, aiohttp_server), rows=20)
    result = await broadcast(path)
    assert result.exit_code == 0
    rows = by_row()
    assert sorted(rows) == list(range(1, 21))
    assert {r["status"] for r in rows.values()} == {"sent"}
    assert rows[1]["attempts"] == 1
    assert rows[1]["http_status"] == 200
    assert rows[1]["result"] == "sent"
    assert sorted(api.hits) == sorted(str(i) for i in range(1, 21))
    assert all(len(h) == 1 for h in api.hits.values())
    s = summary(Path("out"))
    assert s["counts"]["sent"] == 20
    assert s["http_status"] == {"200": 20}
    assert s["exit_code"] == 0
    assert set(s["latency_ms"]) == {"p50", "p95", "p99", "max"}


async def test_permanent_failures_are_reported_with_the_api_text(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["blocked"], "2": ["bad"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=3)
    result = await broadcast(path)
    assert result.exit_code == 1
    rows = by_row()
    assert (rows[1]["status"], rows[1]["result"], rows[1]["attempts"]) == (
        "failed",
        "user blocked the bot",
        1,
    )
    assert rows[2]["status"] == "failed"
    assert rows[2]["http_status"] == 400
    assert TOKEN not in rows[2]["result"]
    assert "bot_token=***" in rows[2]["result"]
    assert rows[3]["status"] == "sent"
    assert len(api.hits["1"]) == 1
    assert len(api.hits["2"]) == 1


async def test_retryable_answers_are_retried_until_they_succeed_or_run_out(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["busy", "busy", "ok"], "2": ["busy"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=2, retries=2)
    result = await broadcast(path)
    rows = by_row()
    assert (rows[1]["status"], rows[1]["attempts"]) == ("sent", 3)
    # The API surely did not act: unsent, not held against the recipient.
    assert (rows[2]["status"], rows[2]["attempts"], rows[2]["http_status"]) == ("unsent", 3, 503)
    assert rows[2]["error"] == "HTTP 503"
    assert result.exit_code == 1


async def test_retry_after_is_honoured(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["limited", "ok"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=1)
    await broadcast(path)
    first, second = api.hits["1"]
    assert second - first >= 0.99
    assert by_row()[1]["status"] == "sent"


async def test_no_answer_is_uncertain_and_never_sent_again(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["slow"], "2": ["drop"], "3": ["html"]}, slow_seconds=2)
    path = v1_campaign(await serve(api, aiohttp_server), rows=4, timeout=0.5, retries=3)
    result = await broadcast(path)
    assert result.exit_code == 1
    rows = by_row()
    assert rows[1]["status"] == "uncertain"
    assert rows[1]["error"].startswith("no answer in time")
    assert rows[2]["status"] == "uncertain"
    assert rows[2]["error"].startswith("connection lost after sending")
    assert rows[3]["status"] == "uncertain"
    assert rows[3]["http_status"] == 200
    assert rows[4]["status"] == "sent"
    assert [len(api.hits[u]) for u in "123"] == [1, 1, 1]


async def test_retry_timeouts_opts_into_at_least_once(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["drop", "ok"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=1, retries=2)
    path.write_text(path.read_text() + "  retry_timeouts: true\n")
    await broadcast(path)
    assert len(api.hits["1"]) == 2
    assert by_row()[1]["status"] == "sent"


async def test_a_refused_connection_is_retried_then_unsent(
    v1_campaign: Callable[..., Path],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = v1_campaign(f"http://127.0.0.1:{port}", rows=1, retries=1)
    result = await broadcast(path)
    row = by_row()[1]
    assert (row["status"], row["attempts"]) == ("unsent", 2)
    assert row["error"].startswith("connection failed: Cannot connect to host 127.0.0.1")
    assert result.exit_code == 1


async def test_a_rejected_token_stops_the_run_at_once(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={str(i): ["auth"] for i in range(1, 101)})
    path = v1_campaign(await serve(api, aiohttp_server), rows=100, concurrency=2)
    result = await broadcast(path)
    assert result.exit_code == 3
    assert len(api.arrivals) <= 2
    s = summary(Path("out"))
    assert s["aborted"].startswith("HTTP 401: the API rejected the token; check bot.token")
    assert s["counts"]["unsent"] <= 2
    assert s["counts"]["failed"] == 0
    assert s["counts"]["sent"] == 0


async def test_too_many_failures_in_a_row_abort(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={str(i): ["blocked"] for i in range(1, 101)})
    path = v1_campaign(await serve(api, aiohttp_server), rows=100, concurrency=1, max_failures=5)
    result = await broadcast(path)
    assert result.exit_code == 3
    assert len(api.arrivals) == 5
    assert "5 recipients in a row were not delivered" in summary(Path("out"))["aborted"]


async def test_a_delivery_resets_the_failure_count(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={str(i): ["blocked"] for i in range(1, 11) if i % 3})
    path = v1_campaign(await serve(api, aiohttp_server), rows=10, concurrency=1, max_failures=3)
    assert (await broadcast(path)).exit_code == 1


async def test_pacing_measured_at_the_server(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI()
    path = v1_campaign(await serve(api, aiohttp_server), rows=50, rate=20, concurrency=20)
    await broadcast(path)
    arrivals = sorted(api.arrivals)
    assert len(arrivals) == 50
    assert busiest_window(arrivals) <= 20
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) >= 20 * 0.97


async def test_campaigns_sharing_a_bot_share_its_limit(
    aiohttp_server: Any, v1_campaign: Callable[..., Path], tmp_path: Path
) -> None:
    api = ScriptedAPI()
    base = await serve(api, aiohttp_server)
    first = v1_campaign(base, rows=15, rate=10, concurrency=10, name="first")
    second = tmp_path / "second.yaml"
    second.write_text(
        first.read_text()
        .replace("name: first", "name: second")
        .replace('user_id: "{{ customer.id }}"', 'user_id: "b{{ customer.id }}"')
    )
    result = await asyncio.to_thread(
        run, [str(first), str(second)], RunOptions(report=Path("out"), quiet=True)
    )
    assert result.exit_code == 0
    arrivals = sorted(api.arrivals)
    assert len(arrivals) == 30
    assert busiest_window(arrivals) <= 10
    assert summary(Path("out/first"))["counts"]["sent"] == 15
    assert summary(Path("out/second"))["counts"]["sent"] == 15


async def test_a_missing_secret_sends_nothing(
    aiohttp_server: Any, v1_campaign: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = ScriptedAPI()
    path = v1_campaign(await serve(api, aiohttp_server), rows=3)
    monkeypatch.delenv("TEST_TOKEN")
    from runner.errors import UsageError

    with pytest.raises(UsageError, match="environment variable TEST_TOKEN is not set"):
        await broadcast(path)
    assert api.arrivals == []


async def test_the_token_never_reaches_reports_or_output(
    aiohttp_server: Any, v1_campaign: Callable[..., Path], tmp_path: Path
) -> None:
    api = ScriptedAPI(scripts={"1": ["bad"], "2": ["busy"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=3, retries=0)
    await broadcast(path)
    for file in Path("out").iterdir():
        assert TOKEN not in file.read_text(), file
    for file in (tmp_path / ".campaign-state").iterdir():
        assert TOKEN.encode() not in file.read_bytes(), file


async def test_uncertain_recipients_are_resent_only_when_asked(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["drop", "ok"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=2, retries=3)
    assert (await broadcast(path)).exit_code == 1
    again = await broadcast(path, report=Path("again"))
    assert again.exit_code == 1
    rows = by_row(Path("again"))
    assert rows[1]["status"] == "uncertain"
    assert (
        rows[1]["reason"] == "uncertain since an earlier run; not resent (use --resend-uncertain)"
    )
    assert rows[2]["reason"] == "already sent"
    assert len(api.hits["1"]) == 1
    resent = await broadcast(path, report=Path("resent"), resend_uncertain=True)
    assert resent.exit_code == 0
    assert by_row(Path("resent"))[1]["status"] == "sent"
    assert len(api.hits["1"]) == 2
