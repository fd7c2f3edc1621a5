"""docker-compose.yml, the Prometheus config and the Grafana provisioning agree: every scrape
target is a compose service listening on that port on all interfaces, and Grafana mounts the
provisioning and dashboards where its provider and datasources expect them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from meterflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def default(setting: str) -> Any:
    """The built-in default (not the environment's value): what the containers run with."""
    return Settings.model_fields[setting].default


def load(path: str) -> Any:
    return yaml.safe_load((REPO / path).read_text())


def test_every_scrape_target_is_a_compose_service_on_its_metrics_port() -> None:
    services = load("docker-compose.yml")["services"]
    scrape = load("deploy/prometheus/prometheus.yml")["scrape_configs"]
    targets = {
        job["job_name"]: target
        for job in scrape
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets["meterflow-worker"] == f"worker:{default('worker_web_port')}"
    assert targets["meterflow-sink"] == f"sink:{default('sink_http_port')}"
    assert targets["meterflow-api"] == f"api:{default('http_port')}"
    # Reachable from the prometheus container: each binds all interfaces, not 127.0.0.1.
    assert services["worker"]["environment"]["MF_WORKER_WEB_HOST"] == "0.0.0.0"
    assert services["sink"]["environment"]["MF_HTTP_HOST"] == "0.0.0.0"
    assert services["api"]["environment"]["MF_HTTP_HOST"] == "0.0.0.0"
    for name in ("worker", "sink", "api", "migrate", "prometheus", "grafana"):
        assert name in services


def test_prometheus_and_grafana_mount_the_repository_configs() -> None:
    services = load("docker-compose.yml")["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    volumes = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    provider = load("deploy/grafana/provisioning/dashboards/meterflow.yml")["providers"][0]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in volumes
    datasources = load("deploy/grafana/provisioning/datasources/datasources.yml")["datasources"]
    urls = {d["uid"]: d["url"] for d in datasources}
    assert urls["meterflow-prometheus"] == "http://prometheus:9090"
    assert urls["meterflow-postgres"] == "postgres:5432"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "deploy/grafana/dashboards" / Path(home).name).exists()
