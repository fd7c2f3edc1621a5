"""Instants as integer microseconds since the Unix epoch, and a zone's UTC offsets over time.

The engine walks integers rather than datetimes: exact at any second (and microsecond), and
cheap. A zone's offset changes (DST) are found once per zone and UTC year and cached, so
pricing a record costs a binary search, not a tz database call per minute.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SAMPLE_US = 3 * US_PER_HOUR  # no zone changes its offset twice within three hours


def to_us(instant: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact, no float)."""
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds


EARLIEST = to_us(datetime(2, 1, 1, tzinfo=UTC))
LATEST = to_us(datetime(9998, 1, 1, tzinfo=UTC))
"""What a record, a quote's window or a report's range must lie within: a year away from the
ends of `datetime` in every zone, where the timeline's local years (and the next one) exist
and every instant has a UTC form (PostgreSQL's included)."""
SUPPORTED_YEARS = "between the years 0002 and 9997 (UTC)"


def within_supported_years(start_us: int, end_us: int) -> bool:
    return start_us >= EARLIEST and end_us <= LATEST


def from_us(instant_us: int, tz: tzinfo | None = None) -> datetime:
    """The datetime of an instant, in `tz` (UTC by default)."""
    value = _EPOCH + timedelta(microseconds=instant_us)
    return value if tz is None or tz is UTC else value.astimezone(tz)


@lru_cache(maxsize=1 << 16)
def utc_date(day_number: int) -> date:
    """The date of a day counted from 1970-01-01 (UTC days: `instant_us // US_PER_DAY`);
    remembered, as building a datetime to take its date costs ~1 µs."""
    return date.fromordinal(day_number + _EPOCH_ORDINAL)


def utc_day_number(day: date) -> int:
    """`utc_date`'s inverse: the day counted from 1970-01-01."""
    return day.toordinal() - _EPOCH_ORDINAL


@lru_cache(maxsize=1 << 16)
def day_info(day_number: int) -> tuple[int, int]:
    """(month 1..12, weekday 0=Monday) of a day counted from 1970-01-01."""
    return date.fromordinal(day_number + _EPOCH_ORDINAL).month, (day_number + 3) % 7


def _offset_us(tz: ZoneInfo, instant_us: int) -> int:
    seconds = instant_us // US_PER_SECOND
    offset = datetime.fromtimestamp(seconds, tz).utcoffset()
    assert offset is not None
    return (offset.days * 86_400 + offset.seconds) * US_PER_SECOND + offset.microseconds


class _YearOffsets:
    """A zone's offsets over one UTC year: offset `offsets[i]` holds from `starts[i]`."""

    __slots__ = ("begin", "end", "offsets", "starts")

    def __init__(self, tz: ZoneInfo, year: int) -> None:
        self.begin = begin = to_us(datetime(year, 1, 1, tzinfo=UTC))
        self.end = to_us(datetime(year + 1, 1, 1, tzinfo=UTC))
        self.starts = [begin]
        self.offsets = [_offset_us(tz, begin)]
        probe = begin
        while probe < self.end:
            nxt = min(probe + _SAMPLE_US, self.end)
            offset = _offset_us(tz, nxt - 1)
            if offset != self.offsets[-1]:
                low, high = probe // US_PER_SECOND, (nxt - 1) // US_PER_SECOND
                while low < high:  # first second with the new offset
                    mid = (low + high) // 2
                    if _offset_us(tz, mid * US_PER_SECOND) == offset:
                        high = mid
                    else:
                        low = mid + 1
                self.starts.append(low * US_PER_SECOND)
                self.offsets.append(offset)
            probe = nxt


class ZoneOffsets:
    """UTC offsets of one IANA zone, by instant, with the instant the offset next changes."""

    __slots__ = ("_last", "_years", "tz")

    def __init__(self, name: str) -> None:
        self.tz = ZoneInfo(name)
        self._years: dict[int, _YearOffsets] = {}
        self._last: _YearOffsets | None = None

    def offset_at(self, instant_us: int) -> tuple[int, int]:
        """(offset in µs, instant until which it holds at least) for an instant.

        The second value is the next offset change or the end of the UTC year, whichever is
        first: callers split there, which is harmless (equal-rate parts are merged later).
        """
        table = self._last
        if table is None or not table.begin <= instant_us < table.end:
            year = date.fromordinal(instant_us // US_PER_DAY + _EPOCH_ORDINAL).year
            table = self._years.get(year)
            if table is None:
                table = self._years[year] = _YearOffsets(self.tz, year)
            self._last = table
        index = bisect_right(table.starts, instant_us) - 1
        until = table.starts[index + 1] if index + 1 < len(table.starts) else table.end
        return table.offsets[index], until


@lru_cache(maxsize=512)
def zone_offsets(name: str) -> ZoneOffsets:
    """The shared, cached offsets of a zone."""
    return ZoneOffsets(name)
