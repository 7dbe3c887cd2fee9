"""The benchmark's own RabbitMQ node, and a fresh vhost for every scenario.

The node is private (`deploy.local.broker`, state under /tmp) so that neither the shared
broker nor anybody else's load disturbs the figures. Each scenario runs in its own vhost,
deleted afterwards, so one scenario's backlog cannot slow down the next.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from deploy.local.broker import LocalBroker, start_local_broker, stop_local_broker

__all__ = ["BenchBroker", "private_broker"]

# Statistics are not needed; keep the node's own bookkeeping out of the figures.
_NODE_CONFIG = "collect_statistics_interval = 60000\n"


@dataclass(frozen=True)
class BenchBroker:
    local: LocalBroker
    version: str

    def amqp_url(self, vhost: str) -> str:
        return f"{self.local.amqp_url.rstrip('/')}/{quote(vhost, safe='')}"

    @contextmanager
    def vhost(self, label: str) -> Iterator[str]:
        """A new vhost for one scenario; yields its AMQP URL and deletes it afterwards."""
        name = f"bench-{label}-{uuid.uuid4().hex[:6]}"
        path = f"/api/vhosts/{quote(name, safe='')}"
        with _client(self.local) as client:
            client.put(path).raise_for_status()
            client.put(
                f"/api/permissions/{quote(name, safe='')}/guest",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()
        try:
            yield self.amqp_url(name)
        finally:
            with _client(self.local) as client:
                client.delete(path)

    def policy(self, amqp_url: str, name: str, definition: dict[str, object]) -> None:
        """A queue policy on the vhost of `amqp_url` (one this node's `vhost` made)."""
        vhost = amqp_url.rsplit("/", 1)[1]  # still percent-encoded
        with _client(self.local) as client:
            client.put(
                f"/api/policies/{vhost}/{quote(name, safe='')}",
                json={"pattern": ".*", "definition": definition, "apply-to": "queues"},
            ).raise_for_status()


@contextmanager
def private_broker() -> Iterator[BenchBroker]:
    base_dir = Path(tempfile.mkdtemp(prefix="hopline-bench-broker-"))
    try:
        local = start_local_broker(base_dir, extra_config=_NODE_CONFIG)
        try:
            with _client(local) as client:
                version = client.get("/api/overview").json().get("rabbitmq_version", "?")
            yield BenchBroker(local, str(version))
        finally:
            stop_local_broker(local)
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


def _client(local: LocalBroker) -> httpx.Client:
    return httpx.Client(base_url=local.management_url, auth=("guest", "guest"), timeout=60)
