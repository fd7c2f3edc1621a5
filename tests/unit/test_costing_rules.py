"""Design §3, rule by rule, with hand-computed expectations."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from costing_support import (
    NOW,
    encode,
    failed,
    fixed,
    money,
    no_market,
    price,
    priced,
    profile,
    record,
    reference_cost,
    rule,
    tou,
)

from meterflow import ids
from meterflow.costing import cost_payload, price_payload
from meterflow.costing.payload import MAX_ECHOED_TEXT
from meterflow.models import (
    MAX_MESSAGE_BYTES,
    DeadLetter,
    EnergyCost,
    MarketPrices,
    SourceRef,
    dumps,
    loads,
)

D = Decimal
FLAT = profile({"IMPORT": [fixed("0.25")], "EXPORT": [fixed("0.05")]})
DAY_NIGHT = profile(
    {
        "IMPORT": [tou([rule("00:00", "07:00", "0.10"), rule("07:00", "24:00", "0.30")])],
        "EXPORT": [fixed("0.05")],
    }
)


# ---- §3.1 direction -----------------------------------------------------------------------------


def test_inbound_positive_energy_is_import() -> None:
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", "2"), FLAT)
    assert cost.tariff_direction == "IMPORT"
    assert cost.energy_flow_direction == "INBOUND"
    assert cost.data.energy.value == D("2.000000")
    assert cost.data.cost.value == D("0.500000")


def test_negative_energy_is_export_valued_at_export_rate() -> None:
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", "-2"), FLAT)
    assert cost.tariff_direction == "EXPORT"
    assert cost.energy_flow_direction == "OUTBOUND"
    assert cost.data.energy.value == D("2.000000")  # magnitude
    assert cost.data.cost.value == D("0.100000")  # what the export earns, positive


def test_outbound_positive_energy_is_export() -> None:
    body = record(
        "2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", "2", energy_flow_direction="OUTBOUND"
    )
    cost = priced(body, FLAT)
    assert (cost.tariff_direction, cost.data.cost.value) == ("EXPORT", D("0.100000"))


def test_outbound_and_negative_is_direction_conflict() -> None:
    body = record(
        "2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", "-2", energy_flow_direction="OUTBOUND"
    )
    assert failed(body, FLAT) == "direction_conflict"


@pytest.mark.parametrize(
    ("energy", "flow", "override", "expected_rate"),
    [
        ("2", "INBOUND", "EXPORT", D("0.05")),
        ("-2", "INBOUND", "IMPORT", D("0.25")),
        ("2", "OUTBOUND", "IMPORT", D("0.25")),
    ],
)
def test_tariff_direction_override(
    energy: str, flow: str, override: str, expected_rate: Decimal
) -> None:
    body = record(
        "2024-06-01T10:00:00Z",
        "2024-06-01T10:30:00Z",
        energy,
        energy_flow_direction=flow,
        tariff_direction=override,
    )
    cost = priced(body, FLAT)
    assert cost.tariff_direction == override
    assert cost.data.breakdown[0].rate == expected_rate
    assert cost.data.cost.value == D(2) * expected_rate


def test_negative_export_rate_gives_negative_value() -> None:
    location = profile({"EXPORT": [fixed("-0.02")]})
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", "-3"), location)
    assert cost.data.cost.value == D("-0.060000")


# ---- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "value", "kwh"),
    [
        ("KWH", "1.5", D("1.5")),
        ("WH", "1500", D("1.5")),
        ("KW", "3", D("1.5")),  # constant 3 kW over 30 minutes
        ("W", "3000", D("1.5")),
        ("W", "20567", D("10.2835")),  # Flatpeak's example: 20567 W over 30 min
    ],
)
def test_units(units: str, value: str, kwh: Decimal) -> None:
    body = record("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", None, units=units, value=value)
    cost = priced(body, FLAT)
    assert cost.data.energy.value == kwh.quantize(D("0.000001"))
    assert cost.data.cost.value == (kwh * D("0.25")).quantize(D("0.000001"))


def test_power_over_an_odd_duration_is_exact() -> None:
    # 1 kW over 7 s = 7/3600 kWh; at 0.36/kWh = 0.0007 exactly
    body = record("2024-06-01T10:00:00Z", "2024-06-01T10:00:07Z", None, units="KW", value="1")
    cost = priced(body, profile({"IMPORT": [fixed("0.36")]}))
    assert cost.data.cost.value == D("0.000700")
    assert cost.data.energy.value == D("0.001944")


def test_negative_units_value_is_export() -> None:
    body = record("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", None, units="WH", value="-1000")
    cost = priced(body, FLAT)
    assert (cost.tariff_direction, cost.data.cost.value) == ("EXPORT", D("0.050000"))


def test_energy_and_units_together_is_invalid() -> None:
    body = record("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", "1", units="WH", value="1000")
    assert failed(body, FLAT) == "invalid_record"


# ---- §3.2 spreading and splitting ---------------------------------------------------------------


def test_split_at_time_of_use_boundary() -> None:
    cost = priced(record("2024-06-03T05:30:00Z", "2024-06-03T06:30:00Z", "1"), DAY_NIGHT)
    # BST: 06:30–07:00 local at 0.10, 07:00–07:30 at 0.30
    assert cost.data.cost.value == D("0.200000")
    assert [(b.rate, b.energy, b.cost) for b in cost.data.breakdown] == [
        (D("0.10"), D("0.500000"), D("0.050000")),
        (D("0.30"), D("0.500000"), D("0.150000")),
    ]
    assert cost.data.breakdown[0].start_time == datetime(2024, 6, 3, 5, 30, tzinfo=UTC)
    assert cost.data.breakdown[0].end_time == datetime(2024, 6, 3, 6, 0, tzinfo=UTC)
    assert cost.data.breakdown[1].end_time == datetime(2024, 6, 3, 6, 30, tzinfo=UTC)


def test_second_level_boundaries_are_exact() -> None:
    # 06:59:59 to 07:00:02 local (BST): 1 s night, 2 s day
    cost = priced(record("2024-06-03T05:59:59Z", "2024-06-03T06:00:02Z", "3"), DAY_NIGHT)
    assert cost.data.cost.value == D("0.700000")
    assert [b.energy for b in cost.data.breakdown] == [D("1.000000"), D("2.000000")]


def test_weekday_and_month_rules_use_local_date() -> None:
    location = profile(
        {
            "IMPORT": [
                tou(
                    [
                        rule(
                            "00:00",
                            "24:00",
                            "0.20",
                            days=["MON", "TUE", "WED", "THU", "FRI"],
                            months=[1, 2, 3, 4, 5, 6],
                        ),
                        rule(
                            "00:00", "24:00", "0.10", days=["SAT", "SUN"], months=[1, 2, 3, 4, 5, 6]
                        ),
                        rule("00:00", "24:00", "0.40", months=[7, 8, 9, 10, 11, 12]),
                    ]
                )
            ]
        },
        timezone="America/New_York",
    )
    # Sunday 2024-06-30 23:00 EDT to Monday 01:00 EDT = 03:00Z..05:00Z Monday UTC
    cost = priced(record("2024-07-01T03:00:00Z", "2024-07-01T05:00:00Z", "2"), location)
    # Sun 23:00–24:00 local (June, weekend) 0.10; Mon July 00:00–01:00 local 0.40
    assert [b.rate for b in cost.data.breakdown] == [D("0.10"), D("0.40")]
    assert cost.data.cost.value == D("0.500000")


def test_adjacent_parts_at_the_same_rate_are_one_item() -> None:
    location = profile(
        {
            "IMPORT": [
                tou(
                    [rule("00:00", "12:00", "0.20"), rule("12:00", "24:00", "0.20")],
                    effective_to="2024-06-03T00:00:00Z",
                ),
                fixed("0.20", effective_from="2024-06-03T00:00:00Z"),
            ]
        }
    )
    cost = priced(record("2024-06-01T00:00:00Z", "2024-06-04T00:00:00Z", "72"), location)
    assert len(cost.data.breakdown) == 1
    assert cost.data.cost.value == D("14.400000")


def test_version_boundary_splits() -> None:
    location = profile(
        {
            "IMPORT": [
                fixed("0.20", effective_to="2024-06-01T12:00:00+01:00"),
                fixed("0.30", effective_from="2024-06-01T11:00:00Z"),
            ]
        }
    )
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T12:00:00Z", "2"), location)
    assert [b.rate for b in cost.data.breakdown] == [D("0.20"), D("0.30")]
    assert cost.data.cost.value == D("0.500000")


def test_input_offsets_do_not_change_the_result() -> None:
    utc = priced(record("2024-06-03T05:30:00Z", "2024-06-03T06:30:00Z", "1"), DAY_NIGHT)
    shifted = priced(
        record("2024-06-03T11:00:00+05:30", "2024-06-02T20:30:00-10:00", "1"), DAY_NIGHT
    )
    assert shifted.data.cost.value == utc.data.cost.value
    assert [(b.start_time, b.end_time) for b in shifted.data.breakdown] == [
        (b.start_time, b.end_time) for b in utc.data.breakdown
    ]
    # times are written in the end_time's offset
    assert dumps(shifted).count(b"-10:00") >= 4


@pytest.mark.parametrize(
    ("start", "end", "first_start"),
    [
        # the end_time's offset wins for the breakdown; `data` keeps each instant as given
        ("2024-06-03T11:00:00+05:30", "2024-06-03T05:45:00Z", "2024-06-03T05:30:00+00:00"),
        ("2024-06-03T05:30:00Z", "2024-06-03T07:45:00+01:00", "2024-06-03T06:30:00+01:00"),
        # one offset for both, UTC or not: the start as written
        ("2024-06-03T06:30:00+01:00", "2024-06-03T06:45:00+01:00", "2024-06-03T06:30:00+01:00"),
        ("2024-06-03T05:30:00Z", "2024-06-03T05:45:00Z", "2024-06-03T05:30:00+00:00"),
    ],
)
def test_a_one_part_record_starts_its_breakdown_in_the_end_time_s_offset(
    start: str, end: str, first_start: str
) -> None:
    cost = priced(record(start, end, "1"), FLAT)
    (item,) = cost.data.breakdown
    assert item.start_time.isoformat() == first_start
    assert item.end_time == cost.data.end_time
    assert cost.data.start_time.utcoffset() == datetime.fromisoformat(start).utcoffset()
    written = json.loads(dumps(cost))
    assert written["data"]["breakdown"][0]["start_time"] == first_start
    assert written["data"]["start_time"] == datetime.fromisoformat(start).isoformat()


# ---- DST ----------------------------------------------------------------------------------------


def test_london_fall_back_hour_is_priced_twice_by_its_rule() -> None:
    location = profile(
        {"IMPORT": [tou([rule("00:00", "01:30", "0.10"), rule("01:30", "24:00", "0.30")])]}
    )
    # 00:00Z = 01:00 BST, 01:00Z = 01:00 GMT, 02:00Z = 02:00 GMT
    cost = priced(record("2024-10-27T00:00:00Z", "2024-10-27T02:00:00Z", "2"), location)
    assert [b.rate for b in cost.data.breakdown] == [D("0.10"), D("0.30"), D("0.10"), D("0.30")]
    assert cost.data.cost.value == D("0.400000")


def test_london_spring_forward_hour_does_not_exist() -> None:
    location = profile(
        {
            "IMPORT": [
                tou(
                    [
                        rule("00:00", "01:30", "0.10"),
                        rule("01:30", "02:30", "0.90"),
                        rule("02:30", "24:00", "0.30"),
                    ]
                )
            ]
        }
    )
    # 00:00Z–01:00Z is 00:00–01:00 GMT (0.10); 01:00Z–02:00Z is 02:00–03:00 BST (0.90 then 0.30)
    cost = priced(record("2024-03-31T00:00:00Z", "2024-03-31T02:00:00Z", "2"), location)
    assert [b.rate for b in cost.data.breakdown] == [D("0.10"), D("0.90"), D("0.30")]
    assert cost.data.cost.value == D("0.700000")  # 1 x 0.10 + 0.5 x 0.90 + 0.5 x 0.30


@pytest.mark.parametrize(
    ("zone", "local_day", "hours"),
    [
        ("Europe/London", "2024-10-27", 25),
        ("Europe/London", "2024-03-31", 23),
        ("America/New_York", "2024-11-03", 25),
        ("America/New_York", "2024-03-10", 23),
        ("Australia/Sydney", "2024-04-07", 25),
        ("Australia/Sydney", "2024-10-06", 23),
    ],
)
def test_a_whole_dst_day_prices_every_real_hour(zone: str, local_day: str, hours: int) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    day = date.fromisoformat(local_day)
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = datetime.combine(day.fromordinal(day.toordinal() + 1), datetime.min.time(), tzinfo=tz)
    location = profile({"IMPORT": [tou([rule("00:00", "24:00", "0.10")])]}, timezone=zone)
    cost = priced(record(start.isoformat(), end.isoformat(), str(hours)), location)
    real_hours = (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 3600
    assert real_hours == hours
    assert cost.data.cost.value == D(hours) * D("0.10")


@pytest.mark.parametrize(
    ("zone", "transition_utc"),
    [
        ("Europe/London", "2024-10-27T01:00:00Z"),
        ("Europe/London", "2024-03-31T01:00:00Z"),
        ("America/New_York", "2024-11-03T06:00:00Z"),
        ("America/New_York", "2024-03-10T07:00:00Z"),
        ("Australia/Sydney", "2024-04-06T16:00:00Z"),
        ("Australia/Sydney", "2024-10-05T16:00:00Z"),
    ],
)
def test_dst_transitions_agree_with_per_second_reference(zone: str, transition_utc: str) -> None:
    rules = [
        rule("00:00", "01:15", "0.11"),
        rule("01:15", "02:00", "0.23"),
        rule("02:00", "02:40", "0.37"),
        rule("02:40", "03:20", "0.41"),
        rule("03:20", "24:00", "0.19"),
    ]
    location = profile({"IMPORT": [tou(rules)]}, timezone=zone)
    pivot = datetime.fromisoformat(transition_utc)
    start = pivot - timedelta(hours=2)
    end = pivot + timedelta(hours=2)
    cost = priced(record(start.isoformat(), end.isoformat(), "4"), location)
    expected = reference_cost(location, "IMPORT", start, end, D(4))
    assert expected is not None
    assert cost.data.cost.value == money(expected)


# ---- §3.3 no partial costs ----------------------------------------------------------------------


def test_no_version_in_force_is_tariff_not_available() -> None:
    location = profile({"IMPORT": [fixed("0.2", effective_from="2024-06-01T12:00:00Z")]})
    assert (
        failed(record("2024-06-01T11:30:00Z", "2024-06-01T12:30:00Z"), location)
        == "tariff_not_available"
    )


def test_gap_between_versions_is_tariff_not_available() -> None:
    location = profile(
        {
            "IMPORT": [
                fixed("0.2", effective_to="2024-06-01T12:00:00Z"),
                fixed("0.3", effective_from="2024-06-01T12:00:01Z"),
            ]
        }
    )
    assert (
        failed(record("2024-06-01T11:30:00Z", "2024-06-01T12:30:00Z"), location)
        == "tariff_not_available"
    )
    assert isinstance(
        price(record("2024-06-01T11:30:00Z", "2024-06-01T12:00:00Z"), location), EnergyCost
    )


def test_missing_direction_is_tariff_not_available() -> None:
    location = profile({"IMPORT": [fixed("0.2")]})
    assert (
        failed(record("2024-06-01T11:30:00Z", "2024-06-01T12:30:00Z", "-1"), location)
        == "tariff_not_available"
    )


def _inline_dynamic(
    prices: list[tuple[str, str, str]], surcharge: str | None = None
) -> dict[str, Any]:
    return {
        "type": "DYNAMIC",
        "effective_from": "2024-01-01T00:00:00Z",
        "prices": [{"valid_from": a, "valid_to": b, "rate": r} for a, b, r in prices],
        "surcharge_fixed": surcharge,
    }


def test_inline_dynamic_prices_and_surcharge() -> None:
    location = profile(
        {
            "IMPORT": [
                _inline_dynamic(
                    [
                        ("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", "0.10"),
                        ("2024-06-01T10:30:00Z", "2024-06-01T11:00:00Z", "-0.05"),
                    ],
                    surcharge="0.02",
                )
            ]
        }
    )
    cost = priced(record("2024-06-01T10:15:00Z", "2024-06-01T10:45:00Z", "1"), location)
    assert [b.rate for b in cost.data.breakdown] == [D("0.12"), D("-0.03")]
    assert cost.data.cost.value == D("0.045000")


def test_gap_between_dynamic_prices_is_tariff_not_available() -> None:
    location = profile(
        {
            "IMPORT": [
                _inline_dynamic(
                    [
                        ("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", "0.10"),
                        ("2024-06-01T10:31:00Z", "2024-06-01T11:00:00Z", "0.10"),
                    ]
                )
            ]
        }
    )
    assert (
        failed(record("2024-06-01T10:15:00Z", "2024-06-01T10:45:00Z"), location)
        == "tariff_not_available"
    )
    assert (
        failed(record("2024-06-01T09:59:00Z", "2024-06-01T10:15:00Z"), location)
        == "tariff_not_available"
    )
    assert (
        failed(record("2024-06-01T10:45:00Z", "2024-06-01T11:01:00Z"), location)
        == "tariff_not_available"
    )


def _market_day(day: str, rate: str = "0.10", currency: str | None = None) -> MarketPrices:
    begin = datetime.fromisoformat(day + "T00:00:00+00:00")
    return MarketPrices.model_validate(
        {
            "series_id": "agile",
            "day": day,
            "currency_code": currency,
            "prices": [
                {
                    "valid_from": begin.replace(hour=h).isoformat(),
                    "valid_to": (
                        begin.replace(hour=h + 1) if h < 23 else begin.replace(day=begin.day + 1)
                    ).isoformat(),
                    "rate": str(D(rate) + D(h) / 100),
                }
                for h in range(24)
            ],
        }
    )


SERIES = profile(
    {
        "IMPORT": [
            {
                "type": "DYNAMIC",
                "effective_from": "2024-01-01T00:00:00Z",
                "series_id": "agile",
                "surcharge_fixed": "0.01",
            }
        ]
    }
)


def test_series_prices_across_utc_midnight() -> None:
    days = {
        date(2024, 6, 1): _market_day("2024-06-01"),
        date(2024, 6, 2): _market_day("2024-06-02"),
    }
    cost = priced(
        record("2024-06-01T23:30:00Z", "2024-06-02T00:30:00Z", "1"),
        SERIES,
        market=lambda s, d: days.get(d) if s == "agile" else None,
    )
    # 0.5 kWh at 0.33+0.01 and 0.5 kWh at 0.10+0.01
    assert cost.data.cost.value == D("0.225000")
    assert [b.rate for b in cost.data.breakdown] == [D("0.34"), D("0.11")]


def _one_price(day: str, valid_from: str, valid_to: str, rate: str) -> MarketPrices:
    price = {"valid_from": valid_from, "valid_to": valid_to, "rate": rate}
    return MarketPrices.model_validate({"series_id": "agile", "day": day, "prices": [price]})


def test_a_days_document_prices_its_own_day_only() -> None:
    """Day 1's price ran to 02:00 on day 2: a record over midnight was priced by it, one inside
    day 2 was not, and rates (a day at a time) refused both. Clipped to its day, one instant
    has one answer: day 2's document prices 00:00-02:00, or nothing does."""
    days = {
        date(2024, 6, 1): _one_price(
            "2024-06-01", "2024-06-01T00:00:00Z", "2024-06-02T02:00:00Z", "0.5"
        ),
        date(2024, 6, 2): _one_price(
            "2024-06-02", "2024-06-02T02:00:00Z", "2024-06-03T00:00:00Z", "0.7"
        ),
    }
    market = lambda s, d: days.get(d)  # noqa: E731
    for start, end in (
        ("2024-06-01T23:30:00Z", "2024-06-02T00:30:00Z"),
        ("2024-06-02T00:00:00Z", "2024-06-02T00:30:00Z"),
    ):
        assert failed(record(start, end, "1"), SERIES, market=market) == "tariff_not_available"
    # a slot across midnight published in both days' documents prices both halves
    days[date(2024, 6, 2)] = MarketPrices.model_validate(
        {
            "series_id": "agile",
            "day": "2024-06-02",
            "prices": [
                {
                    "valid_from": "2024-06-01T00:00:00Z",
                    "valid_to": "2024-06-02T02:00:00Z",
                    "rate": "0.5",
                },
                {
                    "valid_from": "2024-06-02T02:00:00Z",
                    "valid_to": "2024-06-03T00:00:00Z",
                    "rate": "0.7",
                },
            ],
        }
    )
    cost = priced(
        record("2024-06-01T23:30:00Z", "2024-06-02T02:30:00Z", "3"), SERIES, market=market
    )
    assert [b.rate for b in cost.data.breakdown] == [D("0.51"), D("0.71")]


