"""Kill a real `campaign run` mid-broadcast, run it again, and count at the server.

SIGKILL: nobody is sent twice; whoever was in flight is reported as uncertain (at most
`concurrency` of them) and the rest is finished by the next run. SIGINT: what is in flight
finishes, the report is written, exit 130, and the next run delivers everyone exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ThreadedMock, delivered, results, wait_for_arrivals

pytestmark = pytest.mark.slow  # real processes, real time

ROWS = 300
CONCURRENCY = 10


def start(path: Path, report: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--report", report],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def test_sigkill_loses_nothing_and_sends_nobody_twice(
    mock: Callable[..., ThreadedMock], v1_campaign: Callable[..., Path]
) -> None:
    server = mock(latency_ms=20)
    path = v1_campaign(server.url, rows=ROWS, rate=150, concurrency=CONCURRENCY)
    first = start(path, "r1")
    wait_for_arrivals(server, 60)
    first.kill()
    first.communicate(timeout=10)
    time.sleep(0.2)  # let requests already on the wire arrive
    second = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(path), "--report", "r2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    counts = delivered(server)
    assert max(counts.values()) == 1, "someone was sent twice"
    uncertain = {r["recipient"] for r in results(Path("r2")) if r["status"] == "uncertain"}
    assert len(uncertain) <= CONCURRENCY
    everyone = {str(i) for i in range(1, ROWS + 1)}
    assert set(counts) | uncertain == everyone  # each delivered once, or reported uncertain
    assert second.returncode == (1 if uncertain else 0), second.stderr
    statuses = Counter(r["status"] for r in results(Path("r2")))
    assert statuses["skipped"] + statuses["sent"] + statuses["uncertain"] == ROWS


def test_sigint_finishes_what_is_in_flight_and_exits_130(
    mock: Callable[..., ThreadedMock], v1_campaign: Callable[..., Path]
) -> None:
    server = mock(latency_ms=20)
    path = v1_campaign(server.url, rows=ROWS, rate=150, concurrency=CONCURRENCY)
    first = start(path, "r1")
    wait_for_arrivals(server, 60)
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    assert "stopping: no new requests; finishing those in flight" in stderr
    summary = json.loads(Path("r1/summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["exit_code"] == 130
    assert summary["counts"]["uncertain"] == 0
    # Every row is accounted for: reported, or said to be not reached.
    assert summary["rows"] + summary["not_reached"] == ROWS
    assert f"  {summary['not_reached']} rows not reached: run again to continue" in stdout
    sent_first = {r["recipient"] for r in results(Path("r1")) if r["status"] == "sent"}
    assert sent_first
    assert len(sent_first) < ROWS
    second = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(path), "--report", "r2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0, second.stderr
    counts = delivered(server)
    assert set(counts) == {str(i) for i in range(1, ROWS + 1)}
    assert set(counts.values()) == {1}


def test_a_second_run_of_the_same_campaign_is_refused(
    mock: Callable[..., ThreadedMock], v1_campaign: Callable[..., Path]
) -> None:
    server = mock(latency_ms=20)
    path = v1_campaign(server.url, rows=ROWS, rate=100, concurrency=CONCURRENCY)
    first = start(path, "r1")
    try:
        wait_for_arrivals(server, 10)
        second = subprocess.run(
            [sys.executable, "-m", "runner", "run", str(path), "--report", "r2"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert "campaign test-campaign is already running (host " in second.stderr
        assert "; wait for that run to finish: nothing was sent" in second.stderr
    finally:
        first.kill()
        first.communicate(timeout=10)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_state_consistent(
    mock: Callable[..., ThreadedMock], v1_campaign: Callable[..., Path]
) -> None:
    server = mock(latency_ms=3000)  # every request hangs: only a hard stop ends this quickly
    path = v1_campaign(server.url, rows=50, rate=100, concurrency=CONCURRENCY, timeout=30)
    first = start(path, "r1")
    wait_for_arrivals(server, CONCURRENCY)
    first.send_signal(signal.SIGINT)
    time.sleep(0.3)
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=20)
    assert first.returncode == 130, stderr
    in_flight = {r["recipient"] for r in results(Path("r1")) if r["status"] == "uncertain"}
    assert len(in_flight) == CONCURRENCY
    # One word for one state: what the summary counts as uncertain, the list calls uncertain.
    assert "  sending: " not in stdout
    assert stdout.count("  uncertain: row ") == CONCURRENCY
    second = subprocess.run(
        [sys.executable, "-m", "runner", "status", str(path), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    state = json.loads(second.stdout)
    assert state["counts"]["sending"] == CONCURRENCY  # the next run reports them as uncertain


def test_ctrl_c_during_a_long_plan_exits_130_without_a_traceback(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},Name{i}" for i in range(1, 400_001))
    (tmp_path / "customers.csv").write_text(f"id,first_name\n{rows}\n")
    (tmp_path / "c.yaml").write_text(
        "version: 1\nname: big\nbot: {id: '1', token: '${T}'}\naudience: {file: customers.csv}\n"
        "message:\n  user_id: '{{ customer.id }}'\n  block_name: B\n"
        "  attributes: {greeting: 'Hi {{ customer.first_name }}'}\n"
    )
    plan = subprocess.Popen(
        [sys.executable, "-m", "runner", "plan", str(tmp_path / "c.yaml"), "--report", "p"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (Path("p") / "results.jsonl").exists():  # the plan is under way
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    plan.send_signal(signal.SIGINT)
    _, stderr = plan.communicate(timeout=30)
    assert plan.returncode == 130
    assert stderr.strip() == "interrupted"
    plan = subprocess.Popen(
        [sys.executable, "-m", "runner", "plan", str(tmp_path / "c.yaml"), "--report", "p2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (Path("p2") / "results.jsonl").exists():
        time.sleep(0.02)
    time.sleep(0.2)
    plan.send_signal(signal.SIGTERM)
    _, stderr = plan.communicate(timeout=30)
    assert plan.returncode == 130
    assert "Traceback" not in stderr
