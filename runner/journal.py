"""The journal of a running campaign: claims and outcomes appended to a file as they happen.

One JSON array a line: ``[RUN, run_id]`` first, then ``[CLAIM, recipient, row, t]`` and
``[OUTCOME, recipient, status, attempts, http_status, result, error, t]``. Appending is one
system call for a whole batch, and what ``write()`` has taken survives the process being
killed. `runner.state` folds a journal into SQLite when its run ends, or after a crash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

RUN, CLAIM, OUTCOME = 0, 1, 2


def path_for(state: Path, campaign: str) -> Path:
    return state.with_name(f"{state.name}.{campaign}.journal")


def records(journal: Path) -> Iterator[list[Any]]:
    """The journal's records; a torn last line (the process died mid-write) ends it."""
    with journal.open("rb") as handle:
        for line in handle:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                return
            if not isinstance(record, list) or not record:
                return
            yield record


class Writer:
    """Appends records; nothing is on disk until `write`."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pending: list[bytes] = [orjson.dumps([RUN, run_id]) + b"\n"]

    def add(self, record: list[Any]) -> None:
        self._pending.append(orjson.dumps(record) + b"\n")

    def write(self) -> None:
        """Hand every pending record to the kernel in one call (raises OSError)."""
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        self._pending = []
        while data:
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        try:
            self.write()
        finally:
            os.close(self._fd)