@pytest.mark.parametrize(
    "components", [None, [{"name": "levy", "kind": "LEVY", "type": "FIXED", "rate": "0.01"}]]
)
def test_new_market_prices_count_after_a_record_merged_across_versions(
    components: list[dict[str, Any]] | None,
) -> None:
    """The engine remembers the stretch a record's last rates hold (`rates.rate_parts`,
    `periods.rate_periods`); a part merged across a series version and a FIXED one at the same
    rate must not let the series' old price outlive its market prices."""
    levy = {} if components is None else {"components": components}
    location = profile(
        {
            "IMPORT": [
                {
                    "type": "DYNAMIC",
                    "effective_from": "2024-01-01T00:00:00Z",
                    "effective_to": "2024-06-01T12:00:00Z",
                    "series_id": "agile",
                    **levy,
                },
                fixed("0.21", "2024-06-01T12:00:00Z") | levy,
            ]
        }
    )
    days = {date(2024, 6, 1): _market_day("2024-06-01")}  # 11:00-12:00 at 0.21

    def market(series_id: str, day: date) -> MarketPrices | None:
        return days.get(day)

    def energy_rates(start: str, end: str) -> list[Decimal]:
        cost = priced(record(start, end), location, market=market)
        return [b.rate for b in cost.data.breakdown if b.component in (None, "energy")]

    assert energy_rates("2024-06-01T11:30:00Z", "2024-06-01T12:30:00Z") == [D("0.21")]  # merged
    days[date(2024, 6, 1)] = _market_day("2024-06-01", rate="0.50")  # prices published again
    assert energy_rates("2024-06-01T11:40:00Z", "2024-06-01T11:50:00Z") == [D("0.61")]


