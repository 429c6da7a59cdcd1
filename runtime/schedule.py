"""Schedules in the site's time zone, daylight-saving safe: a range is read in local wall-clock
time on the day it is evaluated, so '19:00-06:00' means 19:00 local in winter and in summer."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def local_minutes(t_epoch: float, tz: str) -> int:
    """Minutes after local midnight at the instant `t_epoch` (UTC seconds) in zone `tz`."""
    try:
        zone = ZoneInfo(tz)
    except ZoneInfoNotFoundError:
        zone = timezone.utc
    local = datetime.fromtimestamp(t_epoch, tz=zone)
    return local.hour * 60 + local.minute


def in_ranges(minute: int, ranges) -> bool:
    """Whether a minute-of-day lies in any (start, end) range; a range may wrap midnight; end is exclusive
    except that a range ending at 23:59 includes that minute."""
    for start, end in ranges:
        if start < end:
            if start <= minute < end or (end == 23 * 60 + 59 and minute == end):
                return True
        elif minute >= start or minute < end:
            return True
    return False


def active(ranges, t_epoch: float, tz: str) -> bool:
    return bool(ranges) and in_ranges(local_minutes(t_epoch, tz), ranges)
