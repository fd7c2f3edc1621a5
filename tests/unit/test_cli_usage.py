"""The Kafka-writing commands' arguments, refused as usage errors before any broker is asked."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

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
