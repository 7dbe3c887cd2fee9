"""deploy/ as the static tests read it: the kustomization's documents, the compose file, and
what Kubernetes would make of their NetworkPolicies, offline (no cluster, no Docker engine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

__all__ = [
    "DEPLOY",
    "K8S",
    "by_kind",
    "compose",
    "container_env",
    "egress_allows",
    "kustomization",
    "manifests",
    "validate",
]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.31"
_CRD_SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmqcluster-rabbitmq.com-v1beta1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
}


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every document of every resource of the kustomization."""
    documents = []
    for name in kustomization()["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            if document:
                documents.append((name, document))
    return documents


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [document for _, document in manifests() if document["kind"] == kind]


def validate(document: dict[str, Any]) -> None:
    """Strictly, against Kubernetes' schemas or the CRD schemas kept in deploy/k8s/schemas."""
    key = (document["apiVersion"], document["kind"])
    if key in _CRD_SCHEMAS:
        schema = json.loads((K8S / "schemas" / _CRD_SCHEMAS[key]).read_text())
        jsonschema.Draft202012Validator(schema).validate(document)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's `env`, by variable name."""
    return {item["name"]: item for item in container.get("env", [])}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) matches `labels`."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        present = expression["key"] in labels
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and present and value in expression["values"]:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _rule_allows_port(rule: dict[str, Any], port: int) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True  # no ports listed: every port
    return any(
        p.get("protocol", "TCP") == "TCP"
        and (p.get("port") is None or p["port"] <= port <= p.get("endPort", p["port"]))
        for p in ports
    )


def egress_allows(policies: list[dict[str, Any]], labels: dict[str, str], port: int) -> bool:
    """Whether a pod with `labels` may open a TCP connection to `port` somewhere, as
    Kubernetes reads NetworkPolicies: a pod no Egress policy selects may go anywhere; a
    selected one only where one of those policies' rules lets it (rules add up)."""
    selecting = [
        policy
        for policy in policies
        if "Egress" in policy["spec"].get("policyTypes", [])
        and _selects(policy["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True
    return any(
        _rule_allows_port(rule, port)
        for policy in selecting
        for rule in policy["spec"].get("egress", [])
    )
