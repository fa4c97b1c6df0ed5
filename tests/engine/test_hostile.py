"""The broadcast against an API that answers badly, on purpose: nobody burned by a
campaign-wide error, nobody sent twice by a gateway, every attempt bounded in time and memory,
and reports that count what the API saw."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.engine.test_server import broadcast, by_row, serve
from tests.helpers import results, summary
from tests.scripted import ScriptedAPI


async def test_a_gateway_timeout_is_uncertain_and_never_resent(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["gateway", "ok"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=2, retries=3)
    result = await broadcast(path)
    assert result.exit_code == 1
    row = by_row()[1]
    assert (row["status"], row["http_status"], row["attempts"]) == ("uncertain", 504, 1)
    assert row["error"] == "HTTP 504: the API may have acted"
    assert len(api.hits["1"]) == 1


async def test_a_server_that_is_not_the_api_answering_501_stops_the_run_at_once(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    """What `python -m http.server` answers to a POST: an HTML 501."""
    api = ScriptedAPI(scripts={str(i): ["notimpl"] for i in range(1, 51)})
    path = v1_campaign(await serve(api, aiohttp_server), rows=50, rate=25, concurrency=25)
    result = await broadcast(path)
    assert result.exit_code == 3
    assert len(api.arrivals) <= 3
    s = summary(Path("out"))
    assert s["aborted"].startswith("HTTP 501 that is not the API's answer; check bot.base_url")
    assert s["counts"]["uncertain"] == 0
    assert s["counts"]["unsent"] + s["not_reached"] == 50


async def test_answers_that_are_not_the_apis_stop_the_run_and_cost_nobody(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={str(i): ["notfound"] for i in range(1, 61)})
    path = v1_campaign(await serve(api, aiohttp_server), rows=60, rate=25, concurrency=25)
    result = await broadcast(path)
    assert result.exit_code == 3
    assert len(api.arrivals) <= 3  # a few requests, not 60
    s = summary(Path("out"))
    assert s["aborted"].startswith(
        "HTTP 404 that is not the API's answer; check bot.base_url. Nobody was marked failed"
    )
    assert s["counts"]["failed"] == 0
    assert s["counts"]["sent"] == 0
    assert s["counts"]["unsent"] + s["not_reached"] == 60
    api.scripts.clear()  # the endpoint fixed: a plain rerun reaches everyone
    again = await broadcast(path, report=Path("again"))
    assert again.exit_code == 0
    assert summary(Path("again"))["counts"]["sent"] == 60


async def test_an_api_that_cannot_be_reached_stops_within_a_few_attempts(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = v1_campaign(f"http://127.0.0.1:{port}", rows=60, retries=3, concurrency=5)
    started = time.monotonic()
    result = await broadcast(path)
    assert result.exit_code == 3
    assert time.monotonic() - started < 10
    s = summary(Path("out"))
    assert s["aborted"].startswith("the API cannot be reached (connection failed: Cannot connect")
    assert s["counts"]["failed"] == 0
    assert s["counts"]["sent"] == 0
    assert s["counts"]["unsent"] + s["not_reached"] == 60
    api = ScriptedAPI()
    path.write_text(
        path.read_text().replace(f"http://127.0.0.1:{port}", await serve(api, aiohttp_server))
    )
    again = await broadcast(path, report=Path("again"))
    assert again.exit_code == 0
    assert summary(Path("again"))["counts"]["sent"] == 60


async def test_a_dripping_answer_ends_at_the_deadline(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["drip"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=1, timeout=1)
    started = time.monotonic()
    result = await broadcast(path)
    assert time.monotonic() - started < 4
    assert result.exit_code == 1
    row = by_row()[1]
    assert row["status"] == "uncertain"
    assert row["error"].startswith("no answer in time")


async def test_an_endless_answer_is_cut_at_the_cap(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["endless"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=1, timeout=30)
    result = await broadcast(path)
    assert result.exit_code == 1
    row = by_row()[1]
    assert (row["status"], row["http_status"]) == ("uncertain", 200)
    assert row["error"] == "HTTP 200: answer over 65536 bytes"
    assert len(row["result"]) <= 301  # the report keeps a short head of it


async def test_a_retry_after_past_the_cap_leaves_the_recipient_for_a_later_run(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"1": ["far"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=2, retries=3)
    started = time.monotonic()
    result = await broadcast(path)
    assert time.monotonic() - started < 5
    assert result.exit_code == 3  # the API takes nothing for days: stop, burn nobody
    row = by_row()[1]
    assert row["status"] == "unsent"
    assert len(api.hits["1"]) == 1
    assert row["error"] == (
        "HTTP 429; the API asked to wait 999999 s (Retry-After), over the 60 s cap: "
        "left for a later run"
    )
    assert summary(Path("out"))["aborted"].startswith("the API asked to wait 999999 s")


def test_a_stop_never_sends_a_waiting_retry_early(
    v1_campaign: Callable[..., Path], tmp_path: Path
) -> None:
    """SIGTERM while a recipient waits out Retry-After: 30. The retry is not sent; the
    recipient is left unsent, and the run exits 130 at once."""
    import asyncio
    import threading

    from aiohttp import web

    api = ScriptedAPI(scripts={"1": ["later"]})
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(api.app())
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        path = v1_campaign(f"http://127.0.0.1:{port}", rows=1, retries=3)
        process = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(path), "--report", "r", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        deadline = time.monotonic() + 20
        while not api.hits.get("1"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert time.monotonic() - stopped < 5
        assert process.returncode == 130, err
        assert len(api.hits["1"]) == 1
        row = results(tmp_path / "r")[0]
        assert row["status"] == "unsent"
        assert row["error"] == "HTTP 503; the run stopped before its retry"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def test_the_summary_counts_every_request_of_this_run_and_only_those(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(
        scripts={"1": ["limited", "limited", "ok"], "2": ["blocked"], "3": ["blocked"]}
    )
    path = v1_campaign(await serve(api, aiohttp_server), rows=6, retries=3, rate=25)
    assert (await broadcast(path)).exit_code == 1
    s = summary(Path("out"))
    assert s["http_status"] == {"200": 6, "429": 2}
    assert s["requests"] == 8
    assert s["requests_per_s"] <= 25
    assert s["errors"] == [
        {"status": "failed", "http_status": 200, "error": "user blocked the bot", "count": 2}
    ]
    rerun = await broadcast(path, report=Path("again"))
    assert rerun.exit_code == 1  # the two refused ones are still not delivered
    again = summary(Path("again"))
    assert again["http_status"] == {}
    assert again["requests"] == 0
    assert again["errors"] == []
    assert again["counts"]["skipped"] == 4
    assert again["counts"]["failed"] == 2


async def test_undelivered_csv_lists_who_to_re_target_with_their_own_columns(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    api = ScriptedAPI(scripts={"2": ["blocked"], "4": ["gateway"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=4, retries=0)
    assert (await broadcast(path)).exit_code == 1
    with (Path("out") / "undelivered.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "first_name", "status", "reason"]
    assert sorted(rows[1:]) == [
        ["2", "Name2", "failed", "user blocked the bot"],
        ["4", "Name4", "uncertain", "Gateway Timeout"],
    ]


async def test_an_answer_cannot_drive_the_terminal_or_the_summary(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    from runner.commands.run import text

    api = ScriptedAPI(scripts={"1": ["evil"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=1)
    result = await broadcast(path)
    shown = text(result)
    assert "\x1b" not in shown
    assert "\x07" not in shown
    assert "?]0;PWNED?<script>" in shown
    markdown = (Path("out") / "summary.md").read_text()
    assert "\x1b" not in markdown
    assert "<script>" not in markdown
    assert "`rm`" not in markdown
    assert r"\<script\>" in markdown
    assert r"\`rm\`" in markdown


async def test_text_from_the_world_is_neither_a_link_a_formula_nor_reordered(
    aiohttp_server: Any, v1_campaign: Callable[..., Path]
) -> None:
    import csv

    from runner.commands.run import text

    api = ScriptedAPI(scripts={"1": ["world"]})
    path = v1_campaign(await serve(api, aiohttp_server), rows=1)
    path.parent.joinpath("customers.csv").write_text("id,first_name,phone\n1,An,+84901234567\n")
    result = await broadcast(path)
    shown = text(result)
    for hidden in ("\u202e", "\u2028"):
        assert hidden not in shown
        assert hidden not in (Path("out") / "summary.md").read_text()
        assert hidden not in (Path("out") / "report.html").read_text()
    markdown = (Path("out") / "summary.md").read_text()
    assert "https://evil" not in markdown
    assert "hxxps://evil.example/login" in markdown
    assert "www.evil" not in markdown
    with (Path("out") / "undelivered.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["phone"] == "+84901234567"  # the audience's own cell, exactly as read
    assert rows[0]["reason"].startswith("'=HYPERLINK(")  # the API's words, never a formula
