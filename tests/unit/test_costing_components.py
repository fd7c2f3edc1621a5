"""Design §11 in the pure core: surcharges, components, standing charges and tax.

Profiles without the new fields must price and serialize exactly as before; the new fields are
validated like the rest (a clear error naming the field, the component and the gap); components
are cut in local wall time, DST included; tax and total are each rounded once from the net.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from costing_support import (
    NOW,
    encode,
    fixed,
    generic_as_sent,
    no_market,
    priced,
    profile,
    record,
    rule,
    tou,
    written,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from meterflow.cli.profiles import profiles as profiles_command
from meterflow.contract.columns import BREAKDOWN_COLUMNS, COST_COLUMNS
from meterflow.contract.decisions import Reject
from meterflow.contract.locations import decide_location, profile_from
from meterflow.costing import cost_payload
from meterflow.costing.breakdown import one_period_breakdown, stacked_breakdown
from meterflow.costing.money import is_exact_quotient, round_money
from meterflow.costing.periods import Period, rate_periods
from meterflow.costing.rates import compiled
from meterflow.costing.timeline import to_us
from meterflow.models import EnergyCost, TariffDirection, dumps, loads
from meterflow.sink.decode import Persist, decode_cost
from meterflow.sink.rows import CostRows, Source, cost_rows
from meterflow.sink.text_rows import TextRows
from meterflow.tariffs import ProfileError
from samples import duos, levy

HOUR = ("2024-06-03T09:00:00Z", "2024-06-03T10:00:00Z")  # a Monday, 10:00-11:00 BST


def _one(version: dict[str, Any], **fields: Any) -> Any:
    return profile({"IMPORT": [version]}, **fields)


def _fixed_with_tou_component(name: str, kind: str, *rules: dict[str, Any]) -> Any:
    """FIXED 0.1 energy plus one TIME_OF_USE component: the component's own clock is tested."""
    band = {"name": name, "kind": kind, "type": "TIME_OF_USE", "rules": list(rules)}
    return _one(fixed("0.1") | {"components": [band]})


def test_a_profile_without_the_new_fields_writes_the_first_release_document() -> None:
    result = priced(record(*HOUR, "2"), _one(fixed("0.25")))
    document = loads(dumps(result))
    assert document["data"]["cost"] == {"value": Decimal("0.500000"), "confidence": 1}
    assert set(document["data"]["breakdown"][0]) == {
        "start_time",
        "end_time",
        "rate",
        "energy",
        "cost",
    }


@pytest.mark.parametrize(
    ("energy", "extras", "rate"),
    [
        (fixed("0.20"), {"surcharge_fixed": "0.05", "surcharge_percentage": "12"}, "0.28"),
        (fixed("-0.10"), {"surcharge_percentage": "20"}, "-0.12"),  # a negative price too
        (fixed("0.20"), {"surcharge_percentage": "-100"}, "0"),
        (tou([rule("00:00", "24:00", "0.10")]), {"surcharge_fixed": "0.02"}, "0.12"),
    ],
)
def test_the_fixed_surcharge_comes_first_then_the_percentage(
    energy: dict[str, Any], extras: dict[str, Any], rate: str
) -> None:
    result = priced(record(*HOUR, "1"), _one(energy | extras))
    assert result.data.cost.value == Decimal(rate)
    assert result.data.breakdown[0].rate == Decimal(rate)
    assert result.data.breakdown[0].component is None  # no component: the first release's items


