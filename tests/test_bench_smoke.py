"""The benchmark scripts still run (tiny sizes; their figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_benchmark_runs_in_smoke_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for prefix in (
        "machine: ",
        "pacing: ",
        "throughput: ",
        "plan: ",
        "multi-bot (SQLite state): ",
        "multi-bot (PostgreSQL state): ",
        "state backends: ",
        "aimd: ",
    ):
        assert any(line.startswith(prefix) for line in done.stdout.splitlines()), prefix
