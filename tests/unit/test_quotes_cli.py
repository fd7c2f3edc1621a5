"""`meterflow rates` and `meterflow slots` (design §12 offline): the core's answers, as a table
or as JSON, and the exit status of each kind of bad input."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from costing_support import no_market

from meterflow.cli import main
from meterflow.costing import quotes
from meterflow.costing.timeline import from_us, to_us
from meterflow.models import LocationProfile, TariffDirection, loads
from samples import london, quote_tariff

PROFILE: dict[str, Any] = london(quote_tariff(), location_id="loc_cli", account_id="acc_cli")
START, END = "2024-12-02T12:00:00Z", "2024-12-03T12:00:00+01:00"


def _run(tmp_path: Path, *args: str, profile: dict[str, Any] = PROFILE) -> Result:
    path = tmp_path / "location.json"
    path.write_text(json.dumps(profile))
    return CliRunner().invoke(main, [args[0], str(path), *args[1:]])


def _us(text: str) -> int:
    return to_us(datetime.fromisoformat(text))


def test_rates_json_is_the_cores_periods_in_the_to_offset(tmp_path: Path) -> None:
    done = _run(tmp_path, "rates", "--from", START, "--to", END, "--json")
    assert done.exit_code == 0, done.output
    doc = loads(done.stdout_bytes)
    assert (doc["location_id"], doc["direction"], doc["currency_code"]) == (
        "loc_cli",
        "IMPORT",
        "GBP",
    )
    expected = quotes.rates(
        LocationProfile.model_validate(PROFILE),
        TariffDirection.IMPORT,
        _us(START),
        _us(END),
        no_market,
    )
    assert [
        (i["valid_from"], i["valid_to"], i["tariff"]["rate"], [c["rate"] for c in i["components"]])
        for i in doc["data"]
    ] == [
        (
            from_us(p.start, datetime.fromisoformat(END).tzinfo).isoformat(),
            from_us(p.end, datetime.fromisoformat(END).tzinfo).isoformat(),
            p.rate,
            list(p.rates),
        )
        for p in expected
    ]
    assert doc["data"][0]["valid_from"] == "2024-12-02T13:00:00+01:00"
    assert doc["data"][1]["tariff"]["rate"] == Decimal("0.3487")  # 0.25 + red 0.0987


@pytest.mark.parametrize("segment", ["LOW", "HIGH"])
@pytest.mark.parametrize("contiguous", [False, True])
def test_slots_json_is_the_cores_answer(tmp_path: Path, segment: str, contiguous: bool) -> None:
    args = ["slots", "--from", START, "--to", END, "--duration", "240", "--segment", segment]
    done = _run(tmp_path, *args, *(["--contiguous"] if contiguous else []), "--json")
    assert done.exit_code == 0, done.output
    expected = quotes.slots(
        LocationProfile.model_validate(PROFILE),
        TariffDirection.IMPORT,
        _us(START),
        _us(END),
        no_market,
        duration_minutes=240,
        segment=quotes.Segment(segment),
        contiguous=contiguous,
    )
    zone = datetime.fromisoformat(END).tzinfo
    assert [
        (i["start_time"], i["end_time"], i["tariff"]["rate_avg"])
        for i in loads(done.stdout_bytes)["data"]
    ] == [
        (from_us(s.start, zone).isoformat(), from_us(s.end, zone).isoformat(), s.rate_avg)
        for s in expected
    ]


def test_tables_list_the_periods_and_the_slots(tmp_path: Path) -> None:
    done = _run(tmp_path, "rates", "--from", START, "--to", END)
    assert done.exit_code == 0, done.output
    assert "2024-12-02 17:00+01:00" in done.output
    assert "0.3487" in done.output
    assert "duos" in done.output
    done = _run(tmp_path, "slots", "--from", START, "--to", END, "--duration", "240")
    assert done.exit_code == 0, done.output
    assert "2024-12-03 01:00+01:00" in done.output  # 00:00 GMT, the cheap night
    assert "0.102100" in done.output


def test_market_prices_come_from_a_file(tmp_path: Path) -> None:
    profile = PROFILE | {
        "tariffs": {
            "IMPORT": [
                {"type": "DYNAMIC", "series_id": "agile", "effective_from": "2024-01-01T00:00:00Z"}
            ]
        }
    }
    day = {
        "series_id": "agile",
        "day": "2024-12-02",
        "prices": [
            {"valid_from": "2024-12-02T00:00:00Z", "valid_to": "2024-12-02T12:00:00Z", "rate": 0.3},
            {"valid_from": "2024-12-02T12:00:00Z", "valid_to": "2024-12-03T00:00:00Z", "rate": 0.1},
        ],
    }
    prices = tmp_path / "prices.jsonl"
    prices.write_text(json.dumps(day) + "\n")
    window = ["--from", "2024-12-02T06:00:00Z", "--to", "2024-12-02T18:00:00Z"]
    args = ["slots", *window, "--duration", "60", "--market-prices", str(prices), "--json"]
    done = _run(tmp_path, *args, profile=profile)
    assert done.exit_code == 0, done.output
    assert [i["start_time"] for i in loads(done.stdout_bytes)["data"]] == [
        "2024-12-02T12:00:00+00:00"
    ]
    done = _run(tmp_path, *args[:-3], "--json", profile=profile)  # no prices: not available
    assert done.exit_code == 1
    assert "tariff_not_available" in done.output


@pytest.mark.parametrize(
    ("args", "status", "said"),
    [
        (["rates", "--from", START, "--to", START], 2, "invalid_time_range"),
        (["rates", "--from", START, "--to", "2025-01-03T00:00:00Z"], 2, "invalid_time_range"),
        (["rates", "--from", "yesterday", "--to", END], 2, "--from must be an RFC 3339"),
        (["rates", "--from", START, "--to", END, "--direction", "EXPORT"], 1, "no EXPORT tariff"),
        (["slots", "--from", START, "--to", END, "--duration", "0"], 2, "invalid_duration"),
        (["slots", "--from", START, "--to", END, "--duration", "1441"], 2, "invalid_duration"),
        (["slots", "--from", START, "--to", END, "--duration", "1.5"], 2, "not a valid integer"),
    ],
)
def test_bad_input_exits_with_a_status_and_a_message(
    tmp_path: Path, args: list[str], status: int, said: str
) -> None:
    done = _run(tmp_path, *args)
    assert done.exit_code == status, done.output
    assert said in done.output


def test_a_bad_profile_exits_2_naming_the_problem(tmp_path: Path) -> None:
    broken = PROFILE | {"tax_percentage": 101}
    done = _run(tmp_path, "rates", "--from", START, "--to", END, profile=broken)
    assert done.exit_code == 2
    assert "tax_percentage" in done.output


@pytest.mark.parametrize("command", ["rates", "slots"])
def test_a_bad_market_prices_file_is_one_line(tmp_path: Path, command: str) -> None:
    prices = tmp_path / "prices.jsonl"
    prices.write_text('{"series_id": "a", "day": "2024-01-01", "prices": [{"valid_from": "x"}]}\n')
    args = [command, "--from", START, "--to", END, "--market-prices", str(prices)]
    done = _run(tmp_path, *args, *(["--duration", "60"] if command == "slots" else []))
    assert done.exit_code == 2
    said = done.output.strip()
    assert said.startswith(f"meterflow {command}: invalid market prices on line 1 of {prices}: ")
    assert "prices.0.valid_to: Field required" in said
    assert len(said.splitlines()) == 1, said
