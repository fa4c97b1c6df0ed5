"""One run per campaign at a time, per state file.

An OS file lock is released by the kernel when its process dies, however it dies, so a lock
left by a killed run never blocks the next one.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import IO

from runner.state.store import Holder, held


class CampaignLock:
    """The lock of ``campaign`` in the state file at ``path``; `acquire` never waits."""

    def __init__(self, path: Path, campaign: str) -> None:
        self.path = path.with_name(f"{path.name}.{campaign}.lock")
        self._state = path
        self._campaign = campaign
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            _lock_exclusive(handle.fileno())
        except OSError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise held(self._campaign, holder, self._state) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"host {socket.gethostname()} pid {os.getpid()} "
            f"since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
        )
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def holder_of(state: Path, campaign: str) -> Holder | None:
    """Who holds the campaign's lock in the state file at ``state``; None when nobody does.
    Looks without waiting, and without creating anything (a read-only folder is fine)."""
    path = state.with_name(f"{state.name}.{campaign}.lock")
    try:
        handle = path.open("r")
    except OSError:
        return None
    with handle:
        try:
            _lock_exclusive(handle.fileno(), shared=True)
        except OSError:
            return _holder(handle.read()) or Holder("unknown", 0, "unknown")
    return None


def _holder(text: str) -> Holder | None:
    """The holder a lock file names ("host H pid P since DATE TIME", as `acquire` writes it);
    None when it names none (written by nothing yet, or damaged)."""
    words = text.split()
    if len(words) >= 6 and words[0] == "host" and words[2] == "pid":
        return Holder(words[1], int(words[3]) if words[3].isdigit() else 0, " ".join(words[5:]))
    return None


def _lock_exclusive(fd: int, shared: bool = False) -> None:
    """Take the file lock without waiting; OSError when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
