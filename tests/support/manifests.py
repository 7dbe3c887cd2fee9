"""deploy/ as the static tests read it: the kustomization's documents (validated offline
against Kubernetes' and the CRDs' schemas) and the compose file."""

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
