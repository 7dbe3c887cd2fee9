"""The shipped deployments share one PostgreSQL status store (README, "Message status").

Every process that opens the store (a producer replica, whose recorder writes it and whose
`GET /v1/messages/{id}` reads it, and the admin process, whose lookup reads it) must point at
the same database: with a SQLite file each, a lookup answers from whichever replica it hits.
Checked offline, on the compose file and the kustomization as shipped.
"""

from __future__ import annotations

import re
from typing import Any

from consumer.examples import registry as demo_registry
from tests.support.manifests import (
    DEPLOY,
    K8S,
    by_kind,
    compose,
    container_env,
    egress_allows,
    kustomization,
)

# postgresql://user:${PASSWORD_VARIABLE...}@host:port/database, as compose interpolates it
_COMPOSE_URL = re.compile(
    r"postgresql://(?P<user>[^:]+):\$\{(?P<variable>[A-Z_]+):\?[^}]*\}"
    r"@(?P<host>[^:/]+):(?P<port>\d+)/(?P<database>\w+)"
)


def _store_processes_in_compose() -> dict[str, dict[str, Any]]:
    """The compose services that open the status store: every `producer` command (the
    ingestion API and the admin process)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("command") == ["producer"]
    }


def _store_containers_in_k8s() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, container) for each container that runs the producer image's
    `producer` role (the ingestion API and the admin process)."""
    return [
        (deployment, container)
        for deployment in by_kind("Deployment")
        for container in deployment["spec"]["template"]["spec"]["containers"]
        if container.get("args", [])[:1] == ["producer"]
    ]


def _documented_credentials() -> dict[str, str]:
    """The KEY=value entries of credentials.env that deploy/k8s/secrets/README.md shows, as
    lines of an example or `inline`."""
    text = (K8S / "secrets" / "README.md").read_text()
    return dict(re.findall(r"(?:^|`)(HOPLINE_[A-Z_]+)=([^`\n]+)", text, re.M))


# --- compose ----------------------------------------------------------------------------


def test_compose_processes_that_read_status_share_one_postgresql_store() -> None:
    processes = _store_processes_in_compose()
    replicas = sum(service.get("deploy", {}).get("replicas", 1) for service in processes.values())
    assert set(processes) == {"producer", "admin"} and replicas > 1
    urls = {
        name: service["environment"]["HOPLINE_STATUS_URL"] for name, service in processes.items()
    }
    assert len(set(urls.values())) == 1, urls  # one store, not one per process
    (url,) = set(urls.values())
    assert "sqlite" not in url
    found = _COMPOSE_URL.fullmatch(url)
    assert found is not None, url
    # ... the compose service `postgres`, logged in as the user and database it creates
    postgres = compose()["services"][found["host"]]
    assert found["port"] == "5432"
    assert postgres["environment"]["POSTGRES_USER"] == found["user"]
    assert postgres["environment"]["POSTGRES_DB"] == found["database"]
    for name, service in processes.items():
        assert service["depends_on"][found["host"]]["condition"] == "service_healthy", name