def test_series_missing_day_is_tariff_not_available() -> None:
    days = {date(2024, 6, 1): _market_day("2024-06-01")}
    body = record("2024-06-01T23:30:00Z", "2024-06-02T00:30:00Z")
    assert failed(body, SERIES, market=lambda s, d: days.get(d)) == "tariff_not_available"


def test_series_in_another_currency_is_tariff_not_available() -> None:
    days = {date(2024, 6, 1): _market_day("2024-06-01", currency="EUR")}
    body = record("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z")
    assert failed(body, SERIES, market=lambda s, d: days.get(d)) == "tariff_not_available"


def test_uncovered_time_of_use_in_unvalidated_profile_is_tariff_not_available() -> None:
    location = profile({"IMPORT": [tou([rule("00:00", "07:00", "0.10")])]})
    assert (
        failed(record("2024-06-03T09:00:00Z", "2024-06-03T10:00:00Z"), location)
        == "tariff_not_available"
    )


# ---- §3.4 rounding ------------------------------------------------------------------------------


def test_rounded_once_half_even() -> None:
    location = profile({"IMPORT": [fixed("0.0000005")]})
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", "1"), location)
    assert cost.data.cost.value == D("0.000000")
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", "3"), location)
    assert cost.data.cost.value == D("0.000002")  # 0.0000015 -> even
    assert str(cost.data.cost.value) == "0.000002"


