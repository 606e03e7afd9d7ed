# -*- test-case-name: tests.sieve.test_interpreter -*-
"""
The date and currentdate tests' view of time (RFC 5260 section 4): dates
from header fields, time zones in C{+hhmm} form, and date parts.
"""

from __future__ import annotations

import email.utils
import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Optional

DATE_PARTS = frozenset(
    {
        "year",
        "month",
        "day",
        "date",
        "julian",
        "hour",
        "minute",
        "second",
        "time",
        "iso8601",
        "std11",
        "zone",
        "weekday",
    }
)

_ZONE = re.compile(r"([+-])([0-9]{2})([0-9]{2})")
# Day 0 of the Modified Julian Day count.
_MJD_EPOCH = date(1858, 11, 17)


def parseZone(text: str) -> Optional[timezone]:
    """
    A C{+hhmm} or C{-hhmm} zone, or L{None} if the text is not one.
    """
    match = _ZONE.fullmatch(text)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    if int(hours) > 23 or int(minutes) > 59:
        return None
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-offset if sign == "-" else offset)


def zoneString(value: datetime) -> str:
    """
    The UTC offset of an aware datetime as C{+hhmm}/C{-hhmm} (zero is
    C{+0000}).
    """
    offset = value.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def headerDate(value: str, fieldName: str) -> Optional[datetime]:
    """
    The date in a header field value, in the zone it was written in, or
    L{None} when there is none to be read.  A Received field's date is what
    follows its last semicolon (RFC 5260 section 4).
    """
    if fieldName.lower() == "received":
        _, semicolon, rest = value.rpartition(";")
        if not semicolon:
            return None
        value = rest
    try:
        parsed = email.utils.parsedate_tz(value.strip())
        if parsed is None:
            return None
        year, month, day, hour, minute, second = parsed[:6]
        offset = parsed[9] or 0
        return datetime(
            year, month, day, hour, minute, min(second, 59), tzinfo=timezone(timedelta(seconds=offset))
        )
    except (ValueError, OverflowError, TypeError, IndexError):
        return None


def localNow(now: Optional[datetime]) -> datetime:
    """
    The current time as an aware datetime in the local zone: C{now} when
    given (naive meaning UTC), else the clock in the server's zone.
    """
    if now is None:
        return datetime.now(timezone.utc).astimezone()
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now


def inZone(value: datetime, zone: Optional[tzinfo]) -> datetime:
    return value if zone is None else value.astimezone(zone)


def datePart(value: datetime, part: str) -> str:
    """
    One date part of an aware datetime, as RFC 5260 section 4.2 writes it.
    """
    if part == "year":
        return f"{value.year:04d}"
    if part == "month":
        return f"{value.month:02d}"
    if part == "day":
        return f"{value.day:02d}"
    if part == "date":
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if part == "julian":
        return str((value.date() - _MJD_EPOCH).days)
    if part == "hour":
        return f"{value.hour:02d}"
    if part == "minute":
        return f"{value.minute:02d}"
    if part == "second":
        return f"{value.second:02d}"
    if part == "time":
        return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    if part == "iso8601":
        zone = zoneString(value)
        suffix = "Z" if zone == "+0000" else f"{zone[:3]}:{zone[3:]}"
        return f"{datePart(value, 'date')}T{datePart(value, 'time')}{suffix}"
    if part == "std11":
        return email.utils.format_datetime(value)
    if part == "zone":
        return zoneString(value)
    if part == "weekday":
        # Python counts from Monday = 0; RFC 5260 from Sunday = 0.
        return str((value.weekday() + 1) % 7)
    raise ValueError(f"unknown date part {part!r}")
