"""The Kafka-writing commands' arguments, refused as usage errors before any broker is asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from meterflow.cli import main
from meterflow.cli.produce import produce
from meterflow.cli.profiles import profiles


@pytest.mark.parametrize(
    ("option", "value"), [("--locations", "0"), ("--records", "-1"), ("--rate", "-1")]
)
def test_produce_refuses_counts_out_of_range(option: str, value: str) -> None:
    """`--locations 0` was a ZeroDivisionError traceback (exit 1), `--rate -1` silently taken:
    now a usage error naming the option, exit 2."""
    result = CliRunner().invoke(produce, [option, value, "--no-profiles"])
    assert result.exit_code == 2, result.output
    assert option in result.output


def test_profiles_delete_refuses_an_empty_location_id() -> None:
    """It published a tombstone under an empty key (exit 0)."""
    result = CliRunner().invoke(profiles, ["delete", ""])
    assert result.exit_code == 2, result.output
    assert "LOCATION_ID" in result.output


@pytest.mark.parametrize(("group", "name"), [("profiles", "profile"), ("prices", "market prices")])
def test_an_invalid_document_is_one_line(tmp_path: Path, group: str, name: str) -> None:
    """pydantic's several-line report (with its URLs) was printed as it was."""
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    result = CliRunner().invoke(main, [group, "put", str(empty)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"invalid {name} {empty}: "), line
    assert "Field required" in line
    assert "errors.pydantic.dev" not in line