def test_components_give_one_item_per_period_and_component_energy_first() -> None:
    version = fixed("0.20") | {
        "surcharge_percentage": "10",
        "components": [duos(), levy("cfd", "0.004")],
    }
    # Monday 15:30-16:30 BST: amber until 16:00, then red; 2 kWh
    body, location = record("2024-06-03T14:30:00Z", "2024-06-03T15:30:00Z", "2"), _one(version)
    result = priced(body, location)
    items = [
        (i.start_time.hour, i.component, i.rate, i.energy, i.cost) for i in result.data.breakdown
    ]
    assert items == [
        (14, "energy", Decimal("0.220"), Decimal("1.000000"), Decimal("0.220000")),
        (14, "duos", Decimal("0.0153"), Decimal("1.000000"), Decimal("0.015300")),
        (14, "cfd", Decimal("0.004"), Decimal("1.000000"), Decimal("0.004000")),
        (15, "energy", Decimal("0.220"), Decimal("1.000000"), Decimal("0.220000")),
        (15, "duos", Decimal("0.0987"), Decimal("1.000000"), Decimal("0.098700")),
        (15, "cfd", Decimal("0.004"), Decimal("1.000000"), Decimal("0.004000")),
    ]
    assert result.data.cost.value == Decimal("0.562000")
    assert written(body, location) == generic_as_sent(result, encode(body))  # the bytes sent


