"""docs/pricing.md's worked UK example prices to exactly the numbers the page writes.

The page's profile and record blocks are priced by the engine; the result block, the table and
the bold figures in the text must all agree with that result, so the example cannot rot.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from meterflow.api.bills import Bill, summed_rows
from meterflow.api.schemas import Aggregation
from meterflow.contract.locations import profile_from
from meterflow.costing import price_payload
from meterflow.costing.standing import standing_days
from meterflow.models import EnergyCost, TariffDirection, dumps, loads

DOC = Path(__file__).resolve().parents[2] / "docs" / "pricing.md"


def _block(text: str, name: str) -> Any:
    found = re.search(rf"<!-- example: {name} -->\n```json\n(.*?)\n```", text, re.DOTALL)
    assert found is not None, f"no `{name}` block in {DOC.name}"
    return loads(found.group(1))


def _example() -> tuple[str, Any, EnergyCost]:
    text = DOC.read_text(encoding="utf-8")
    location = profile_from(_block(text, "profile"))
    result = price_payload(
        dumps(_block(text, "record")),
        profiles=lambda lid: location if lid == location.location_id else None,
        market_prices=lambda series, day: None,
        now=datetime(2024, 12, 3, tzinfo=UTC),
    )
    assert isinstance(result, EnergyCost), result
    return text, location, result


def test_the_result_block_is_what_the_engine_writes() -> None:
    text, _, result = _example()
    written = loads(dumps(result))["data"]
    assert _block(text, "result") == {
        "cost": written["cost"],
        "breakdown": written["breakdown"],
    }


def test_the_table_and_the_figures_in_the_text_match_the_result() -> None:
    text, location, result = _example()
    rows = re.findall(
        r"^\| (\d\d:\d\d)–(\d\d:\d\d) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| \w+ ([\d.]+) \|"
        r" ([\d.]+) \| ([\d.]+) \|$",
        text,
        re.MULTILINE,
    )
    items = result.data.breakdown
    assert len(rows) * 2 == len(items) == 6
    for row, (energy, duos) in zip(rows, zip(items[::2], items[1::2], strict=True), strict=True):
        start, end, kwh, rate, cost, duos_rate, duos_cost, total_rate = row
        assert (energy.component, duos.component) == ("energy", "duos")
        assert (energy.start_time.strftime("%H:%M"), energy.end_time.strftime("%H:%M")) == (
            start,
            end,
        )
        assert energy.energy == duos.energy == Decimal(kwh)
        assert (energy.rate, energy.cost) == (Decimal(rate), Decimal(cost))
        assert (duos.rate, duos.cost) == (Decimal(duos_rate), Decimal(duos_cost))
        assert energy.rate + duos.rate == Decimal(total_rate)
    cost = result.data.cost
    bold = [Decimal(value) for value in re.findall(r"\*\*([\d.]+)\*\*", text)]
    version = location.tariffs[next(iter(location.tariffs))][0]
    assert [cost.value, cost.tax, cost.total, version.standing_charge] == bold[-7:-3]
    assert location.tax_percentage == 5


def test_the_days_report_row_is_the_one_the_api_sums() -> None:
    """The last three bold figures: the DAY report row of 2 December (docs/api.md, Bills in
    reports), summed by the API's own code from the stored record and the standing days."""
    text, location, result = _example()
    zone = ZoneInfo(location.timezone)
    start, end = datetime(2024, 12, 2, tzinfo=zone), datetime(2024, 12, 3, tzinfo=zone)
    days = standing_days(location, TariffDirection.IMPORT, start, end)
    assert [d.charge for d in days] == [Decimal("0.5353")]
    cost = result.data.cost
    stored = {
        "local_start": start.replace(tzinfo=None),  # as PostgreSQL answers it: naive local
        "energy_kwh": result.data.energy.value,
        "cost": cost.value,
        "confidence": cost.confidence,
        "records": 1,
        "tax": cost.tax,
        "total": cost.total,
        "taxed": 1,
    }
    bill = Bill(days, location.tax_percentage)
    (row,) = summed_rows([stored], bill, Aggregation.DAY, zone)
    bold = [Decimal(value) for value in re.findall(r"\*\*([\d.]+)\*\*", text)]
    assert [row.cost.value, row.cost.tax, row.cost.total] == bold[-3:]
    assert row.standing_charge is not None
    assert (row.standing_charge.value, row.standing_charge.days) == (Decimal("0.5353"), 1)