def test_total_is_rounded_once_not_summed_from_rounded_items() -> None:
    location = profile(
        {
            "IMPORT": [
                tou([rule("00:00", "12:00", "0.0000005"), rule("12:00", "24:00", "0.0000007")])
            ]
        }
    )
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T12:00:00Z", "2"), location)
    # items: 1 kWh at 0.0000005 and 1 kWh at 0.0000007 -> 0.000000 + 0.000001;
    # total 0.0000012 -> 0.000001
    assert [b.cost for b in cost.data.breakdown] == [D("0.000000"), D("0.000001")]
    assert cost.data.cost.value == D("0.000001")


def test_thirds_do_not_lose_digits() -> None:
    cost = priced(
        record("2024-06-01T10:00:00Z", "2024-06-01T10:00:03Z", "1"),
        profile({"IMPORT": [fixed("3")]}),
    )
    assert cost.data.cost.value == D("3.000000")


def test_no_negative_zero() -> None:
    location = profile({"IMPORT": [fixed("-0.0000001")]})
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", "1"), location)
    assert str(cost.data.cost.value) == "0.000000"


# ---- §3.5 time range and absurd input -----------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-06-01T10:00:00Z", "2024-06-01T10:00:00Z"),
        ("2024-06-01T10:00:00Z", "2024-06-01T09:00:00Z"),
        ("2024-06-01T11:00:00+01:00", "2024-06-01T10:00:00Z"),  # the same instant
        ("2024-06-01T00:00:00Z", "2024-07-02T00:00:01Z"),  # 744 h + 1 s
    ],
)
def test_invalid_time_range(start: str, end: str) -> None:
    assert failed(record(start, end), FLAT) == "invalid_time_range"


