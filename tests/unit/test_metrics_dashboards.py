"""The Grafana provisioning and dashboards hang together: generated JSON is current, every panel
uses a provisioned data source by uid, and every metric a dashboard or alert names exists."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from prometheus_client import REGISTRY

import meterflow.metrics  # noqa: F401  (registers every meterflow_* metric)

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def test_committed_json_is_what_the_generator_writes() -> None:
    rendered = generator().render()
    on_disk = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert on_disk == rendered, "run: .venv/bin/python deploy/grafana/generate.py"


def test_datasources_have_fixed_uids_and_dashboards_use_them() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    by_uid = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    assert by_uid == {
        "meterflow-prometheus": "prometheus",
        "meterflow-postgres": "grafana-postgresql-datasource",
    }
    for name, board in dashboards().items():
        for panel in board["panels"]:
            refs = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
            for ref in refs:
                assert by_uid.get(ref["uid"]) == ref["type"], (name, panel["title"])
        for variable in board["templating"]["list"]:
            if "datasource" in variable:
                assert variable["datasource"]["uid"] in by_uid


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/meterflow.yml").read_text())
    (only,) = provider["providers"]
    assert only["type"] == "file"
    assert only["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboards_have_unique_uids_titles_and_panel_ids() -> None:
    boards = dashboards()
    assert {b["uid"] for b in boards.values()} == {
        "meterflow-energy-costs",
        "meterflow-pipeline-health",
    }
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        titles = [p["title"] for p in board["panels"]]
        assert len(titles) == len(set(titles))
        for panel in board["panels"]:
            assert panel["targets"], panel["title"]
            position = panel["gridPos"]
            assert position["x"] + position["w"] <= 24


def test_energy_costs_has_account_and_location_variables() -> None:
    variables = {v["name"]: v for v in dashboards()["energy-costs.json"]["templating"]["list"]}
    assert {"account", "location"} <= set(variables)
    assert variables["location"]["multi"] is True
    assert variables["location"]["includeAll"] is True


def known_metric_names() -> set[str]:
    names = {"up"}
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        suffixes |= {"info": ["_info"], "gauge": [""]}
        names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
    names.add("meterflow_sink_healthy")  # registered only in a sink process
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(meterflow_[a-z_]+|up)\b(?=\s*[\[{)\s]|$)", expr))


def test_every_metric_named_in_dashboards_and_alerts_exists() -> None:
    known = known_metric_names()
    exprs = [
        target["expr"]
        for board in dashboards().values()
        for panel in board["panels"]
        for target in panel["targets"]
        if "expr" in target
    ]
    alerts = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    exprs += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    assert exprs
    for expr in exprs:
        names = metric_names_in(expr)
        assert names, expr
        assert names <= known, f"unknown metrics {names - known} in {expr}"


def test_pipeline_health_shows_the_readings_agent_per_minute() -> None:
    """Issue 14: readings consumed, intervals derived, resets and stale readings per minute."""
    board = dashboards()["pipeline-health.json"]
    exprs = {
        target["expr"]: panel["title"]
        for panel in board["panels"]
        for target in panel["targets"]
        if "expr" in target
    }
    for metric in (
        "meterflow_readings_consumed_total",
        "meterflow_reading_intervals_derived_total",
        "meterflow_reading_resets_total",
        "meterflow_readings_stale_total",
    ):
        [(expr, title)] = [(e, t) for e, t in exprs.items() if metric in e]
        assert expr.endswith(" * 60"), expr  # per minute, from the per-second rate
        assert "per minute" in title
