"""Rates and slots ahead of time (design §12, `costing.quotes`).

Rates are checked against the per-second reference of `costing_support` (the rate in force at
every second is the rate of the period holding it); slots against a brute-force search over
every whole minute, with minute weights from the same per-second reference, so neither the
periods nor the selection is trusted by its own test.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from costing_support import fixed, no_market, profile, rates_at, rule, tou
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_costing_properties import scenario

from meterflow.costing.money import round_money
from meterflow.costing.quotes import (
    MAX_WINDOW_US,
    QuoteError,
    Segment,
    Slot,
    minute_window,
    rates,
    slots,
)
from meterflow.costing.timeline import US_PER_MINUTE, US_PER_SECOND, from_us, to_us
from meterflow.models import LocationProfile, PricingError, TariffDirection
from samples import duos, levy

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMPORT = TariffDirection.IMPORT


def _at(text: str) -> int:
    return to_us(datetime.fromisoformat(text))


def _second_rates(
    location: LocationProfile, direction: str, start: int, seconds: int
) -> list[dict[str, Decimal] | None]:
    return [
        rates_at(location, direction, from_us(start + k * US_PER_SECOND)) for k in range(seconds)
    ]


@SETTINGS
@given(scenario(max_seconds=2 * 3600, gaps=True), st.sampled_from(["IMPORT", "EXPORT"]))
def test_rates_agree_with_the_per_second_reference(case: dict[str, Any], direction: str) -> None:
    location = case["profile"]
    start, end = to_us(case["start"]), to_us(case["end"])
    expected = _second_rates(location, direction, start, (end - start) // US_PER_SECOND)
    if any(found is None for found in expected):
        with pytest.raises(PricingError) as raised:
            rates(location, TariffDirection(direction), start, end, no_market)
        assert raised.value.code == "tariff_not_available"
        return
    periods = rates(location, TariffDirection(direction), start, end, no_market)
    assert periods[0].start == start
    assert periods[-1].end == end
    for before, after in itertools.pairwise(periods):
        assert before.end == after.start
        # maximal: neighbours differ in the total or in some component's rate
        assert (before.rate, before.names, before.rates) != (after.rate, after.names, after.rates)
    index = 0
    for k, found in enumerate(expected):
        instant = start + k * US_PER_SECOND
        while periods[index].end <= instant:
            index += 1
        period = periods[index]
        assert found is not None
        assert dict(zip(period.names, period.rates, strict=True)) == found, from_us(instant)
        assert period.rate == sum(found.values(), Decimal(0))


def _brute_force(
    weights: list[Decimal], first: int, duration: int, segment: Segment, contiguous: bool
) -> list[Slot]:
    """Every minute (or every window) compared with every other: the obviously right answer."""

    def better(weight: Decimal) -> Decimal:
        return weight if segment is Segment.LOW else -weight

    if contiguous:
        windows = [sum(weights[m : m + duration]) for m in range(len(weights) - duration + 1)]
        best = min(range(len(windows)), key=lambda m: (better(windows[m]), m))
        chosen = set(range(best, best + duration))
    else:
        order = sorted(range(len(weights)), key=lambda m: (better(weights[m]), m))
        chosen = set(order[:duration])
    found: list[Slot] = []
    run: list[int] = []
    for minute in sorted(chosen):
        if run and minute != run[-1] + 1:
            found.append(_slot(run, weights, first))
            run = []
        run.append(minute)
    found.append(_slot(run, weights, first))
    return found


def _slot(run: list[int], weights: list[Decimal], first: int) -> Slot:
    total = sum((weights[m] for m in run), Decimal(0))
    average = total / (len(run) * US_PER_MINUTE)
    start = first + run[0] * US_PER_MINUTE
    return Slot(start, start + len(run) * US_PER_MINUTE, round_money(average))


@settings(SETTINGS, max_examples=60)
@given(
    scenario(max_seconds=150 * 60, gaps=True),
    st.sampled_from(["IMPORT", "EXPORT"]),
    st.sampled_from(list(Segment)),
    st.booleans(),
    st.data(),
)
def test_slots_agree_with_a_brute_force_search_over_every_minute(
    case: dict[str, Any], direction: str, segment: Segment, contiguous: bool, data: st.DataObject
) -> None:
    location = case["profile"]
    start = to_us(case["start"])  # the profile covers start ± 6 h, up to a random gap
    seconds = data.draw(st.integers(2, 150)) * 60 + data.draw(st.integers(-59, 59))
    end = start + seconds * US_PER_SECOND
    first = -(-start // US_PER_MINUTE) * US_PER_MINUTE  # the window's whole clock minutes
    last = end // US_PER_MINUTE * US_PER_MINUTE
    available = max(last - first, 0) // US_PER_MINUTE
    duration = data.draw(st.integers(1, available + 1))
    call = {"duration_minutes": duration, "segment": segment, "contiguous": contiguous}
    if duration > available:
        with pytest.raises(QuoteError) as raised:
            slots(location, TariffDirection(direction), start, end, no_market, **call)
        assert raised.value.code == "invalid_duration"
        event("longer than the window")
        return
    window = _second_rates(location, direction, start, (end - start) // US_PER_SECOND)
    if any(found is None for found in window):  # part-minutes at the ends included
        with pytest.raises(PricingError):
            slots(location, TariffDirection(direction), start, end, no_market, **call)
        event("a gap")
        return
    seconds = _second_rates(location, direction, first, (last - first) // US_PER_SECOND)
    weights = [
        sum(
            (sum(found.values(), Decimal(0)) for found in seconds[m * 60 : m * 60 + 60] if found),
            Decimal(0),
        )
        * US_PER_SECOND
        for m in range(len(seconds) // 60)
    ]
    got = slots(location, TariffDirection(direction), start, end, no_market, **call)
    event("compared")
    assert got == _brute_force(weights, first, duration, segment, contiguous)


def _uk(rules: list[dict[str, Any]], **extra: Any) -> LocationProfile:
    return profile({"IMPORT": [tou(rules) | extra]}, timezone="Europe/London")


def _show(found: list[Slot]) -> list[tuple[str, str, str]]:
    return [
        (from_us(s.start).isoformat()[:16], from_us(s.end).isoformat()[:16], str(s.rate_avg))
        for s in found
    ]


def test_ties_go_to_the_earliest_minutes_and_windows() -> None:
    location = profile({"IMPORT": [fixed("0.2")]})
    start, end = _at("2024-06-03T10:00:00+00:00"), _at("2024-06-03T14:00:00+00:00")
    for contiguous in (False, True):
        for segment in Segment:
            got = slots(
                location,
                IMPORT,
                start,
                end,
                no_market,
                duration_minutes=90,
                segment=segment,
                contiguous=contiguous,
            )
            assert _show(got) == [("2024-06-03T10:00", "2024-06-03T11:30", "0.200000")]


def test_low_and_high_slots_on_a_uk_day_with_duos_bands() -> None:
    """Weekday DUoS red 16:00–19:00 on a cheap night: the dearest 4 h are split, the dearest
    window of 4 h holds the whole red band and the amber hour before it."""
    rules = [rule("00:00", "07:00", "0.10"), rule("07:00", "24:00", "0.25")]
    location = profile(
        {"IMPORT": [tou(rules) | {"components": [duos(), levy("levy", "0.01")]}]},
        timezone="Europe/London",
    )
    start, end = _at("2024-12-02T12:00:00+00:00"), _at("2024-12-03T12:00:00+00:00")

    def ask(segment: Segment, contiguous: bool) -> list[tuple[str, str, str]]:
        found = slots(
            location,
            IMPORT,
            start,
            end,
            no_market,
            duration_minutes=240,
            segment=segment,
            contiguous=contiguous,
        )
        return _show(found)

    # night: 0.10 + green 0.0021 + levy 0.01; red: 0.25 + 0.0987 + 0.01; amber: 0.25 + 0.0153
    assert ask(Segment.LOW, False) == [("2024-12-03T00:00", "2024-12-03T04:00", "0.112100")]
    assert ask(Segment.HIGH, False) == [  # red, then the earliest amber hour (ties)
        ("2024-12-02T12:00", "2024-12-02T13:00", "0.275300"),
        ("2024-12-02T16:00", "2024-12-02T19:00", "0.358700"),
    ]
    # 3 h red + 1 h amber; the amber hour before red (15:00) is earlier than the one after
    assert ask(Segment.HIGH, True) == [("2024-12-02T15:00", "2024-12-02T19:00", "0.337850")]


def test_the_cheap_night_is_an_hour_longer_at_fall_back() -> None:
    """Cheap 00:00–05:00 local: 5 h on most nights, 6 h on the night clocks go back (London,
    27 October 2024), so a 330-minute window fits in the cheap band on that night only."""
    location = _uk([rule("00:00", "05:00", "0.07"), rule("05:00", "24:00", "0.30")])
    for day, expected in (
        ("2024-10-26", "0.090909"),  # (300 × 0.07 + 30 × 0.30) / 330: 5 h cheap, 30 min dear
        ("2024-10-27", "0.070000"),
    ):
        night = datetime.fromisoformat(f"{day}T00:00:00+00:00") - timedelta(hours=3)
        start, end = to_us(night), to_us(night + timedelta(hours=12))
        found = slots(
            location, IMPORT, start, end, no_market, duration_minutes=330, contiguous=True
        )
        assert [str(s.rate_avg) for s in found] == [expected]
    periods = rates(
        location,
        IMPORT,
        _at("2024-10-26T22:00:00+00:00"),
        _at("2024-10-27T06:00:00+00:00"),
        no_market,
    )
    assert [(from_us(p.start).isoformat()[:16], str(p.rate)) for p in periods] == [
        ("2024-10-26T22:00", "0.30"),
        ("2024-10-26T23:00", "0.07"),  # 00:00 BST
        ("2024-10-27T05:00", "0.30"),  # 05:00 GMT, six hours later
    ]


def test_the_skipped_hour_at_spring_forward_never_happens() -> None:
    """A local 01:00–02:00 band does not exist on 31 March 2024 in London."""
    location = _uk(
        [
            rule("00:00", "01:00", "0.2"),
            rule("01:00", "02:00", "0.05"),
            rule("02:00", "24:00", "0.2"),
        ]
    )
    periods = rates(
        location,
        IMPORT,
        _at("2024-03-30T23:00:00+00:00"),
        _at("2024-03-31T03:00:00+00:00"),
        no_market,
    )
    assert [(from_us(p.start).isoformat()[:16], str(p.rate)) for p in periods] == [
        ("2024-03-30T23:00", "0.2")
    ]
    found = slots(
        location,
        IMPORT,
        _at("2024-03-30T23:00:00+00:00"),
        _at("2024-04-01T03:00:00+00:00"),
        no_market,
        duration_minutes=60,
    )
    assert _show(found) == [("2024-04-01T00:00", "2024-04-01T01:00", "0.050000")]  # BST 01:00


def test_a_minute_cut_by_a_price_change_is_weighted_by_seconds() -> None:
    location = profile(
        {
            "IMPORT": [
                {
                    "type": "DYNAMIC",
                    "effective_from": "2000-01-01T00:00:00Z",
                    "prices": [
                        {
                            "valid_from": "2024-06-03T10:00:00Z",
                            "valid_to": "2024-06-03T10:00:15Z",
                            "rate": "0.4",
                        },
                        {
                            "valid_from": "2024-06-03T10:00:15Z",
                            "valid_to": "2024-06-03T11:00:00Z",
                            "rate": "0.2",
                        },
                    ],
                }
            ]
        }
    )
    start, end = _at("2024-06-03T10:00:00+00:00"), _at("2024-06-03T10:03:00+00:00")
    low = slots(location, IMPORT, start, end, no_market, duration_minutes=2)
    high = slots(location, IMPORT, start, end, no_market, duration_minutes=1, segment=Segment.HIGH)
    assert _show(low) == [("2024-06-03T10:01", "2024-06-03T10:03", "0.200000")]
    assert _show(high) == [("2024-06-03T10:00", "2024-06-03T10:01", "0.250000")]


def test_a_gap_in_the_window_is_tariff_not_available() -> None:
    location = profile({"IMPORT": [fixed("0.2", effective_to="2024-06-03T12:00:00Z")]})
    start, end = _at("2024-06-03T10:00:00+00:00"), _at("2024-06-03T14:00:00+00:00")
    for ask in (
        lambda: rates(location, IMPORT, start, end, no_market),
        lambda: slots(location, IMPORT, start, end, no_market, duration_minutes=10),
        lambda: rates(location, TariffDirection.EXPORT, start, start + 1, no_market),
    ):
        with pytest.raises(PricingError) as raised:
            ask()
        assert raised.value.code == "tariff_not_available"


def test_a_gap_in_a_part_minute_no_slot_uses_is_still_a_gap() -> None:
    # the rates' rule: any instant of the window without a rate; slots take whole minutes
    location = profile({"IMPORT": [fixed("0.2", effective_to="2024-06-03T11:00:15Z")]})
    start, end = _at("2024-06-03T10:00:00+00:00"), _at("2024-06-03T11:00:30+00:00")
    late = profile({"IMPORT": [fixed("0.2", effective_from="2024-06-03T09:59:50Z")]})
    early = _at("2024-06-03T09:59:40+00:00")
    for ask in (
        lambda: slots(location, IMPORT, start, end, no_market, duration_minutes=10),
        lambda: slots(late, IMPORT, early, end, no_market, duration_minutes=10),
        lambda: rates(location, IMPORT, start, end, no_market),
    ):
        with pytest.raises(PricingError) as raised:
            ask()
        assert raised.value.code == "tariff_not_available"


@pytest.mark.parametrize(
    ("start", "end", "duration", "code"),
    [
        ("2024-06-03T10:00:00+00:00", "2024-06-03T10:00:00+00:00", 1, "invalid_time_range"),
        ("2024-06-03T10:00:00+00:00", "2024-06-03T09:00:00+00:00", 1, "invalid_time_range"),
        ("2024-06-01T00:00:00+00:00", "2024-07-02T00:00:01+00:00", 1, "invalid_time_range"),
        ("2024-06-03T10:00:00+00:00", "2024-06-03T11:00:00+00:00", 0, "invalid_duration"),
        ("2024-06-03T10:00:00+00:00", "2024-06-03T11:00:00+00:00", -5, "invalid_duration"),
        ("2024-06-03T10:00:00+00:00", "2024-06-03T11:00:00+00:00", 61, "invalid_duration"),
        # 10:00:30–11:00:30 holds only 59 whole clock minutes
        ("2024-06-03T10:00:30+00:00", "2024-06-03T11:00:30+00:00", 60, "invalid_duration"),
        ("2024-06-03T10:00:10+00:00", "2024-06-03T10:00:50+00:00", 1, "invalid_duration"),
        # a year from the ends of `datetime`, where a local year (or the next) cannot be built
        ("9999-12-30T00:00:00+00:00", "9999-12-31T00:00:00+00:00", 1, "invalid_time_range"),
        ("9997-12-31T23:00:00+00:00", "9998-01-01T00:00:01+00:00", 1, "invalid_time_range"),
        ("0001-01-01T00:30:00+01:00", "0001-01-02T00:00:00+00:00", 1, "invalid_time_range"),
    ],
)
def test_bad_windows_and_durations_are_refused_with_a_code(
    start: str, end: str, duration: int, code: str
) -> None:
    with pytest.raises(QuoteError) as raised:
        minute_window(_at(start), _at(end), duration)
    assert raised.value.code == code


def test_a_window_of_exactly_31_days_is_allowed() -> None:
    location = profile({"IMPORT": [fixed("0.2")]})
    start = _at("2024-06-01T00:00:00+00:00")
    assert len(rates(location, IMPORT, start, start + MAX_WINDOW_US, no_market)) == 1
    found = slots(
        location, IMPORT, start, start + MAX_WINDOW_US, no_market, duration_minutes=31 * 1440
    )
    assert _show(found) == [("2024-06-01T00:00", "2024-07-02T00:00", "0.200000")]
    with pytest.raises(QuoteError):
        rates(location, IMPORT, start, start + MAX_WINDOW_US + 1, no_market)


def test_the_best_window_may_end_at_a_rate_change_rather_than_start_at_one() -> None:
    """0.3 then 0.1 then 0.5: the cheapest 90 minutes end where 0.1 ends (10:30–12:00),
    neither starting at a rate change nor at the window's ends."""
    location = _uk(
        [
            rule("00:00", "11:00", "0.3"),
            rule("11:00", "12:00", "0.1"),
            rule("12:00", "24:00", "0.5"),
        ]
    )
    start, end = _at("2024-01-08T10:00:00+00:00"), _at("2024-01-08T14:00:00+00:00")
    found = slots(location, IMPORT, start, end, no_market, duration_minutes=90, contiguous=True)
    assert _show(found) == [("2024-01-08T10:30", "2024-01-08T12:00", "0.166667")]
    dearest = slots(
        location,
        IMPORT,
        start,
        end,
        no_market,
        duration_minutes=150,
        segment=Segment.HIGH,
        contiguous=True,
    )  # 11:30–14:00: 30 min at 0.1 + 120 min at 0.5 beats 10:00–12:30 and every other start
    assert _show(dearest) == [("2024-01-08T11:30", "2024-01-08T14:00", "0.420000")]