def test_max_record_hours_is_inclusive_and_configurable() -> None:
    assert isinstance(
        price(record("2024-06-01T00:00:00Z", "2024-07-02T00:00:00Z"), FLAT), EnergyCost
    )
    body = record("2024-06-01T00:00:00Z", "2024-06-01T02:00:01Z")
    assert failed(body, FLAT, max_record_hours=2) == "invalid_time_range"


def test_a_remembered_range_meets_each_callers_limit_and_a_refused_one_stays_refused() -> None:
    """The engine remembers a priced range per pair of instants (`engine.interval_of`): the
    same instants priced again under a smaller `max_record_hours` are refused with the same
    reason as a first sight, and a range once refused is refused again, not remembered."""
    body = record("2024-06-01T00:00:00Z", "2024-06-01T03:00:00Z")
    assert isinstance(price(body, FLAT), EnergyCost)
    assert isinstance(price(body, FLAT), EnergyCost)  # remembered
    for _ in range(2):
        letter = price(body, FLAT, max_record_hours=2)
        assert isinstance(letter, DeadLetter)
        assert (letter.error.code, letter.error.message) == (
            "invalid_time_range",
            "the record spans more than 2 hours (MF_MAX_RECORD_HOURS)",
        )
    backwards = record("2024-06-01T03:00:00Z", "2024-06-01T00:00:00Z")
    for _ in range(2):
        assert failed(backwards, FLAT) == "invalid_time_range"


