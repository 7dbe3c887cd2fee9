"""What a scenario needs: the run's settings, its vhost, party processes, queue depths."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from rich.progress import Progress

from bench.broker import BenchBroker
from bench.messages import MESSAGE_TYPE, SERVICE, consumer_settings, key
from bench.runner import Party
from common.connection import broker_version
from common.declare import declare_topology
from common.topology import core_topology, service_topology

__all__ = ["Config", "Context", "Row", "Scenario"]

PROBE_TYPE = "bench.probe"


@dataclass(frozen=True)
class Config:
    """Sizes of one run; `quick()` is for trying the harness, not for figures."""

    messages: int = 100_000
    backlog: int = 100_000
    failure_messages: int = 10_000
    # Each type's share of the mixed backlog of the limits scenario.
    limits_messages: int = 10_000
    batch_messages: int = 30_000
    batch_size: int = 100
    http_duration_s: float = 8.0
    http_concurrency: int = 32
    latency_duration_s: float = 6.0
    probes: int = 1000
    probe_rate: float = 200.0
    prefetch: int = 64
    concurrency: int = 64
    publish_window: int = 1000
    status_rate: float = 1000.0
    status_seconds: float = 15.0
    scenario_timeout_s: float = 120.0
    # Peers and scale-out drain fewer than `messages` to keep `make bench` under 10 minutes;
    # rates are steady-state, `--long` drains the full 100 000 (README, "Performance").
    peer_messages: int = 20_000
    scaleout_messages: int = 30_000
    long_requests: int = 0

    @classmethod
    def long(cls) -> Config:
        return cls(peer_messages=100_000, scaleout_messages=100_000, long_requests=1_000_000)

    @classmethod
    def quick(cls) -> Config:
        return cls(
            peer_messages=5_000,
            long_requests=20_000,
            scaleout_messages=10_000,
            messages=10_000,
            backlog=10_000,
            failure_messages=2_000,
            limits_messages=2_000,
            batch_messages=5_000,
            http_duration_s=3.0,
            latency_duration_s=3.0,
            probes=60,
            status_seconds=4.0,
        )


@dataclass
class Row:
    """One line of the report: a hopline figure next to its reference."""

    queue_type: str
    scenario: str
    hopline: float
    unit: str
    reference: float | None = None
    reference_name: str = ""
    target: float | None = None
    lower_is_better: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.reference in (None, 0) or math.isnan(self.hopline):
            return None
        return self.hopline / self.reference  # type: ignore[operator]

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if ratio is None or self.target is None:
            return None
        return ratio <= self.target if self.lower_is_better else ratio >= self.target


@dataclass
class Context:
    broker: BenchBroker
    queue_type: str
    config: Config
    progress: Progress
    log_dir: Path
    rows: list[Row] = field(default_factory=list)
    shared: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def vhost(self, label: str) -> Iterator[str]:
        with self.broker.vhost(f"{self.queue_type}-{label}") as amqp_url:
            yield amqp_url

    def settings(self, amqp_url: str) -> Any:
        return consumer_settings(amqp_url, self.queue_type)

    async def declare(self, amqp_url: str) -> None:
        """The core topology and the bench service's queues, as hopline declares them."""
        settings = self.settings(amqp_url)
        connection = await aio_pika.connect(amqp_url)
        try:
            version = broker_version(connection)
            await declare_topology(connection, core_topology(settings, version))
            patterns = (MESSAGE_TYPE, PROBE_TYPE)
            await declare_topology(
                connection, service_topology(settings, SERVICE, patterns, version)
            )
        finally:
            await connection.close()

    async def depth(self, amqp_url: str, queue: str) -> int:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await connection.close()

    async def purge(self, amqp_url: str, queue: str) -> None:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            await (await channel.get_queue(queue, ensure=False)).purge()
        finally:
            await connection.close()

    async def party(self, name: str, label: str, total: int | None, **args: Any) -> Party:
        party = Party(
            name,
            {"queue_type": self.queue_type, **args},
            progress=self.progress,
            label=f"[{self.queue_type}] {label}",
            total=total,
            log_dir=self.log_dir,
            timeout_s=self.config.scenario_timeout_s,
        )
        return await party.start()

    async def run_party(self, name: str, label: str, total: int | None, **args: Any) -> Any:
        party = await self.party(name, label, total, **args)
        return await party.result()

    async def fill(self, amqp_url: str, count: int, priority: str = "normal") -> dict[str, Any]:
        """Queue `count` messages with the raw client (this is also the publish reference)."""
        settings = self.settings(amqp_url)
        result: dict[str, Any] = await self.run_party(
            "raw_publish",
            f"raw publish → {priority} ({count:,})",
            count,
            amqp_url=amqp_url,
            exchange=settings.names.ingress,
            routing_key=key(priority),
            count=count,
            window=self.config.publish_window,
        )
        return result

    def add(self, row: Row) -> None:
        self.rows.append(row)


Scenario = Any
