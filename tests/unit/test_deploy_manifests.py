"""Static checks of deploy/: Kubernetes manifests against schemas, compose, Dockerfile.

No Docker engine and no cluster here: the manifests are validated offline against the
Kubernetes schemas kubernetes-validate ships and the CRD schemas kept in deploy/k8s/schemas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.support.manifests import (
    DEPLOY,
    K8S,
    by_kind,
    compose,
    kustomization,
    manifests,
    validate,
)

# --- Kubernetes -------------------------------------------------------------------------


def test_every_resource_file_of_the_kustomization_exists() -> None:
    missing = [name for name in kustomization()["resources"] if not (K8S / name).is_file()]
    assert missing == []


@pytest.mark.parametrize(
    "name, document",
    manifests(),
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in manifests()],
)
def test_manifest_is_valid_against_its_schema(name: str, document: dict[str, Any]) -> None:
    validate(document)


def test_a_typo_in_a_manifest_is_caught() -> None:
    """The validation is strict: an unknown field fails, for core kinds and for CRDs."""
    deployment = by_kind("Deployment")[0]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    scaled = json.loads(json.dumps(by_kind("ScaledObject")[0]))
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


def test_the_rabbitmq_cluster_has_three_nodes_and_loads_the_definitions() -> None:
    (cluster,) = by_kind("RabbitmqCluster")
    spec = cluster["spec"]
    assert spec["replicas"] == 3
    assert "load_definitions" in spec["rabbitmq"]["additionalConfig"] or (
        "definitions.local.path" in spec["rabbitmq"]["additionalConfig"]
    )
    template = spec["override"]["statefulSet"]["spec"]["template"]
    # The override is a partial pod template: validate it as one.
    validate(
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "override"},
            "template": template,
        }
    )
    secrets = [v["secret"]["secretName"] for v in template["spec"]["volumes"]]
    generated = {g["name"] for g in kustomization()["secretGenerator"]}
    assert set(secrets) <= generated


def test_the_consumer_scales_on_every_priority_queue_high_first() -> None:
    (scaled,) = by_kind("ScaledObject")
    (consumer,) = [d for d in by_kind("Deployment") if "consumer" in d["metadata"]["name"]]
    assert scaled["spec"]["scaleTargetRef"]["name"] == consumer["metadata"]["name"]
    targets = {
        trigger["metadata"]["queueName"]: int(trigger["metadata"]["value"])
        for trigger in scaled["spec"]["triggers"]
        if trigger["type"] == "rabbitmq"
    }
    assert list(targets) == ["hopline.demo.high", "hopline.demo.normal", "hopline.demo.low"]
    per_replica = list(targets.values())
    assert per_replica == sorted(per_replica), "fewer high-priority messages per replica"


def test_producer_has_a_service_and_a_disruption_budget() -> None:
    (producer,) = [d for d in by_kind("Deployment") if "producer" in d["metadata"]["name"]]
    labels = producer["spec"]["template"]["metadata"]["labels"]
    (service,) = [s for s in by_kind("Service") if "producer" in s["metadata"]["name"]]
    (budget,) = by_kind("PodDisruptionBudget")
    for selector in (service["spec"]["selector"], budget["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert producer["spec"]["replicas"] > budget["spec"]["minAvailable"]


def test_pods_run_unprivileged_and_read_settings_from_configmap_and_secret() -> None:
    (configmap,) = by_kind("ConfigMap")
    generated = {g["name"] for g in kustomization()["secretGenerator"]}
    for deployment in by_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            sources = {s["configMapRef"]["name"] for s in container["envFrom"]}
            assert configmap["metadata"]["name"] in sources
            url = next(e for e in container["env"] if e["name"] == "HOPLINE_AMQP_URL")
            assert url["valueFrom"]["secretKeyRef"]["name"] in generated
    assert all(key.startswith("HOPLINE_") for key in configmap["data"])


def test_network_policies_deny_by_default_and_open_only_the_api_and_amqp() -> None:
    policies = {p["metadata"]["name"]: p for p in by_kind("NetworkPolicy")}
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and "ingress" not in deny
    producer_ports = [
        port["port"]
        for rule in policies["hopline-producer-ingress"]["spec"]["ingress"]
        for port in rule["ports"]
    ]
    assert producer_ports == [8000]


# --- compose ----------------------------------------------------------------------------


def test_compose_runs_rabbitmq_with_its_config_and_definitions() -> None:
    services = compose()["services"]
    rabbitmq = services["rabbitmq"]
    assert re.fullmatch(r"rabbitmq:4\.\d+-management", rabbitmq["image"])
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in rabbitmq["volumes"]}
    assert mounts["/etc/rabbitmq/rabbitmq.conf"] == "./rabbitmq/rabbitmq.conf"
    assert (DEPLOY / "rabbitmq" / "rabbitmq.conf").is_file()
    config = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    definitions_path = re.search(r"^definitions\.local\.path = (\S+)$", config, re.M)
    assert definitions_path is not None
    definitions_dir = str(Path(definitions_path[1]).parent)
    assert mounts[definitions_dir] == "definitions"
    assert rabbitmq["depends_on"]["definitions"]["condition"] == "service_completed_successfully"
    export = services["definitions"]["command"]
    assert export[:3] == ["cli", "topology", "export"] and "--users" in export


def test_compose_runs_a_producer_and_two_consumers_as_their_own_broker_users() -> None:
    services = compose()["services"]
    assert services["producer"]["command"] == ["producer"]
    assert services["consumer"]["command"] == ["consumer"]
    assert services["consumer"]["deploy"]["replicas"] == 2
    producer_url = services["producer"]["environment"]["HOPLINE_AMQP_URL"]
    consumer_url = services["consumer"]["environment"]["HOPLINE_AMQP_URL"]
    assert producer_url.startswith("amqp://hopline-producer:${")
    assert consumer_url.startswith("amqp://hopline-consumer-demo:${")
    for service in ("producer", "consumer"):
        assert services[service]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


def test_compose_monitoring_is_an_optional_profile() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    for name in ("rabbitmq", "producer", "consumer"):
        assert "profiles" not in services[name]
    assert (DEPLOY / "prometheus" / "prometheus.yml").is_file()


def test_compose_holds_no_literal_password() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    for match in re.finditer(r"(PASSWORD[A-Z_]*|(?:amqp|postgresql)://[^:]+):\s*(\S+)", text):
        assert match[2].startswith(("${", '"${')), match[0]


# --- Dockerfile -------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_and_copies_only_the_built_environment() -> None:
    froms = [args for op, args in _dockerfile() if op == "FROM"]
    assert len(froms) >= 2
    final = _final_stage()
    copied_from_build = [args for op, args in final if op == "COPY" and "--from=" in args]
    assert copied_from_build, "the final stage takes the virtualenv from the build stage"
    run_lines = " ".join(args for op, args in final if op == "RUN")
    assert not re.search(r"\b(pip install|apt-get install|gcc|build-essential)\b", run_lines)


def test_dockerfile_runs_as_a_non_root_user_with_a_health_check() -> None:
    final = _final_stage()
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(op == "HEALTHCHECK" for op, _ in final)
    (entrypoint,) = [args for op, args in final if op == "ENTRYPOINT"]
    script = (DEPLOY / "docker-entrypoint.sh").read_text()
    assert "hopline-entrypoint" in entrypoint
    for role, command in (("producer", "hopline-producer"), ("consumer", "hopline-consumer")):
        assert re.search(rf"{role}\)\s+exec {command}\b", script)
    assert re.search(r"cli \| hopline\)\s+exec hopline\b", script)


def test_dockerfile_copies_only_files_that_exist() -> None:
    root = DEPLOY.parent
    for op, args in _dockerfile():
        if op != "COPY" or "--from=" in args:
            continue
        *sources, _target = args.split()
        for source in sources:
            assert (root / source).exists(), source


def test_the_shipped_deployments_require_ingestion_keys() -> None:
    # compose: the producer does not start without HOPLINE_API_KEYS from deploy/.env
    producer = compose()["services"]["producer"]["environment"]
    assert producer["HOPLINE_API_KEYS"].startswith("${HOPLINE_API_KEYS:?")
    assert "HOPLINE_INGESTION_OPEN" not in producer
    # k8s: the keys come from the secret, and nothing opens ingestion
    [deployment] = [d for d in by_kind("Deployment") if d["metadata"]["name"].endswith("producer")]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["HOPLINE_API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == "HOPLINE_API_KEYS"
    assert "HOPLINE_INGESTION_OPEN" not in env
    assert "HOPLINE_INGESTION_OPEN" not in (K8S / "configmap.yaml").read_text()


def test_the_admin_api_runs_apart_as_the_operator_with_its_own_archive_volume() -> None:
    # compose: the ingestion producer has no admin surface; the admin process is the operator
    services = compose()["services"]
    assert services["producer"]["environment"]["HOPLINE_SERVE"] == "ingestion"
    assert "HOPLINE_ADMIN_TOKEN" not in services["producer"]["environment"]
    admin = services["admin"]["environment"]
    assert admin["HOPLINE_SERVE"] == "admin"
    assert admin["HOPLINE_AMQP_URL"].startswith("amqp://hopline-operator:")
    assert "admin-archive:/var/lib/hopline/archive" in services["admin"]["volumes"]
    assert services["admin"]["read_only"] is True
    # k8s: the same, with a persistent volume for the archive
    (deployment,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "hopline-admin"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["HOPLINE_SERVE"]["value"] == "admin"
    assert (
        env["HOPLINE_AMQP_URL"]["valueFrom"]["secretKeyRef"]["key"] == "HOPLINE_OPERATOR_AMQP_URL"
    )
    mount = container["volumeMounts"][0]["mountPath"]
    assert env["HOPLINE_ARCHIVE_DIR"]["value"] == mount
    assert by_kind("PersistentVolumeClaim")


def test_grafana_has_no_fallback_password() -> None:
    grafana = compose()["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