def test_rate_periods_cut_at_every_change_of_any_component() -> None:
    version = fixed("0.20") | {"components": [duos(), levy("cfd", "0.004")]}
    timeline = compiled(_one(version))
    start = to_us(NOW.replace(year=2024, month=6, day=3))  # Monday 00:00 UTC = 01:00 BST
    day = 86_400_000_000
    periods = rate_periods(timeline, TariffDirection.IMPORT, start, start + day, no_market)
    hours = [(p.start - start) // 3_600_000_000 for p in periods]
    # local 01:00, 07:00, 16:00, 19:00, 23:00; green goes on past midnight: no cut there
    assert hours == [0, 6, 15, 18, 22]
    assert periods[-1].end == start + day
    assert [p.rate for p in periods][:3] == [
        Decimal("0.2061"),
        Decimal("0.2193"),
        Decimal("0.3027"),
    ]
    assert all(p.names == ("energy", "duos", "cfd") for p in periods)
    assert periods[3].rates == (Decimal("0.20"), Decimal("0.0153"), Decimal("0.004"))


def test_at_fall_back_a_component_prices_the_repeated_hour_by_its_rule_twice() -> None:
    location = _fixed_with_tou_component(
        "peak",
        "NON_COMMODITY",
        rule("00:00", "01:00", "0"),
        rule("01:00", "02:00", "0.5"),
        rule("02:00", "24:00", "0"),
    )
    # 2024-10-27 London: 00:00-01:00Z is 01:00-02:00 BST, 01:00-02:00Z is 01:00-02:00 GMT
    result = priced(record("2024-10-27T00:00:00Z", "2024-10-27T03:00:00Z", "3"), location)
    items = [
        (i.start_time.hour, i.end_time.hour, i.component, i.cost) for i in result.data.breakdown
    ]
    assert items == [
        (0, 2, "energy", Decimal("0.200000")),
        (0, 2, "peak", Decimal("1.000000")),
        (2, 3, "energy", Decimal("0.100000")),
        (2, 3, "peak", Decimal("0.000000")),
    ]


def test_at_spring_forward_the_skipped_local_hour_of_a_component_never_happens() -> None:
    location = _fixed_with_tou_component(
        "skipped",
        "LEVY",
        rule("01:00", "02:00", "9"),
        rule("00:00", "01:00", "0.01"),
        rule("02:00", "24:00", "0.01"),
    )
    # 2024-03-31 London: 01:00Z jumps from 01:00 GMT to 02:00 BST
    result = priced(record("2024-03-31T00:30:00Z", "2024-03-31T01:30:00Z", "1"), location)
    assert result.data.cost.value == Decimal("0.110000")
    assert {i.component: i.rate for i in result.data.breakdown} == {
        "energy": Decimal("0.1"),
        "skipped": Decimal("0.01"),
    }


def test_tax_is_rounded_once_from_the_exact_net_and_the_total_is_value_plus_tax() -> None:
    location = _one(fixed("0.0000025"), tax_percentage="20")
    cost = priced(record(*HOUR, "1"), location).data.cost
    # net 0.0000025 -> 0.000002; tax 0.0000005 -> 0.000000; total = value + tax (design §11),
    # 0.000002, where rounding the exact 0.000003 would give a bill that does not add up
    assert (cost.value, cost.tax, cost.total) == (
        Decimal("0.000002"),
        Decimal("0.000000"),
        Decimal("0.000002"),
    )
    negative = priced(record(*HOUR, "1"), _one(fixed("-0.2"), tax_percentage="5")).data.cost
    assert (negative.value, negative.tax, negative.total) == (
        Decimal("-0.200000"),
        Decimal("-0.010000"),
        Decimal("-0.210000"),
    )


# 10:00-10:30 BST with a change at 10:10: the first period is a third of the record, so its
# energy (and a net made of thirds) has no finite decimal form; the amounts below are exact
# half-way ties that only the exact value rounds right (a 50-digit approximation of the energy
# or of the net lands beside the tie: 0.0048874999…, 0.00031250…01).
THIRDS = ("2024-06-03T09:00:00Z", "2024-06-03T09:30:00Z")


def test_tax_is_rounded_from_the_exact_net_when_the_net_has_no_finite_decimal_form() -> None:
    rules = [rule("00:00", "10:10", "0.1"), rule("10:10", "24:00", "0.2")]
    cost = priced(record(*THIRDS, "0.0625"), _one(tou(rules), tax_percentage="3")).data.cost
    # net 0.0625 × 0.5 / 3 = 0.01041666…; tax exactly 0.0003125 -> 0.000312 (half-even)
    assert (cost.value, cost.tax, cost.total) == (
        Decimal("0.010417"),
        Decimal("0.000312"),
        Decimal("0.010729"),
    )


def test_a_component_cost_is_rounded_from_the_period_s_exact_energy() -> None:
    location = _fixed_with_tou_component(
        "duos", "NON_COMMODITY", rule("00:00", "10:10", "0.2346"), rule("10:10", "24:00", "0.01")
    )
    items = priced(record(*THIRDS, "0.0625"), location).data.breakdown
    first_duos = next(i for i in items if i.component == "duos")
    # 0.0625 / 3 kWh × 0.2346 = exactly 0.0048875 -> 0.004888 (half-even)
    assert (first_duos.energy, first_duos.cost) == (Decimal("0.020833"), Decimal("0.004888"))


def test_a_standing_charge_is_not_in_a_record_cost() -> None:
    plain = priced(record(*HOUR, "1"), _one(fixed("0.3")))
    charged = priced(record(*HOUR, "1"), _one(fixed("0.3") | {"standing_charge": "0.61"}))
    assert dumps(charged) == dumps(plain)


def _base() -> dict[str, Any]:
    version = fixed("0.2") | {"components": [duos()], "standing_charge": "0.5"}
    document: dict[str, Any] = json.loads(dumps(_one(version, tax_percentage="5")))
    return document


def _version(**changes: Any) -> dict[str, Any]:
    document = _base()
    document["tariffs"]["IMPORT"][0] |= changes
    return document


_LONG = "0.0000005" + "0" * 52 + "1"  # 61 significant digits
_FIFTY = "0.0000005" + "0" * 41 + "1"  # 50: held exactly


BAD = [
    (_version(components=[levy("x", "abc")]), "rate"),
    (_version(components=[levy("x", "0.1") | {"kind": "TAX"}]), "kind"),
    (_version(surcharge_percentage="-100.01"), "surcharge_percentage"),
    (_version(standing_charge="-0.01"), "standing_charge"),
    (_version(standing_charge="1E+46"), "standing_charge"),  # absurd: a report would overflow
    (_base() | {"tax_percentage": "100.5"}, "tax_percentage"),
    (_base() | {"tax_percentage": -1}, "tax_percentage"),
    (_version(components=[levy("x", "0.1"), levy("x", "0.2")]), "two components are named 'x'"),
    # more digits than the engine holds: 0.0000005 + 1e-60 would be rounded to 0.0000005 first
    (_version(standing_charge=_LONG), "(?s)standing_charge.*more than 50 significant digits"),
    (_base() | {"tax_percentage": _LONG}, "(?s)tax_percentage.*more than 50 significant digits"),
    (_version(rate=_LONG), "(?s)rate.*more than 50 significant digits"),
    (_version(components=[levy("x", _LONG)]), "(?s)rate.*more than 50 significant digits"),
    (_version(surcharge_fixed=_LONG), "(?s)surcharge_fixed.*more than 50 significant digits"),
    (_version(components=[levy("energy", "0.1")]), "names the energy rate"),
    (_version(components=[levy("x", "0.1") | {"rules": []}]), "rules"),
]


@pytest.mark.parametrize(("document", "named"), BAD)
def test_bad_bill_fields_are_refused_naming_the_field(document: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        profile_from(document)


def test_fifty_digits_are_held_exactly() -> None:
    document = _version(standing_charge=_FIFTY, rate=_FIFTY, components=[levy("x", _FIFTY)])
    held = profile_from(document | {"tax_percentage": _FIFTY})
    (version,) = held.tariffs[TariffDirection.IMPORT]
    assert (version.standing_charge, held.tax_percentage) == (Decimal(_FIFTY), Decimal(_FIFTY))


def test_a_component_gap_or_overlap_names_the_component_and_the_gap() -> None:
    gap = duos()
    gap["rules"][1]["from"] = "08:00"
    with pytest.raises(ProfileError) as raised:
        profile_from(_version(components=[gap]))
    assert str(raised.value) == (
        "IMPORT version from 2000-01-01, component 'duos': no rule covers MON 07:00–08:00 in Jan"
    )
    overlap = duos()
    overlap["rules"][2]["from"] = "15:00"
    with pytest.raises(
        ProfileError, match="component 'duos': rules 2 and 3 overlap on MON 15:00–16:00"
    ):
        profile_from(_version(components=[overlap]))


def test_a_bad_profile_on_the_locations_topic_is_rejected_naming_the_field() -> None:
    decision = decide_location(b"loc_test", dumps(_base() | {"tax_percentage": "150"}))
    assert isinstance(decision, Reject)
    assert "tax_percentage" in decision.reason
    gap = duos()
    gap["rules"].pop()
    decision = decide_location(b"loc_test", dumps(_version(components=[gap])))
    assert isinstance(decision, Reject)
    assert "component 'duos': no rule covers SAT 00:00–24:00" in decision.reason


def test_profiles_put_exits_2_on_a_bad_bill_field(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_bytes(dumps(_version(standing_charge="-1")))
    done = CliRunner().invoke(profiles_command, ["put", str(path)])
    assert done.exit_code == 2
    assert "standing_charge" in done.output


def test_the_sink_stores_results_with_components_and_tax_on_both_paths() -> None:
    """The text path takes the pipeline's bill shapes (migration 0005); the model path, which
    it defers to for anything else, stores the same fields."""
    version = fixed("0.20") | {"components": [duos(), levy("cfd", "0.004")]}
    result = priced(
        record("2024-06-03T14:30:00Z", "2024-06-03T15:30:00Z", "2"),
        _one(version, tax_percentage="5"),
    )
    assert isinstance(result, EnergyCost)
    source = Source("energy-costs", 0, 1)
    outcome = decode_cost(b"loc_test", dumps(result), source, NOW)
    assert isinstance(outcome, Persist)
    assert isinstance(outcome.rows, TextRows)
    assert outcome.rows.breakdown.count("\n") == len(result.data.breakdown) == 6
    model = cost_rows(result, source)
    cost = dict(zip(COST_COLUMNS, model.cost, strict=True))
    assert (cost["tax"], cost["total"]) == (result.data.cost.tax, result.data.cost.total)
    assert cost["tax"] is not None
    names = [dict(zip(BREAKDOWN_COLUMNS, row, strict=True))["component"] for row in model.breakdown]
    assert names == [item.component for item in result.data.breakdown]
    assert names[:3] == ["energy", "duos", "cfd"]


def test_the_sink_stores_a_record_echoed_as_received_by_either_path() -> None:
    """The result echoes the record's own text (docs/pricing.md, step 5): a compact record
    keeps the sink's text path, a pretty-printed one with an escape takes the model path, and
    both store the record's values."""
    body = record("2024-06-03T14:30:00Z", "2024-06-03T15:30:00Z", "2", session_reference_id="é")
    location = _one(fixed("0.20"))
    source = Source("energy-costs", 0, 1)
    for text, path in (
        (dumps(body), TextRows),
        (json.dumps(body, indent=1).encode(), CostRows),  # `"\u00e9"` and line feeds
    ):
        result = cost_payload(text, profiles=lambda _: location, market_prices=no_market, now=NOW)
        outcome = decode_cost(b"loc_test", dumps(result), source, NOW)
        assert isinstance(outcome, Persist)
        assert isinstance(outcome.rows, path)
        assert loads(_stored_request(outcome.rows)) == loads(text)


def _stored_request(rows: CostRows | TextRows) -> str:
    """The `request` column's text, from either path's rows."""
    if isinstance(rows, CostRows):
        request: str = dict(zip(COST_COLUMNS, rows.cost, strict=True))["request"]
        return request
    return rows.cost.split("\t")[COST_COLUMNS.index("request")]


def test_the_sink_stores_only_validated_numbers_of_an_echoed_record() -> None:
    """A member given twice keeps its first value in the echoed text, which nothing validated:
    `1e-20000` there was sent to jsonb by the text path, and PostgreSQL refused the priced
    result (a probe's finding). The model path stores the request as decoded, the last value."""
    location = _one(fixed("0.20"))
    body = record("2024-06-03T14:30:00Z", "2024-06-03T15:30:00Z", 2)
    for first in (b"1e-20000", b"0." + b"0" * 17_000 + b"1", b"1e200000", b"[1e-20000]"):
        text = dumps(body).replace(b'"energy":2', b'"energy":' + first + b',"energy":2')
        assert first in text
        result = cost_payload(text, profiles=lambda _: location, market_prices=no_market, now=NOW)
        outcome = decode_cost(b"loc_test", dumps(result), Source("energy-costs", 0, 1), NOW)
        assert isinstance(outcome, Persist)
        assert _stored_request(outcome.rows) == dumps(body).decode()  # the last `energy`


_RATES = st.decimals(min_value=-10, max_value=10, places=6, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False),
    st.lists(_RATES, min_size=1, max_size=4),
    st.integers(min_value=1, max_value=744 * 3_600_000_000),
)
def test_one_period_breakdown_is_the_stacked_breakdown_of_that_period(
    energy: Decimal, rates: list[Decimal], length: int
) -> None:
    """The engine's shortcut for a record inside one period of rates, its energy exact (each
    cost one product of the energy), writes the items the general path writes."""
    rates_in_force = tuple(rates)
    names = ("energy", *(f"c{i}" for i in range(1, len(rates))))
    period = Period(0, length, sum(rates_in_force, Decimal(0)), rates_in_force, names)
    duration = Decimal(length)
    scaled = energy * duration  # a kWh record: its energy × its own length
    edges = (datetime(2024, 6, 3, tzinfo=UTC), "2024-06-03T00:00:00Z", "2024-06-03T01:00:00Z")
    total = round_money(energy)
    assert is_exact_quotient(energy, scaled, duration)
    assert one_period_breakdown(period, energy, total, edges) == stacked_breakdown(
        [period], 0, energy, duration, (scaled, energy, total), edges
    )


@pytest.mark.parametrize(
    "version",
    [
        fixed("-0.05") | {"surcharge_percentage": "-100"},  # −0.05 × 0: −0.0000
        fixed("-0.00"),
        fixed("0.1") | {"components": [levy("x", "-0")]},
    ],
)
def test_a_zero_rate_is_written_without_a_sign(version: dict[str, Any]) -> None:
    """`"rate":-0.0000` was written in every breakdown item (and by the rates view)."""
    text = written(record(*HOUR, "1"), _one(version))
    assert b'"rate":-0' not in text, text
    assert b'"rate":0' in text
