"""The alert rules and the dashboard shipped in deploy/: valid, and the same rules everywhere."""

from __future__ import annotations

import subprocess

import yaml

from tests.support.monitoring import ALERTS, DEPLOY, metric_names, prometheus_binary


def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run(
        [prometheus_binary("promtool"), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_k8s_ships_the_same_rules_as_compose() -> None:
    rule = yaml.safe_load((DEPLOY / "k8s" / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())


def test_the_dashboard_and_rules_ask_for_hopline_and_rabbitmq_metrics() -> None:
    names = metric_names()
    assert "hopline_consumer_messages_total" in names
    assert any(name.startswith("rabbitmq_") for name in names), "queue depth panel"
