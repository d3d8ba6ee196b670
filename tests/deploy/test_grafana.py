"""deploy/grafana: the dashboard queries only metrics the hub serves, and Compose runs it.

The metric names come from the hub's own registries (``HubMetrics`` and the
notifier's ``NotifyMetrics``, which share the hub's ``/metrics``), so a renamed
or removed metric fails here before a panel goes blank.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from hub.metrics import HubMetrics
from hub.notify.worker import NotifyMetrics

from ._tools import REPO

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "resmon-hub.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
_NAME = re.compile(r"\bresmon_[a-z0-9_]+")


def _served() -> set[str]:
    """Every series name the hub's /metrics can have."""
    hub = HubMetrics()
    registries: list[CollectorRegistry] = [hub.registry, NotifyMetrics().registry]
    names = set()
    for registry in registries:
        for family in registry.collect():
            names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_metric_the_dashboard_queries_is_served_by_the_hub(
    dashboard: dict[str, Any],
) -> None:
    served = _served()
    queried = {name for expr in _exprs(dashboard) for name in _NAME.findall(expr)}
    assert len(queried) >= 15
    assert queried - served == set(), f"not served by the hub: {sorted(queried - served)}"
    # what an operator asked for is on it
    for wanted in (
        "resmon_hub_readings_consumed_total",
        "resmon_hub_consumer_lag",
        "resmon_hub_actors",
        "resmon_hub_batch_commit_seconds_bucket",
        "resmon_hub_alerts_total",
        "resmon_notify_sent_total",
        "resmon_notify_dead_letters_total",
        "resmon_hub_api_request_seconds_bucket",
    ):
        assert wanted in queried, wanted


def test_panels_use_the_provisioned_datasource_and_unique_ids(dashboard: dict[str, Any]) -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    assert source["url"] == "http://prometheus:9090"


def test_compose_runs_prometheus_and_grafana_under_the_monitoring_profile() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
    mounts = dict(m.rsplit(":", 2)[:2] for m in services["grafana"]["volumes"] if m.startswith("."))
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/resmon.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/dashboards"] == path
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    scrape = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    hub_port = services["hub"]["environment"]["RESMON_HUB_HTTP"].rsplit(":", 1)[1]
    assert target == f"hub:{hub_port}"
    assert job["metrics_path"] == "/metrics"
