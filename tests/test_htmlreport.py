"""report.html: one self-contained page people can read, offline and on a phone."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import ThreadedMock

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


def hostile_campaign(tmp_path: Path, url: str) -> Path:
    (tmp_path / "people.csv").write_text(
        "id,name\n1,<script>alert(1)</script>\n2,Chúc mừng năm mới\n3,An\n"
    )
    path = tmp_path / "c.yaml"
    path.write_text(
        "version: 1\nname: html\n"
        f"bot: {{id: '1', token: '${{TEST_TOKEN}}', base_url: '{url}', rate_limit: 50}}\n"
        "audience: {file: people.csv}\n"
        "message:\n  user_id: '{{ customer.id }}'\n  block_name: B\n"
        "  attributes: {greeting: 'Hi {{ customer.name }}'}\n"
    )
    return path


def test_a_run_report_shows_the_run_and_lets_no_markup_through(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    server = mock(fail_rate=0.5, seed=2)
    path = hostile_campaign(tmp_path, server.url)
    result = invoke("run", path, "--quiet", "--report", "r")
    assert result.exit_code in (0, 1)
    page = (Path("r") / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    assert "REAL SEND" in page
    assert "<script" not in page  # nothing runs, and no customer's markup gets through
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the network
    assert '<a href="results.jsonl">' in page
    assert page.count("<svg") == 2  # the timeline and the latency
    assert "s3cr3t-T0KEN" not in page
    assert f"<dt>requests went to</dt><dd>{server.url}</dd>" in page
    assert "What was sent: the first requests, decoded" in page
    assert "<b>request 1</b>" in page


def test_a_run_report_says_what_a_reader_must_know(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    import subprocess

    server = mock(latency_ms=0)
    path = hostile_campaign(tmp_path, server.url)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert invoke("run", path, "--quiet", "--report", "r", "--limit", "1").exit_code == 0
    page = (Path("r") / "report.html").read_text()
    assert "not committed in git (untracked)" in page
    assert "<b>2</b><span>not reached</span>" in page


def test_a_plan_report_shows_the_messages_a_reviewer_can_read(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    path = hostile_campaign(tmp_path, "http://127.0.0.1:9")
    assert invoke("plan", path, "--report", "p").exit_code == 0
    page = (Path("p") / "report.html").read_text()
    assert "PLAN" in page
    assert "Hi Chúc mừng năm mới" in page  # decoded, not percent-encoding
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page
    markdown = (Path("p") / "summary.md").read_text()
    assert "Hi Chúc mừng năm mới" in markdown
    assert "<script>" not in markdown


def test_the_page_renders_in_a_real_browser_without_console_errors(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install -y chromium)")
    server = mock(fail_rate=0.3, seed=4)
    path = hostile_campaign(tmp_path, server.url)
    invoke("run", path, "--quiet", "--report", "r")
    page = (Path("r") / "report.html").resolve()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=420,1800",
    ]
    done = subprocess.run(
        [browser, *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), done.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert "REAL SEND" in dom.stdout
    assert "<svg" in dom.stdout
