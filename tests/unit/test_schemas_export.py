"""The committed JSON Schemas in `schemas/` must match the models."""

from __future__ import annotations

import json
from pathlib import Path

from meterflow.schemas import export, rendered

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_models() -> None:
    drifted = export(SCHEMAS, check=True)
    assert drifted == [], f"run `meterflow schemas export`: {drifted} differ from the models"


def test_every_contract_document_is_exported(tmp_path: Path) -> None:
    names = {
        "MeterRecord.schema.json",
        "MeterReading.schema.json",
        "LocationProfile.schema.json",
        "MarketPrices.schema.json",
        "EnergyCost.schema.json",
        "DeadLetter.schema.json",
    }
    assert set(rendered()) == names
    assert sorted(export(tmp_path)) == sorted(names)
    assert export(tmp_path, check=True) == []
    record = json.loads((tmp_path / "MeterRecord.schema.json").read_text())
    assert "location_id" in record["required"]
    assert record["additionalProperties"] is False


def test_cli_check_fails_on_drift(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from meterflow.cli import main

    runner = CliRunner()
    assert (
        runner.invoke(main, ["schemas", "export", "--check", "--dir", str(tmp_path)]).exit_code == 1
    )
    assert runner.invoke(main, ["schemas", "export", "--dir", str(tmp_path)]).exit_code == 0
    assert (
        runner.invoke(main, ["schemas", "export", "--check", "--dir", str(tmp_path)]).exit_code == 0
    )
    (tmp_path / "EnergyCost.schema.json").write_text("{}\n")
    result = runner.invoke(main, ["schemas", "export", "--check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "EnergyCost.schema.json" in result.output


def test_cli_check_of_a_missing_directory_says_so(tmp_path: Path) -> None:
    """Every file was "out of date" (exit 1), which sent one to regenerate them."""
    from click.testing import CliRunner

    from meterflow.cli import main

    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(main, ["schemas", "export", "--check", "--dir", str(missing)])
    assert result.exit_code == 2, result.output
    assert f"{missing} is not a directory" in result.output
    assert "out of date" not in result.output
