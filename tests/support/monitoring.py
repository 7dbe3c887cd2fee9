"""What the dashboard and the alert rules ask Prometheus for, read from their files."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.support.needs import missing

__all__ = ["ALERTS", "DASHBOARD", "expressions", "metric_names", "prometheus_binary"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hopline.json"
# Metric names: ours and RabbitMQ's (PromQL functions and label names never start so).
_METRIC = re.compile(r"\b((?:hopline|rabbitmq)_[a-z_]+)\b")


def expressions() -> Iterator[str]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            yield target["expr"]


def metric_names() -> set[str]:
    return {name for expression in expressions() for name in _METRIC.findall(expression)}


def prometheus_binary(name: str = "prometheus") -> str:
    found = shutil.which(name)
    if found is None:
        missing(f"this test needs `{name}` (Debian's prometheus package; `make monitoring`)")
    return found
