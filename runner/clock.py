"""The engine's clock: wall time for send windows, a monotonic one for pacing and budgets.

Tests give the engine a clock on the event loop's time (faked with looptime), so retries,
Retry-After, budgets and windows play out in milliseconds.
"""

from __future__ import annotations

import time as _time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Epoch seconds (send windows, quiet hours)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back (pacing, latency, budgets)."""
        ...


class SystemClock:
    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)


SYSTEM: Clock = SystemClock()
