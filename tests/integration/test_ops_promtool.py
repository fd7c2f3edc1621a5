"""The Prometheus configs and alert rules are valid for a real Prometheus (Debian's `promtool`),
every alert is proven to fire by `alerts.test.yml`, and every alert has a runbook section."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
CONFIGS = ["prometheus.yml", "prometheus.local.yml"]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(binary).exists():
        pytest.fail("promtool is missing: apt-get install prometheus", pytrace=False)
    return subprocess.run(
        [binary, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60
    )


def alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize("config", CONFIGS)
def test_config_is_valid(config: str) -> None:
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@pytest.mark.parametrize("config", CONFIGS)
def test_config_scrapes_every_meterflow_process(config: str) -> None:
    document = yaml.safe_load((PROMETHEUS_DIR / config).read_text())
    jobs = {job["job_name"] for job in document["scrape_configs"]}
    assert {"meterflow-worker", "meterflow-sink", "meterflow-api"} <= jobs
    assert document["rule_files"] == ["alerts.yml"]


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_the_rule_unit_tests() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    proven = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    names = {str(rule["alert"]) for rule in alert_rules()}
    assert names == proven, f"alerts without a firing test: {names - proven}"
    assert names == quiet, f"alerts without a stays-quiet test: {names - quiet}"


def test_issue_alerts_exist() -> None:
    names = {str(rule["alert"]) for rule in alert_rules()}
    assert {
        "MeterflowConsumerLagGrowing",
        "MeterflowDeadLetterRateHigh",
        "MeterflowSinkUnhealthy",
        "MeterflowSinkNotWriting",
        "MeterflowNoRecordsPriced",
        "MeterflowApiErrorRatioHigh",
    } <= names


def test_every_alert_has_summary_description_and_a_runbook_section() -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in operations.splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations.get("summary"), rule["alert"]
        assert annotations.get("description"), rule["alert"]
        runbook = str(annotations["runbook_url"])
        path, _, anchor = runbook.partition("#")
        assert path == "docs/operations.md", runbook
        assert anchor == str(rule["alert"]).lower(), runbook
        assert anchor in headings, f"docs/operations.md has no section for {rule['alert']}"