def test_quotes_read_from_cached_days_equal_one_uncached_walk() -> None:
    """`rates` and `slots` reuse whole UTC days of the timeline: over windows that start and end
    inside a day, cross midnight (merges at the seam) and the October clock change, they equal
    one `rate_periods` walk of the whole window, asked twice (the second from the cache)."""
    from meterflow.costing.periods import rate_periods
    from meterflow.costing.quotes import _blocks, _one_window
    from meterflow.costing.rates import compiled

    location = profile(
        {"IMPORT": [tou([rule("00:00", "24:00", "0.20")]) | {"components": [duos()]}]},
        timezone="Europe/London",
    )
    for start, end in (
        ("2024-10-25T21:47:13+00:00", "2024-10-29T03:10:00+00:00"),
        ("2024-10-26T00:00:00+00:00", "2024-10-28T00:00:00+00:00"),
        ("2024-10-27T16:30:00+00:00", "2024-10-27T17:00:00.000001+00:00"),
    ):
        low, high = _at(start), _at(end)
        walked = rate_periods(compiled(location), IMPORT, low, high, no_market)
        for _ in range(2):
            assert rates(location, IMPORT, low, high, no_market) == walked
        first, last = minute_window(low, high, 30)
        whole = rate_periods(compiled(location), IMPORT, first, last, no_market)
        expected = _one_window(_blocks(whole), first, last, 30, Segment.HIGH)
        found = slots(
            location,
            IMPORT,
            low,
            high,
            no_market,
            duration_minutes=30,
            segment=Segment.HIGH,
            contiguous=True,
        )
        assert found == expected


def test_a_day_with_a_gap_still_prices_the_part_of_it_a_window_asks_for() -> None:
    """A day that cannot be cached whole (no tariff after 12:00) still answers a window before
    the gap, and a window reaching the gap is tariff_not_available, as without the cache."""
    location = profile(
        {"IMPORT": [fixed("0.30", effective_to="2024-06-03T12:00:00Z")]}, timezone="UTC"
    )
    start = _at("2024-06-02T08:00:00+00:00")
    assert len(rates(location, IMPORT, start, _at("2024-06-03T11:00:00+00:00"), no_market)) == 1
    with pytest.raises(PricingError):
        rates(location, IMPORT, start, _at("2024-06-03T12:00:01+00:00"), no_market)
