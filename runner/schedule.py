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
from datetime import UTC, datetime, time, timedelta
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
        """When the quiet hours that hold ``now`` end in ``zone`` (None: not quiet).
        Raises `ValueError` for a zone that does not exist."""
        if self.quiet_start is None or self.quiet_end is None:
            return None
        local = now.astimezone(_zone(zone))
        start, end = self.quiet_start, self.quiet_end
        clock = local.time().replace(tzinfo=None)
        crosses = start > end  # e.g. 21:00-08:00
        quiet = (clock >= start or clock < end) if crosses else (start <= clock < end)
        if not quiet:
            return None
        opens = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if opens <= local:
            opens += timedelta(days=1)
        return opens


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
