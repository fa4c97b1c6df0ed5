"""One run per campaign at a time, per state file.

An OS file lock is released by the kernel when its process dies, however it dies, so a lock
left by a killed run never blocks the next one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.errors import LockHeld


@contextmanager
def campaign_lock(path: Path, campaign: str) -> Iterator[None]:
    """Hold the lock of ``campaign`` in the state file at ``path`` for a run."""
    lock_path = path.with_name(f"{path.name}.{campaign}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path.open("a+")
    try:
        _lock_exclusive(handle.fileno())
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise LockHeld(
            f"campaign {campaign} is already running ({holder}) with state {path}; "
            "wait for that run to finish: nothing was sent"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        yield
    finally:
        handle.close()


def _lock_exclusive(fd: int) -> None:
    """Take the file lock without waiting; OSError when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
