"""When a campaign may send: a window (``not_before`` .. ``not_after``) and quiet hours in each
customer's own time zone.

Outside the window nothing is sent, and the output says when it opens or when it closed; a
run reaching ``not_after`` stops starting requests. A recipient whose local time is within
``quiet_hours`` is *deferred*: not sent, not failed, reported with the moment their hours end,
and sent by a later run (or by this one with ``run --wait``). Time zones come from the
standard library's zoneinfo (tzdata where the platform has no zone database).
"""

from __future__ import annotations

import re
import time as time_module
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.errors import CampaignError

_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class OutsideWindow(CampaignError):
    """Now is before ``not_before`` or after ``not_after``: nothing is sent (exit 2)."""


@dataclass(frozen=True)
class Schedule:
    not_before: datetime | None = None
    not_after: datetime | None = None
    timezone: str | None = None  # an IANA name, or a template over the customer
    quiet_start: time | None = None
    quiet_end: time | None = None

    def check_window(self, now: datetime) -> None:
        """Raise `OutsideWindow` saying when the window opens, or when it closed."""
        if self.not_before is not None and now < self.not_before:
            raise OutsideWindow(
                f"the send window opens at {self.not_before.isoformat()} (in "
                f"{_span(self.not_before - now)}); nothing was sent: run again then"
            )
        if self.not_after is not None and now >= self.not_after:
            raise OutsideWindow(
                f"the send window closed at {self.not_after.isoformat()}; nothing was sent"
            )

    def quiet_until(self, zone: str, now: datetime) -> datetime | None:
        """When the quiet hours that hold ``now`` end in ``zone`` (None: not quiet), as a
        local time. Raises `ValueError` for a zone that does not exist.

        Quiet hours are spans of instants, so that what is decided and what is said agree
        across daylight-saving changes: each day's span begins the first time the local clock
        shows ``start`` and ends the first time it shows ``end`` (or later). So hours that end
        inside a skipped hour end when the clocks jump past it (03:00 in New York on the
        March change, for an end of 02:30); hours that begin inside a repeated hour begin at
        its first pass and, once begun, last until their end."""
        if self.quiet_start is None or self.quiet_end is None:
            return None
        tz = _zone(zone)
        start, end = self.quiet_start, self.quiet_end
        crosses = start > end  # e.g. 21:00-08:00
        today = now.astimezone(tz).date()
        for day in (today - timedelta(days=1), today):
            begins = _first_showing(day, start, tz)
            ends = _first_showing(day + timedelta(days=1) if crosses else day, end, tz)
            if begins <= now < ends:
                return ends.astimezone(tz)
        return None


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _first_showing(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The first instant at which the local clock in ``tz`` shows ``clock`` on ``day``, or a
    later time of that day when ``clock`` is skipped (the end of the jump)."""
    wall = datetime.combine(day, clock)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if _wall(first, tz) == wall or _wall(other, tz) == wall:
        return min(x for x in (first, other) if _wall(x, tz) == wall)
    # Skipped: the clocks jump over it between the two readings; find the jump to the second.
    low, high = int(min(first, other).timestamp()), int(max(first, other).timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), tz) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


# What an IANA zone name can look like; anything else (a path, 600 characters of "a/a/…") is
# refused before the zone database is asked, which could recurse or read a file.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,3}")


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    shown = name if len(name) <= 60 else name[:60] + "…"
    unknown = ValueError(
        f"unknown time zone {shown!r} (expected an IANA name like Asia/Ho_Chi_Minh)"
    )
    if len(name) > 64 or not _ZONE_NAME.fullmatch(name):
        raise unknown
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, RecursionError):
        raise unknown from None


def zone_problem(name: str) -> str | None:
    try:
        _zone(name)
    except ValueError as exc:
        return str(exc)
    return None


def parse_moment(text: str) -> datetime | str:
    """An ISO 8601 moment with an offset, or why not."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return "expected an ISO 8601 date and time with an offset, e.g. 2026-12-01T09:00:00+07:00"
    if moment.tzinfo is None:
        return (
            "add an offset (e.g. +07:00 or Z): without one the same text means different "
            "moments on different machines"
        )
    return moment


def parse_clock(text: str) -> time | str:
    found = _CLOCK.match(text)
    if not found:
        return "expected a local time as HH:MM, e.g. 21:00"
    return time(int(found.group(1)), int(found.group(2)))


def now() -> datetime:
    """The present moment (tests move it)."""
    return datetime.now(UTC)


def sleep(seconds: float) -> None:
    """Wait (tests move the clock instead)."""
    time_module.sleep(seconds)


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"]
    return " ".join(parts)
