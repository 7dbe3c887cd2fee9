"""A consumer's /metrics, /healthz and /readyz on a real broker: counts that match what
happened, and readiness that follows the broker."""

from __future__ import annotations

from typing import Any

import aio_pika
import httpx
from prometheus_client.parser import text_string_to_metric_families

from common.envelope import Envelope
from common.names import Names
from consumer import PermanentError, Registry, RetryableError
from deploy.local.broker import LocalBroker, free_port, restart_local_broker, stop_local_broker
from tests.support.pipeline import consumer_settings, publish_raw, queue_depth, running_worker
from tests.support.wait import wait_until

NAMES = Names()


def _registry(done: list[str]) -> Registry:
    registry = Registry("observed")

    @registry.handler("jobs.ok")
    async def ok(payload: Any) -> None:
        done.append("ok")

    @registry.handler("jobs.flaky", max_attempts=3)
    async def flaky(payload: Any, envelope: Envelope) -> None:
        if envelope.attempt == 1:
            raise RetryableError("not yet")
        done.append("flaky")

    @registry.handler("jobs.bad")
    async def bad(payload: Any) -> None:
        raise PermanentError("never")

    return registry


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_a_scrape_shows_exactly_what_happened(amqp_url: str) -> None:
    done: list[str] = []
    port = free_port()
    settings = consumer_settings(amqp_url, metrics_port=port, metrics_host="127.0.0.1")
    async with running_worker(settings, _registry(done)):
        # When one message succeeds, one succeeds on its retry and one is quarantined
        for message_type in ("jobs.ok", "jobs.flaky", "jobs.bad"):
            await publish_raw(
                amqp_url,
                NAMES.ingress,
                f"normal.{message_type}",
                aio_pika.Message(b"{}", delivery_mode=2),
            )
        await wait_until(lambda: sorted(done) == ["flaky", "ok"], timeout_s=15)

        async def quarantined() -> bool:
            return await queue_depth(amqp_url, NAMES.quarantine("observed")) == 1

        await wait_until(quarantined, timeout_s=15)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            text = (await client.get("/metrics")).text
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).json() == {"status": "ready"}
    # Then the scrape counts exactly those outcomes, labelled by handler pattern
    settled = _samples(text, "hopline_consumer_messages_total")
    counted = {
        (dict(labels)["type"], dict(labels)["outcome"], dict(labels)["reason"]): value
        for labels, value in settled.items()
    }
    assert counted == {
        ("jobs.ok", "ack", ""): 1,
        ("jobs.flaky", "retry", "retryable"): 1,
        ("jobs.flaky", "ack", ""): 1,
        ("jobs.bad", "quarantine", "permanent"): 1,
    }
    runs = _samples(text, "hopline_consumer_handler_duration_seconds_count")
    assert sum(runs.values()) == 4
    copies = _samples(text, "hopline_consumer_retry_copies_total")
    assert list(copies.values()) == [1]
    assert _samples(text, "hopline_consumer_broker_connected") == {(("service", "observed"),): 1}


async def test_readyz_follows_the_broker(private_broker: LocalBroker) -> None:
    port = free_port()
    url = private_broker.amqp_url + "?reconnect_interval=0.5"
    settings = consumer_settings(url, metrics_port=port, metrics_host="127.0.0.1")
    async with (
        running_worker(settings, _registry([])),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        assert (await client.get("/readyz")).status_code == 200

        async def ready_is(status: int) -> bool:
            return (await client.get("/readyz")).status_code == status

        # When the broker goes away, the consumer is not ready (and says why) ...
        stop_local_broker(private_broker)
        await wait_until(lambda: ready_is(503), timeout_s=20, message="still ready")
        assert "not connected" in (await client.get("/readyz")).json()["detail"]
        assert (await client.get("/healthz")).status_code == 200  # alive all along
        # ... and ready again once it is back and consuming
        restart_local_broker(private_broker)
        await wait_until(lambda: ready_is(200), timeout_s=60, message="never ready again")
