"""The benchmark scripts still run (tiny sizes; their figures are not judged here)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import POSTGRES

pytestmark = pytest.mark.slow  # real processes, real time

REPO = Path(__file__).resolve().parent.parent


def smoke(only: str, env: dict[str, str] | None = None, script: str | None = None) -> list[str]:
    one = ["--script", script] if script else []
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--smoke", "--only", only, *one],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


# What each benchmark that needs no PostgreSQL prints; one test each, so they run side by side.
OTHERS = {
    "pacing.py": "pacing: ",
    "throughput.py": "throughput: ",
    "cpu.py": "cpu per request: ",
    "floor.py": "floor: in all ",
    "plan_scale.py": "plan: ",
    "plan_loop.py": "plan vs a hand-written loop over ",
    "multibot.py": "multi-bot (SQLite state): ",
    "aimd.py": "aimd: ",
}


def test_every_benchmark_in_the_smoke_set_is_checked() -> None:
    spec = importlib.util.spec_from_file_location("run_all", REPO / "bench" / "run_all.py")
    assert spec is not None
    assert spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    scripts = {script for script, *_ in run_all.SMOKE}
    assert scripts - {"state_backends.py"} == set(OTHERS)


@pytest.mark.parametrize(("script", "prints"), OTHERS.items())
def test_each_benchmark_runs_in_smoke_mode(script: str, prints: str) -> None:
    lines = smoke("others", script=script)
    assert lines[0].startswith("machine: ")
    assert any(line.startswith(prints) for line in lines), lines


def test_the_postgresql_benchmarks_run_in_smoke_mode(postgres_database: str) -> None:
    """Skipped, saying why, where no PostgreSQL server answers (required under CI)."""
    del postgres_database  # requested for its skip: the benchmarks make databases of their own
    server = os.environ.get("CAMPAIGN_TEST_POSTGRES", POSTGRES)
    lines = smoke("postgres", {**os.environ, "CAMPAIGN_BENCH_POSTGRES": server})
    for prefix in ("multi-bot (PostgreSQL state): ", "state backends: "):
        assert any(line.startswith(prefix) for line in lines), prefix
