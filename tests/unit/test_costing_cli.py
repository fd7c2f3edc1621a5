"""`meterflow cost` as users run it: a subprocess, JSON Lines in and out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from meterflow import ids
from samples import EFFECTIVE_FROM, NIGHT_AND_DAY, london, time_of_use

PROFILE = london(
    time_of_use(*NIGHT_AND_DAY),
    exports=[{"type": "FIXED", "effective_from": EFFECTIVE_FROM, "rate": 0.05}],
    location_id="loc_cli",
    account_id="acc_cli",
)
RECORD = {
    "location_id": "loc_cli",
    "energy": 1,
    "start_time": "2024-06-03T05:30:00Z",
    "end_time": "2024-06-03T06:30:00Z",
}


def _run(
    profile: dict[str, Any], stdin: str, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    command = [sys.executable, "-c", "from meterflow.cli import main; main()"]
    return subprocess.run(
        [*command, "cost", "--profile", str(path), "--now", "2024-07-01T00:00:00Z", *extra],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_prices_lines_in_order_and_bad_lines_do_not_stop_the_others(tmp_path: Path) -> None:
    good = RECORD
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(good | {"energy": -2, "energy_flow_direction": "OUTBOUND"}),
        "",
        json.dumps(good | {"id": "mre_given", "energy": -2}),
        json.dumps(good | {"end_time": good["start_time"]}),
        json.dumps(good | {"location_id": "loc_elsewhere"}),
    ]
    done = _run(PROFILE, "\n".join(lines) + "\n", tmp_path)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 6  # the blank line is not a record
    assert out[0]["data"]["cost"]["value"] == 0.2
    assert out[0]["meter_record_id"] == ids.meter_record_id_for_offset("stdin", 0, 1)
    assert out[0]["time_created"] == "2024-07-01T00:00:00+00:00"
    assert out[1]["error"]["code"] == "invalid_record"
    assert out[2]["error"]["code"] == "direction_conflict"
    assert out[3]["meter_record_id"] == "mre_given"
    assert out[3]["tariff_direction"] == "EXPORT"
    assert out[3]["data"]["cost"]["value"] == 0.1
    assert out[4]["error"]["code"] == "invalid_time_range"
    assert out[5]["error"]["code"] == "unknown_location"
    assert set(out[5]) == {"error"}


def test_a_referenced_record_gets_its_id_from_the_reference_not_its_line(
    tmp_path: Path,
) -> None:
    """Design §8.1 offline: the same reference on any line, with or without a carried `id`,
    gets the id the worker and the API give it (account and mode from the profile)."""
    good = RECORD | {"record_reference_id": "read-42"}
    lines = [
        good,
        good | {"id": "mre_given"},
        good | {"energy": 2},  # a correction: same id, another cost
        good | {"record_reference_id": "read-43"},
        good | {"record_reference_id": "x" * 257},
        good | {"record_reference_id": "read\n42"},
    ]
    done = _run(PROFILE, "".join(json.dumps(line) + "\n" for line in lines), tmp_path)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    expected = ids.meter_record_id_for_reference("acc_cli", False, "loc_cli", "read-42")
    assert [result["meter_record_id"] for result in out[:3]] == [expected] * 3
    assert {result["id"] for result in out[:3]} == {ids.energy_cost_id(expected)}
    assert out[2]["data"]["cost"]["value"] == 2 * out[0]["data"]["cost"]["value"]
    assert out[3]["meter_record_id"] not in (
        expected,
        ids.meter_record_id_for_offset("stdin", 0, 4),
    )
    assert [result["error"]["code"] for result in out[4:]] == ["invalid_record"] * 2
    assert "priced 4 record(s), 2 failed" in done.stderr


def test_invalid_profile_exits_2_naming_the_problem(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(PROFILE))
    broken["tariffs"]["IMPORT"][0]["rules"][1]["from"] = "07:30"
    done = _run(broken, "", tmp_path)
    assert done.returncode == 2
    assert "no rule covers MON 07:00–07:30 in Jan" in done.stderr
    assert done.stdout == ""


def test_profile_failing_the_schema_exits_2(tmp_path: Path) -> None:
    done = _run(PROFILE | {"timezone": "Nowhere/Special"}, "", tmp_path)
    assert done.returncode == 2
    assert "timezone" in done.stderr


def test_market_prices_file_feeds_dynamic_series(tmp_path: Path) -> None:
    series = PROFILE | {
        "tariffs": {
            "IMPORT": [
                {"type": "DYNAMIC", "effective_from": "2024-01-01T00:00:00Z", "series_id": "spot"}
            ]
        }
    }
    day = {
        "series_id": "spot",
        "day": "2024-06-03",
        "prices": [
            {
                "valid_from": "2024-06-03T00:00:00Z",
                "valid_to": "2024-06-04T00:00:00Z",
                "rate": "0.123",
            }
        ],
    }
    prices = tmp_path / "prices.jsonl"
    prices.write_text(json.dumps(day) + "\n")
    record = RECORD | {"energy": 2}
    late = record | {"start_time": "2024-06-03T23:30:00Z", "end_time": "2024-06-04T00:30:00Z"}
    stdin = json.dumps(record) + "\n" + json.dumps(late) + "\n"
    done = _run(series, stdin, tmp_path, "--market-prices", str(prices))
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["data"]["cost"]["value"] == 0.246
    assert second["error"]["code"] == "tariff_not_available"


def test_now_is_read_as_any_rfc3339_instant(tmp_path: Path) -> None:
    # the last `--now` given wins (click): a fraction and an offset, as records may write them
    done = _run(
        PROFILE, json.dumps(RECORD) + "\n", tmp_path, "--now", "2024-07-01T01:00:00.5+01:00"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["time_created"] == "2024-07-01T00:00:00.500000+00:00"
    naive = _run(PROFILE, "", tmp_path, "--now", "2024-07-01T00:00:00")
    assert naive.returncode == 2
    assert "RFC 3339" in naive.stderr
    # no UTC form (it was an OverflowError's traceback), or beyond the years a record may lie in
    for far in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-00:01", "9998-06-01T00:00:00Z"):
        done = _run(PROFILE, "", tmp_path, "--now", far)
        assert done.returncode == 2, done.stderr
        assert "must lie between the years 0002 and 9997 (UTC)" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_bad_market_prices_file_is_one_line(tmp_path: Path) -> None:
    """As `prices put` says it (pydantic's own text was ten lines, with its URLs)."""
    prices = tmp_path / "prices.jsonl"
    prices.write_text('{"series_id": "a", "day": "2024-01-01", "prices": [{"valid_from": "x"}]}\n')
    done = _run(PROFILE, "", tmp_path, "--market-prices", str(prices))
    assert done.returncode == 2
    assert done.stderr.startswith(f"meterflow cost: invalid market prices on line 1 of {prices}: ")
    assert "prices.0.valid_to: Field required" in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
