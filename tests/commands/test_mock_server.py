"""`campaign mock-server` as a user starts it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path


def test_the_mock_server_serves_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "mock.jsonl"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "mock-server",
            "--port",
            "0",
            "--rate",
            "5",
            "--log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("mock server listening on http://127.0.0.1:")
        url = line.split()[4]
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert "mock server" in response.read().decode()
        request = urllib.request.Request(
            url + "/bots/b/users/u/send?bot_token=secret-token&block_id=1",
            method="POST",
            data=b"",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"success": True, "result": "message sent"}
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=10)
    entry = json.loads(log.read_text())
    assert entry["params"]["bot_token"] == "***"


def test_a_busy_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "runner", "mock-server", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert done.returncode == 2  # a usage error: nothing was served
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