def test_compose_postgresql_is_pinned_checked_kept_and_its_password_comes_from_env() -> None:
    services = compose()["services"]
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:\d+\.\d+(-[a-z]+)?", postgres["image"]), postgres["image"]
    check = postgres["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1] == "pg_isready"
    assert "--host=127.0.0.1" in check  # not the Unix socket of the first start's server
    mounts = dict(volume.split(":", 1)[::-1] for volume in postgres["volumes"])
    assert mounts["/var/lib/postgresql/data"] in compose()["volumes"]  # a named volume
    assert "profiles" not in postgres and "ports" not in postgres  # always on, not published
    # the password: one variable of deploy/.env, in the server's setting and in the URL
    url = _COMPOSE_URL.fullmatch(services["producer"]["environment"]["HOPLINE_STATUS_URL"])
    assert url is not None
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith(f"${{{url['variable']}:?")
    example = (DEPLOY / ".env.example").read_text()
    assert re.search(rf"^{url['variable']}=$", example, re.M)


def test_compose_records_status_in_the_producer() -> None:
    producer = compose()["services"]["producer"]["environment"]
    assert producer["HOPLINE_SERVE"] == "ingestion"
    assert str(producer.get("HOPLINE_STATUS_RECORDER", "true")).lower() == "true"
    assert "HOPLINE_STATUS_URL" not in compose()["services"]["consumer"]["environment"]


# --- Kubernetes -------------------------------------------------------------------------


def test_every_k8s_process_that_reads_status_takes_the_same_store_from_the_secret() -> None:
    containers = _store_containers_in_k8s()
    names = {deployment["metadata"]["name"] for deployment, _ in containers}
    assert names == {"hopline-producer", "hopline-admin"}
    assert sum(deployment["spec"]["replicas"] for deployment, _ in containers) > 1
    generated = {g["name"] for g in kustomization()["secretGenerator"]}
    sources = set()
    for deployment, container in containers:
        url = container_env(container)["HOPLINE_STATUS_URL"]
        assert "value" not in url, deployment["metadata"]["name"]  # referenced, not inlined
        reference = url["valueFrom"]["secretKeyRef"]
        assert reference["name"] in generated
        sources.add((reference["name"], reference["key"]))
    assert len(sources) == 1, sources  # one store for every replica
    # Nothing else sets it: not the shared ConfigMap, not a SQLite path anywhere.
    (configmap,) = by_kind("ConfigMap")
    assert "HOPLINE_STATUS_URL" not in configmap["data"]
    for path in K8S.glob("*.yaml"):
        assert "sqlite" not in path.read_text().lower(), path.name


def test_the_documented_secret_holds_a_postgresql_url_like_the_other_credentials() -> None:
    (_, container), *_ = _store_containers_in_k8s()
    key = container_env(container)["HOPLINE_STATUS_URL"]["valueFrom"]["secretKeyRef"]["key"]
    documented = _documented_credentials()
    assert documented[key].startswith("postgresql://")
    readme = (DEPLOY.parent / "README.md").read_text()
    assert re.search(rf"^{key}=postgresql://", readme, re.M), "the README's credentials.env"


def test_every_key_taken_from_the_credentials_secret_is_documented() -> None:
    (credentials,) = [g for g in kustomization()["secretGenerator"] if "envs" in g]
    documented = _documented_credentials()
    for deployment in by_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for item in container.get("env", []):
                reference = item.get("valueFrom", {}).get("secretKeyRef")
                if reference and reference["name"] == credentials["name"]:
                    assert reference["key"] in documented, (item["name"], reference["key"])


def _pod_labels(name: str) -> dict[str, str]:
    (deployment,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == name]
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _status_store_port() -> int:
    (_, container), *_ = _store_containers_in_k8s()
    key = container_env(container)["HOPLINE_STATUS_URL"]["valueFrom"]["secretKeyRef"]["key"]
    port = re.search(r"@[^/]*:(\d+)/", _documented_credentials()[key])
    assert port is not None
    return int(port[1])


def test_network_policies_let_the_producers_and_admin_reach_the_database_and_no_one_else() -> None:
    policies = by_kind("NetworkPolicy")
    port = _status_store_port()
    for name in ("hopline-producer", "hopline-admin"):
        assert egress_allows(policies, _pod_labels(name), port), name
    # The demo consumer never opens the store (no idempotent handler), so it may not.
    assert not any(spec.idempotent for spec in demo_registry.specs)
    assert not egress_allows(policies, _pod_labels("hopline-consumer-demo"), port)
    # ... and its broker is still reachable for all three
    for name in ("hopline-producer", "hopline-admin", "hopline-consumer-demo"):
        assert egress_allows(policies, _pod_labels(name), 5672), name


def test_without_the_status_store_policy_the_producers_could_not_reach_it() -> None:
    """The policy check sees a missing rule: it is not true of any set of policies."""
    policies = [
        p
        for p in by_kind("NetworkPolicy")
        if p["metadata"]["name"] != "hopline-status-store-egress"
    ]
    assert not egress_allows(policies, _pod_labels("hopline-producer"), _status_store_port())


def test_k8s_records_status_in_the_producers() -> None:
    (_, producer), *_ = [
        (d, c) for d, c in _store_containers_in_k8s() if d["metadata"]["name"] == "hopline-producer"
    ]
    env = container_env(producer)
    assert env["HOPLINE_SERVE"]["value"] == "ingestion"
    assert env.get("HOPLINE_STATUS_RECORDER", {"value": "true"})["value"] == "true"


# --- the image --------------------------------------------------------------------------


def test_the_image_installs_the_postgresql_driver() -> None:
    dockerfile = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert any(re.search(r"""["']?\.\[[a-z,]*postgres[a-z,]*\]["']?""", line) for line in installs)
