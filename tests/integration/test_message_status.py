"""Where is my message: events from a real producer and consumer, recorded by the
producer's recorder, read back with GET /v1/messages/{id} (real RabbitMQ)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
from pydantic import SecretStr
from structlog.testing import capture_logs

from common.envelope import Envelope
from common.names import Names
from common.quarantine.operations import Operator
from common.quarantine.selection import Selection
from common.quarantine.sweep import Edit
from consumer.errors import PermanentError, RetryableError
from consumer.registry import Registry
from tests.support.pipeline import (
    FAST_RETRY_DELAYS_S,
    consumer_settings,
    producer_client,
    producer_settings,
    publish_raw,
    queue_depth,
    running_worker,
    status_once,
)
from tests.support.postgres import fresh_database
from tests.support.wait import wait_until

NAMES = Names()
ORDER = {"type": "orders.created", "payload": {"order_id": "A-1", "amount_cents": 100}}


def _registry(runs: list[int]) -> Registry:
    registry = Registry("demo")

    @registry.handler("orders.created", max_attempts=3)
    async def created(payload: dict[str, Any], envelope: Envelope) -> dict[str, Any]:
        runs.append(envelope.attempt)
        if envelope.attempt == 1:
            raise RetryableError("the payment gateway timed out")
        return {"charged_cents": payload["amount_cents"]}

    return registry


async def _status_once(
    client: httpx.AsyncClient, message_id: str, state: str, *, events: int = 0
) -> dict[str, Any]:
    """The status once service `demo` is in `state` (and at least `events` are recorded)."""
    return await status_once(client, message_id, "demo", state, events=events)


async def test_a_message_s_timeline_runs_from_accepted_through_a_retry_to_succeeded(
    amqp_url: str,
) -> None:
    runs: list[int] = []
    async with (
        running_worker(consumer_settings(amqp_url), _registry(runs)),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        accepted = await client.post("/v1/messages", json=ORDER)
        message_id = accepted.json()["message_id"]

        status = await _status_once(client, message_id, "succeeded")

    assert (status["type"], status["routing_key"]) == ("orders.created", "normal.orders.created")
    demo = status["services"]["demo"]
    assert (demo["attempt"], demo["result"]) == (2, {"charged_cents": 100})
    assert [(a["attempt"], a["outcome"]) for a in demo["attempts"]] == [
        (1, "retry_scheduled"),
        (2, "succeeded"),
    ]
    first = demo["attempts"][0]
    assert first["error_type"] == "RetryableError"
    assert first["error_message"] == "the payment gateway timed out"
    assert first["retry_delay_s"] == FAST_RETRY_DELAYS_S[0]
    assert [e["event"] for e in status["timeline"]] == [
        "accepted",
        "started",
        "retry_scheduled",
        "started",
        "succeeded",
    ]
    assert runs == [1, 2]


async def test_an_id_never_seen_is_unknown_not_pending(amqp_url: str) -> None:
    async with producer_client(producer_settings(amqp_url)) as client:
        answer = await client.get("/v1/messages/no-such-message")

    assert answer.status_code == 404
    assert answer.json()["status"] == "unknown"


async def test_a_repeated_idempotency_key_gets_the_first_answer_and_publishes_nothing(
    amqp_url: str,
) -> None:
    runs: list[int] = []
    async with (
        running_worker(consumer_settings(amqp_url), _registry(runs)),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        headers = {"Idempotency-Key": "order-A-1"}
        first = await client.post("/v1/messages", json=ORDER, headers=headers)
        again = await client.post("/v1/messages", json=ORDER, headers=headers)
        await _status_once(client, first.json()["message_id"], "succeeded")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json()["message_id"] == first.json()["message_id"]
    assert runs == [1, 2]  # one message: its first attempt and its retry, nothing more


async def test_a_repeated_idempotency_key_gets_the_first_answer_with_a_postgresql_store(
    amqp_url: str,
) -> None:
    async with fresh_database() as database_url:
        settings = producer_settings(amqp_url, status_url=SecretStr(database_url))
        async with producer_client(settings) as client:
            headers = {"Idempotency-Key": "order-A-2"}
            first = await client.post("/v1/messages", json=ORDER, headers=headers)
            again = await client.post("/v1/messages", json=ORDER, headers=headers)

    # A scoped key once held a NUL, which PostgreSQL text refuses: every keyed request was 503
    assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
    assert again.json()["message_id"] == first.json()["message_id"]


async def test_concurrent_duplicates_are_published_once(amqp_url: str) -> None:
    runs: list[int] = []
    async with (
        running_worker(consumer_settings(amqp_url), _registry(runs)),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        body = {**ORDER, "message_id": "client-order-7"}
        answers = await asyncio.gather(*(client.post("/v1/messages", json=body) for _ in range(10)))
        await _status_once(client, "client-order-7", "succeeded")

    assert sorted(a.status_code for a in answers) == [200] * 9 + [202]
    assert {a.json()["message_id"] for a in answers} == {"client-order-7"}
    assert runs == [1, 2]


async def test_a_key_whose_publish_failed_can_be_sent_again(amqp_url: str, tmp_path: Path) -> None:
    store = SecretStr(f"sqlite:///{tmp_path / 'status.sqlite3'}")  # both producers share it
    headers = {"Idempotency-Key": "k-1"}
    # Given a producer that cannot reach the broker: its answer is 503
    away = producer_settings(
        "amqp://guest:guest@127.0.0.1:1/", publish_timeout_s=0.5, status_url=store
    )
    async with producer_client(away, wait_ready=False) as client:
        refused = await client.post("/v1/messages", json=ORDER, headers=headers)
    # When the same request goes to a producer that reaches the broker
    async with producer_client(producer_settings(amqp_url, status_url=store)) as client:
        accepted = await client.post("/v1/messages", json=ORDER, headers=headers)

    # Then it is accepted as new: the failed publish did not keep the key
    assert refused.status_code == 503
    assert accepted.status_code == 202
    assert "Idempotent-Replayed" not in accepted.headers


async def test_a_result_over_the_limit_is_replaced_by_a_note(amqp_url: str) -> None:
    registry = Registry("demo")

    @registry.handler("orders.created")
    async def created(payload: dict[str, Any]) -> str:
        return "x" * 100

    async with (
        running_worker(consumer_settings(amqp_url, max_result_bytes=16), registry),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        message_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
        status = await _status_once(client, message_id, "succeeded")

    assert "over the limit of 16" in status["services"]["demo"]["result"]


async def test_a_quarantined_message_s_timeline_runs_through_its_replay_and_edited_copy(
    amqp_url: str,
) -> None:
    broken = [True]
    registry = Registry("demo")

    @registry.handler("orders.created")
    async def created(payload: dict[str, Any]) -> str:
        if broken[0] and not payload.get("fixed"):
            raise PermanentError("the template is missing")
        return "done"

    settings = consumer_settings(amqp_url)
    async with (
        running_worker(settings, registry),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        replayed_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
        edited_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
        await _status_once(client, replayed_id, "quarantined")
        await _status_once(client, edited_id, "quarantined")

        # When one is replayed after the fix, and the other is replayed as an edited copy
        async with Operator.open(settings, name="test-operator") as operator:
            edit = Edit(body=b'{"order_id": "A-1", "amount_cents": 100, "fixed": true}')
            report = await operator.replay(
                ["demo"], Selection(ids=frozenset({edited_id})), edit=edit
            )
            broken[0] = False
            await operator.replay(["demo"], Selection(ids=frozenset({replayed_id})))
        copy_id = report.edited_copies[edited_id]

        replayed = await _status_once(client, replayed_id, "succeeded", events=6)
        copy = await _status_once(client, copy_id, "succeeded")
        original = (await client.get(f"/v1/messages/{edited_id}")).json()

    assert [e["event"] for e in replayed["timeline"]] == [
        "accepted",
        "started",
        "quarantined",
        "replayed",
        "started",
        "succeeded",
    ]
    assert copy["copy_of"] == edited_id
    assert original["copies"] == [copy_id]
    assert original["services"]["demo"]["state"] == "quarantined"  # the copy went on, not it


async def test_an_idempotent_handler_skips_a_message_that_already_succeeded(
    amqp_url: str, tmp_path: Path
) -> None:
    store = SecretStr(f"sqlite:///{tmp_path / 'status.sqlite3'}")  # the consumer reads it too
    runs: list[str] = []
    registry = Registry("demo")

    @registry.handler("orders.created", idempotent=True)
    async def created(payload: dict[str, Any]) -> None:
        runs.append(payload["order_id"])

    with capture_logs() as logs:
        async with (
            running_worker(consumer_settings(amqp_url, status_url=store), registry),
            producer_client(producer_settings(amqp_url, status_url=store)) as client,
        ):
            message_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
            await _status_once(client, message_id, "succeeded")
            # When the same message is delivered again (as after a lost ack)
            again = aio_pika.Message(
                orjson.dumps(ORDER["payload"]),
                message_id=message_id,
                type="orders.created",
                content_type="application/json",
            )
            await publish_raw(amqp_url, NAMES.ingress, "normal.orders.created", again)
            await wait_until(
                lambda: any(e["event"] == "message.skipped" for e in logs), timeout_s=20
            )

    # Then it is acked without running the handler a second time
    assert runs == ["A-1"]
    assert await queue_depth(amqp_url, NAMES.work_queue("demo", "normal")) == 0


async def test_the_admin_api_finds_a_message_by_a_unique_prefix_of_its_id(amqp_url: str) -> None:
    token = "admin-token-0123456789"
    runs: list[int] = []
    settings = producer_settings(amqp_url, admin_token=SecretStr(token))
    async with (
        running_worker(consumer_settings(amqp_url), _registry(runs)),
        producer_client(settings) as client,
    ):
        message_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
        await _status_once(client, message_id, "succeeded")
        admin = {"Authorization": f"Bearer {token}"}
        found = await client.get(f"/v1/admin/messages/{message_id[:8]}", headers=admin)
        refused = await client.get(f"/v1/admin/messages/{message_id[:8]}")
        unknown = await client.get("/v1/admin/messages/zzzz", headers=admin)

    assert found.status_code == 200
    assert found.json()["message_id"] == message_id
    assert refused.status_code == 401
    assert (unknown.status_code, unknown.json()["status"]) == (404, "unknown")
