"""How a standing speaks of time."""

from __future__ import annotations

from datetime import UTC, datetime

from runner.lifecycle import when


def test_a_moment_is_said_in_utc_and_in_the_campaigns_zone() -> None:
    t = datetime(2026, 12, 4, 20, 0, tzinfo=UTC).timestamp()
    assert when(t) == "2026-12-04 20:00 UTC"
    assert when(t, "Asia/Ho_Chi_Minh") == "2026-12-04 20:00 UTC (2026-12-05 03:00 Asia/Ho_Chi_Minh)"
    assert when(t, "UTC") == "2026-12-04 20:00 UTC"
    assert when(t, "Not/AZone") == "2026-12-04 20:00 UTC"  # never an error in a status line