SPAN = b', "start_time": "2024-06-01T10:00:00Z", "end_time": "2024-06-01T11:00:00Z"'


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"location_id": "loc_test", "energy": 1, "start_time": "2024-06-01T10:00:00",'
        b' "end_time": "2024-06-01T11:00:00Z"}',
        b'{"location_id": "loc_test", "energy": 1, "start_time": 1717236000,'
        b' "end_time": "2024-06-01T11:00:00Z"}',
        b'{"location_id": "loc_test", "energy": NaN' + SPAN + b"}",
        b'{"location_id": "loc_test", "energy": "Infinity"' + SPAN + b"}",
        b'{"location_id": "loc_test", "energy": 1e10' + SPAN + b"}",
        b'{"location_id": "loc_test", "energy": -1e99999' + SPAN + b"}",
        b'{"location_id": "loc_test", "units": "W", "value": 1e16' + SPAN + b"}",
        b'{"location_id": "loc_test"' + SPAN + b"}",
        b'{"location_id": "loc_test", "energy": 1' + SPAN + b', "bogus": 1}',
        b'{"energy": 1' + SPAN + b"}",
    ],
)
def test_invalid_record(payload: bytes) -> None:
    result = price_payload(
        payload,
        profiles=lambda _: FLAT,
        market_prices=lambda s, d: None,
        now=NOW,
        source=SourceRef(topic="t", partition=0, offset=1),
    )
    assert isinstance(result, DeadLetter)
    assert result.error.code == "invalid_record"
    assert result.payload == payload.decode()
    assert result.payload_encoding == "utf-8"


