"""The journal of a running campaign: claims and outcomes appended to a file as they happen.

One JSON array a line: ``[RUN, run_id]`` first, then ``[CLAIM, recipient, row, t]`` and
``[OUTCOME, recipient, status, attempts, http_status, result, error, t]``. Appending is one
system call for a whole batch, and what ``write()`` has taken survives the process being
killed. The SQLite backend folds a journal into its database when its run ends, or after a
crash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from runner.errors import StateError

RUN, CLAIM, OUTCOME = 0, 1, 2
_SHAPES = {RUN: 2, CLAIM: 4, OUTCOME: 8}


def path_for(state: Path, campaign: str) -> Path:
    return state.with_name(f"{state.name}.{campaign}.journal")


def records(journal: Path) -> Iterator[list[Any]]:
    """The journal's records. A torn last line (the process died mid-write) ends it; a bad
    line anywhere else is damage, and raises `StateError` rather than lose what follows."""
    with journal.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                record = orjson.loads(line)
                valid = (
                    isinstance(record, list)
                    and bool(record)
                    and _SHAPES.get(record[0]) == len(record)
                )
            except orjson.JSONDecodeError:
                valid = False
            if valid:
                yield record
            elif line.endswith(b"\n") or handle.read(1):
                raise StateError(
                    f"{journal}: the journal is damaged at line {number}; it was kept, and "
                    "nothing was sent. It records who was being sent when a run stopped: "
                    "restore it from a backup, or move it aside to accept that recipients "
                    "it names after that line may be sent again"
                )
            else:
                return  # torn while written: that claim's request never left


class Writer:
    """Appends records; nothing is on disk until `write`."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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
            data = data[os.write(self.fd, data) :]

    def close(self) -> None:
        try:
            self.write()
        finally:
            os.close(self.fd)