def test_absurd_threshold_is_1e9_kwh() -> None:
    assert isinstance(
        price(record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", "1e9"), FLAT), EnergyCost
    )
    assert (
        failed(record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", "1000000000.1"), FLAT)
        == "invalid_record"
    )


def _outcome(number: str, field: str = '"energy"') -> EnergyCost | DeadLetter:
    payload = b'{"id": "mre_test", "location_id": "loc_test"' + SPAN
    return price_payload(
        payload + f", {field}: {number}}}".encode(),
        profiles=lambda _: FLAT,
        market_prices=lambda s, d: None,
        now=NOW,
    )


FIFTY_DIGITS = "1." + "0" * 48 + "1"


@pytest.mark.parametrize(
    ("number", "field", "reason"),
    [
        ("1e1000000", '"energy"', "energy value 1E+1000000 is absurd"),  # overflowed once
        ("-1e1000000", '"energy"', "energy value -1E+1000000 is absurd"),
        ("1e-1001", '"energy"', "the energy value is written with an exponent beyond ±1000"),
        ("1e-999999", '"energy"', "the energy value is written with an exponent beyond ±1000"),
        ("0E-1001", '"energy"', "the energy value is written with an exponent beyond ±1000"),
        ("1234e-1003", '"energy"', "the energy value is written with an exponent beyond ±1000"),
        ("1." + "0" * 1000 + "1", '"energy"', "more than 50 significant digits"),
        (FIFTY_DIGITS + "1", '"energy"', "the energy value has more than 50 significant digits"),
        ("1." + "0" * 50, '"energy"', "the energy value has more than 50 significant digits"),
        ("1e-999999", '"units": "W", "value"', "with an exponent beyond ±1000"),
        ("0E+1001", '"energy"', "the energy value is written with an exponent beyond ±1000"),
        ("1e-1001", '"energy": 1, "confidence"', "is written with an exponent beyond ±1000"),
        ("0e-1001", '"energy": 1, "confidence"', "is written with an exponent beyond ±1000"),
        ("0E-999999", '"energy": 1, "confidence"', "is written with an exponent beyond ±1000"),
        ("0.5" + "0" * 1500, '"energy": 1, "confidence"', "with an exponent beyond ±1000"),
    ],
)
def test_numbers_that_would_be_rounded_or_not_stored_are_invalid(
    number: str, field: str, reason: str
) -> None:
    """An energy rounded to the engine's 50 digits would be priced inexactly, and a result
    echoing 1e-999999 (jsonb keeps 16,383 places) was priced, then refused by the sink."""
    result = _outcome(number, field)
    assert isinstance(result, DeadLetter)
    assert result.error.code == "invalid_record"
    assert reason in result.error.message


@pytest.mark.parametrize(
    ("number", "field"),
    [
        (FIFTY_DIGITS, '"energy"'),
        ("-" + FIFTY_DIGITS, '"energy"'),
        ("1." + "0" * 49, '"energy"'),
        ("1e-1000", '"energy"'),
        ("1234e-1000", '"energy"'),  # leading digit at 1e-997: the places are counted
        ("5e-950", '"units": "KW", "value"'),
        ("1e-1000", '"energy": 1, "confidence"'),
        ("0e16", '"energy"'),  # a zero is no absurd energy, whatever its exponent says
        ("-0e16", '"energy"'),
        ("0E+1000", '"units": "WH", "value"'),
        ("0E-1000", '"energy"'),
    ],
)
def test_numbers_at_the_bounds_are_priced(number: str, field: str) -> None:
    result = _outcome(number, field)
    assert isinstance(result, EnergyCost), result
    echoed = json.loads(f"{{{field}: {number}}}", parse_float=Decimal)
    assert result.request.items() >= echoed.items()  # the exact number, echoed


def _minute_rules() -> list[dict[str, Any]]:
    """A rate change every minute of the day (0.1, 0.2, 0.1, ...)."""
    clock = [f"{m // 60:02d}:{m % 60:02d}" for m in range(1441)]
    return [rule(clock[m], clock[m + 1], "0.2" if m % 2 else "0.1") for m in range(1440)]


def test_a_result_larger_than_a_message_may_hold_is_a_dead_letter() -> None:
    """A breakdown has an item per rate change: ten days of minute rates are 14,400 items, 1.3
    MB written, which a broker refuses (1 MiB by default); publishing it stopped the worker,
    which met the same record again on restart. Five days still fit."""
    location = profile({"IMPORT": [tou(_minute_rules())]})
    too_long = record("2024-06-01T00:00:00Z", "2024-06-11T00:00:00Z")
    letter = price(too_long, location)
    assert isinstance(letter, DeadLetter)
    assert letter.error.code == "invalid_record"
    assert "more than the 1,000,000 a message may hold" in letter.error.message
    fits = price(record("2024-06-01T00:00:00Z", "2024-06-06T00:00:00Z"), location)
    assert isinstance(fits, EnergyCost)
    assert len(fits.data.breakdown) == 7200
    assert 500_000 < len(dumps(fits)) <= MAX_MESSAGE_BYTES


def test_non_utf8_payload_is_dead_lettered_as_base64() -> None:
    raw = b'{"location_id": "\xff"}'
    result = price_payload(raw, profiles=lambda _: FLAT, market_prices=lambda s, d: None, now=NOW)
    assert isinstance(result, DeadLetter)
    assert result.error.code == "invalid_record"
    assert result.payload_encoding == "base64"
    assert base64.b64decode(result.payload) == raw


# ---- locations, devices, identity ---------------------------------------------------------------


def test_unknown_location() -> None:
    body = record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z") | {"location_id": "loc_other"}
    assert failed(body, FLAT) == "unknown_location"


def test_unknown_device_and_attribution_to_device() -> None:
    location = profile({"IMPORT": [fixed("0.25")]}, devices=["dev_1"], live_mode=True)
    body = record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", device_id="dev_2")
    assert failed(body, location) == "unknown_device"
    cost = priced(
        record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", device_id="dev_1"), location
    )
    assert (cost.object_id, cost.device_id, cost.location_id) == ("dev_1", "dev_1", "loc_test")
    assert cost.live_mode is True
    cost = priced(record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z"), location)
    assert (cost.object_id, cost.device_id) == ("loc_test", None)


def test_result_fields_and_identity() -> None:
    body = record(
        "2024-06-01T10:00:00Z",
        "2024-06-01T12:00:00+01:00",
        2.5,
        session_reference_id="S1",
        record_reference_id="R1",
        confidence=0.8,
        non_persistent=True,
    )
    cost = priced(body, FLAT)
    # design §8.1: the reference, not the carried `id`, names the record
    expected = ids.meter_record_id_for_reference("acc_test", False, "loc_test", "R1")
    assert cost.meter_record_id == expected
    assert cost.id == ids.energy_cost_id(expected)
    assert cost.non_persistent is True
    assert cost.time_created == NOW
    assert (cost.account_id, cost.currency_code, cost.location_timezone) == (
        "acc_test",
        "GBP",
        "Europe/London",
    )
    assert cost.data.cost.confidence == D("0.8")
    assert (cost.data.session_reference_id, cost.data.record_reference_id) == ("S1", "R1")
    encoded = json.loads(dumps(cost))
    assert encoded["request"] == json.loads(encode(body))
    assert encoded["energy_units"] == "KWH"
    assert encoded["object"] == "energy_cost"
    assert encoded["data"]["energy"]["value"] == 2.5
    EnergyCost.model_validate_json(dumps(cost))  # the result satisfies its own schema


def test_the_request_is_echoed_as_received() -> None:
    """Design §2: `request` is the record as received, its text written as it came (spacing,
    a member given twice) where msgspec read it; a text only the reference decoder reads (a
    byte-order mark) is echoed as decoded. Either way the result is one JSON document."""
    body = record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", 2.5, record_reference_id="R1")
    text = json.dumps(body, indent=2).encode()
    twice = text.replace(b'"energy": 2.5', b'"energy": 9, "energy": 2.5')
    for payload, echo in (
        (text, text),
        (b"\n " + twice + b"\r\n", twice),
        (b"\xef\xbb\xbf" + text, dumps(json.loads(text, parse_float=Decimal))),
    ):
        written = dumps(
            cost_payload(payload, profiles=lambda _: FLAT, market_prices=no_market, now=NOW)
        )
        assert b'"request":' + echo + b',"data":' in written
        cost = EnergyCost.model_validate(loads(written))
        assert cost.request == json.loads(text, parse_float=Decimal)  # the last `energy`
        assert cost.data.cost.value == D("0.625000")


def test_a_padded_record_is_echoed_as_decoded_and_priced() -> None:
    """Whitespace between members counts against the result's size when the text is echoed:
    a valid record padded to a megabyte was dead-lettered as too large (a probe's finding).
    Beyond `MAX_ECHOED_TEXT` the record is echoed as decoded, written again."""
    body = record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", 2.5, record_reference_id="R1")
    compact = dumps(json.loads(json.dumps(body), parse_float=Decimal))
    for padding in (MAX_ECHOED_TEXT, 999_000):
        payload = json.dumps(body).encode().replace(b'"energy": ', b'"energy":' + b" " * padding)
        result = cost_payload(payload, profiles=lambda _: FLAT, market_prices=no_market, now=NOW)
        assert not isinstance(result, DeadLetter), result
        written = dumps(result)
        assert b'"request":' + compact + b',"data":' in written
        assert len(written) < 2_000


def test_record_without_id_gets_one_from_its_source() -> None:
    body = record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z")
    del body["id"]
    source = SourceRef(topic="meter-records", partition=3, offset=42)
    result = price_payload(
        encode(body),
        profiles=lambda _: FLAT,
        market_prices=lambda s, d: None,
        now=NOW,
        source=source,
    )
    assert isinstance(result, EnergyCost)
    expected = ids.meter_record_id_for_offset("meter-records", 3, 42)
    assert result.meter_record_id == expected
    assert result.id == ids.energy_cost_id(expected)
    with pytest.raises(ValueError, match="source"):
        price_payload(
            encode(body), profiles=lambda _: FLAT, market_prices=lambda s, d: None, now=NOW
        )


def test_unexpected_exception_becomes_dead_letter() -> None:
    def broken(location_id: str) -> Any:
        raise RuntimeError("table unavailable")

    source = SourceRef(topic="meter-records", partition=0, offset=7)
    body = encode(record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z"))
    result = price_payload(
        body, profiles=broken, market_prices=lambda s, d: None, now=NOW, source=source
    )
    assert isinstance(result, DeadLetter)
    assert result.error.code == "invalid_record"
    assert "table unavailable" in result.error.message
    assert result.source == source
    assert result.time_created == NOW
    DeadLetter.model_validate_json(dumps(result))


def test_overlapping_prices_in_unvalidated_profile_are_not_priced() -> None:
    location = profile(
        {
            "IMPORT": [
                _inline_dynamic(
                    [
                        ("2024-06-01T10:00:00Z", "2024-06-01T10:30:00Z", "0.10"),
                        ("2024-06-01T10:15:00Z", "2024-06-01T11:00:00Z", "0.20"),
                    ]
                )
            ]
        }
    )
    body = record("2024-06-01T10:00:00Z", "2024-06-01T10:10:00Z")
    assert failed(body, location) == "tariff_not_available"


def test_cost_record_raises_pricing_errors() -> None:
    from meterflow.costing import cost_record, parse_record
    from meterflow.models import PricingError

    parsed, request = parse_record(encode(record("2024-06-01T10:00:00Z", "2024-06-01T09:00:00Z")))
    with pytest.raises(PricingError) as error:
        cost_record(
            parsed,
            FLAT,
            meter_record_id="mre_x",
            request=request,
            market_prices=lambda s, d: None,
            now=NOW,
        )
    assert error.value.code == "invalid_time_range"


def test_already_decoded_text_payload_is_tolerated() -> None:
    result = price_payload(
        "{oops",  # type: ignore[arg-type]
        profiles=lambda _: FLAT,
        market_prices=lambda s, d: None,
        now=NOW,
    )
    assert isinstance(result, DeadLetter)
    assert (result.error.code, result.payload) == ("invalid_record", "{oops")
