"""Idempotency keys on POST /v1/messages/batch, on real components: RabbitMQ, a SQLite file
(PostgreSQL where two producers share the store). What reached the broker is read off the
service's queue, so "published once" is counted there, not taken from the HTTP answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from deploy.local.broker import free_port
from tests.support.pipeline import drain, producer_client, producer_settings, publish_raw
from tests.support.postgres import fresh_database
from tests.support.quarantine import declare_service

QUEUE = "hopline.orders.normal"  # the service `orders`, bound to orders.created only
BLOCKED = "test.blocked"  # bound to normal.jobs.blocked: refuses what it has no room for


@pytest.fixture(autouse=True)
async def _orders_service(amqp_url: str) -> None:
    await declare_service(amqp_url, "orders", ("orders.created",))


@pytest.fixture
async def client(amqp_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A producer on this test's vhost (after its queues), its store a SQLite file."""
    async with producer_client(producer_settings(amqp_url, status_url=_sqlite(tmp_path))) as c:
        yield c


def _order(n: int, **fields: Any) -> dict[str, Any]:
    return {"type": "orders.created", "payload": {"n": n}, **fields}


async def _post(
    client: httpx.AsyncClient, messages: list[dict[str, Any]], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post("/v1/messages/batch", json={"messages": messages}, headers=headers)


async def _queued(amqp_url: str, queue: str = QUEUE) -> list[str]:
    """The message ids in `queue` (taken off it), sorted: a duplicate shows twice."""
    return sorted(m.message_id or "" for m in await drain(amqp_url, queue))


def _ids(answer: httpx.Response) -> list[str]:
    return [r["message_id"] for r in answer.json()["results"]]


def _replayed(answer: httpx.Response) -> list[bool]:
    return [r["replayed"] for r in answer.json()["results"]]


def _sqlite(tmp_path: Path) -> SecretStr:
    return SecretStr(f"sqlite:///{tmp_path / 'status.sqlite3'}")


async def test_a_batch_sent_again_with_its_key_is_200_all_replayed_and_queued_once(
    client: httpx.AsyncClient, amqp_url: str
) -> None:
    batch = [_order(n) for n in range(3)]
    first = await _post(client, batch, key="import-1")
    again = await _post(client, batch, key="import-1")

    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert _replayed(first) == [False] * 3
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _ids(again) == _ids(first)
    assert _replayed(again) == [True] * 3
    assert (again.json()["accepted"], again.json()["failed"]) == (3, 0)
    assert await _queued(amqp_url) == sorted(_ids(first))  # three messages, not six


async def test_items_accepted_singly_are_replayed_in_a_batch_and_only_the_others_published(
    client: httpx.AsyncClient, amqp_url: str
) -> None:
    # Given order-1 accepted on its own
    single = await client.post("/v1/messages", json=_order(1, message_id="order-1"))
    # When a batch carries it again, with a new message_id and an item without one
    batch = await _post(
        client, [_order(1, message_id="order-1"), _order(2, message_id="order-2"), _order(3)]
    )
    # And order-2 is then sent on its own
    single_again = await client.post("/v1/messages", json=_order(2, message_id="order-2"))

    assert single.status_code == 202
    # Then only the batch's new items were published, and order-1's answer is its first one
    assert batch.status_code == 202, batch.text
    assert _replayed(batch) == [True, False, False]
    unkeyed = _ids(batch)[2]
    assert _ids(batch)[:2] == ["order-1", "order-2"]
    # ... and the single endpoint shares the key space: order-2 from the batch is a replay
    assert single_again.status_code == 200
    assert single_again.headers["Idempotent-Replayed"] == "true"
    assert await _queued(amqp_url) == sorted(["order-1", "order-2", unkeyed])


async def test_a_key_reused_with_a_different_batch_is_409_and_publishes_nothing(
    client: httpx.AsyncClient, amqp_url: str
) -> None:
    first = await _post(client, [_order(0), _order(1)], key="import-2")
    published_first = await _queued(amqp_url)
    # The first batch and one item more: the key names the first request, so not this
    reused = await _post(client, [_order(0), _order(1), _order(2)], key="import-2")

    assert first.status_code == 202
    assert reused.status_code == 409, reused.text
    assert "Retry-After" not in reused.headers  # sending it again cannot help
    assert reused.json()["detail"] == (
        "this Idempotency-Key was already used for a different batch (it was accepted with "
        "other contents at items 0, 1): send this batch with a new Idempotency-Key; nothing "
        "in this batch was published"
    )
    assert published_first == sorted(_ids(first))
    assert await _queued(amqp_url) == []  # not item 2, nor anything else


async def test_a_batch_with_one_message_id_taken_publishes_none_and_keeps_no_other_key(
    client: httpx.AsyncClient, amqp_url: str
) -> None:
    # Given order-5 accepted with other contents
    await client.post("/v1/messages", json=_order(5, message_id="order-5"))
    await _queued(amqp_url)
    # When a batch carries a new order-4 and a different order-5
    refused = await _post(
        client, [_order(4, message_id="order-4"), _order(55, message_id="order-5")]
    )
    queued_after_refusal = await _queued(amqp_url)
    # Then order-4's claim was released with the refusal: sent alone it is published
    alone = await _post(client, [_order(4, message_id="order-4")])

    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        "the message_id of item 1 was already accepted for a different message: give those "
        "items new message_ids; nothing in this batch was published"
    )
    assert queued_after_refusal == []
    assert (alone.status_code, _replayed(alone)) == (202, [False])
    assert await _queued(amqp_url) == ["order-4"]


async def test_concurrent_identical_batches_in_one_producer_publish_each_message_once(
    client: httpx.AsyncClient, amqp_url: str
) -> None:
    batch = [_order(n) for n in range(20)]
    answers = await asyncio.gather(*(_post(client, batch, key="import-3") for _ in range(5)))

    # The per-key lock makes the later ones wait for the first answer, not see it in flight
    assert sorted(a.status_code for a in answers) == [200] * 4 + [202]
    assert len({tuple(_ids(a)) for a in answers}) == 1
    assert await _queued(amqp_url) == sorted(_ids(answers[0]))


async def test_concurrent_identical_batches_through_two_producers_publish_each_message_once(
    amqp_url: str,
) -> None:
    batch = [_order(n) for n in range(50)]
    async with fresh_database() as database_url:
        # Two producers, each with its own locks: only the store's unique rows stand between
        settings = producer_settings(amqp_url, status_url=SecretStr(database_url))
        async with producer_client(settings) as one, producer_client(settings) as two:
            racing = await asyncio.gather(
                *(_post(client, batch, key="import-4") for client in (one, two) * 3)
            )
            settled = [await _post(client, batch, key="import-4") for client in (one, two)]

    # A batch that met another in flight is 409 with Retry-After, never half-published
    assert {a.status_code for a in racing} <= {200, 202, 409}, [a.text for a in racing]
    assert [a.status_code for a in racing].count(202) == 1
    assert all(a.headers["Retry-After"] == "1" for a in racing if a.status_code == 409)
    assert [a.status_code for a in settled] == [200, 200]
    first = next(a for a in racing if a.status_code == 202)
    assert _ids(settled[0]) == _ids(settled[1]) == _ids(first)
    assert await _queued(amqp_url) == sorted(_ids(first))


async def test_a_batch_refused_with_the_broker_away_is_published_when_sent_again(
    client: httpx.AsyncClient, amqp_url: str, tmp_path: Path
) -> None:
    batch = [_order(n) for n in range(3)]
    # Given a producer that cannot reach the broker, sharing its store with one that can
    away = producer_settings(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        publish_timeout_s=0.5,
        status_url=_sqlite(tmp_path),
    )
    async with producer_client(away, wait_ready=False) as away_client:
        refused = await _post(away_client, batch, key="import-5")
    # When the same batch goes to the producer that reaches the broker
    accepted = await _post(client, batch, key="import-5")

    # Then it is published as new: the refusal kept none of its keys
    assert refused.status_code == 503, refused.text
    assert "Retry-After" in refused.headers
    assert accepted.status_code == 202, accepted.text
    assert _replayed(accepted) == [False] * 3
    assert await _queued(amqp_url) == sorted(_ids(accepted))


async def test_items_the_broker_refused_are_the_only_ones_published_when_sent_again(
    client: httpx.AsyncClient, amqp_url: str
) -> None:
    # Given a queue for jobs.blocked that is full and refuses more (reject-publish): the
    # broker nacks a publish routed to it, and takes the others of the same batch
    await _declare_full_queue(amqp_url)
    batch = [_order(0), {"type": "jobs.blocked", "payload": {"n": 1}}, _order(2)]
    partly = await _post(client, batch, key="import-6")
    # When the queue has room again and the same batch is sent again
    filler = await _queued(amqp_url, BLOCKED)
    again = await _post(client, batch, key="import-6")
    third = await _post(client, batch, key="import-6")

    # Then the first answer says which item failed, and only that one was published after
    assert partly.status_code == 202, partly.text
    assert [r["status"] for r in partly.json()["results"]] == ["accepted", "failed", "accepted"]
    assert "refused" in partly.json()["results"][1]["error"]
    assert filler == ["filler"]
    assert again.status_code == 202, again.text
    assert _replayed(again) == [True, False, True]
    assert _ids(again)[0::2] == _ids(partly)[0::2]
    assert (third.status_code, _replayed(third)) == (200, [True, True, True])
    assert await _queued(amqp_url) == sorted(_ids(partly)[0::2])
    assert await _queued(amqp_url, BLOCKED) == [_ids(again)[1]]


async def _declare_full_queue(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            BLOCKED, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
        )
        await queue.bind("hopline.ingress", "normal.jobs.blocked")
    finally:
        await connection.close()
    await publish_raw(amqp_url, "", BLOCKED, aio_pika.Message(b"{}", message_id="filler"))


async def test_with_the_store_away_a_header_is_503_and_message_ids_are_published_as_before(
    amqp_url: str,
) -> None:
    store_away = SecretStr(f"postgresql://postgres@127.0.0.1:{free_port()}/hopline")
    async with producer_client(producer_settings(amqp_url, status_url=store_away)) as c:
        with_header = await _post(c, [_order(0)], key="import-7")
        with capture_logs() as logs:
            with_ids = await _post(c, [_order(1, message_id="order-1"), _order(2)])

    assert with_header.status_code == 503, with_header.text
    assert "Idempotency-Key cannot be checked" in with_header.json()["detail"]
    assert with_ids.status_code == 202, with_ids.text
    skipped = [e for e in logs if e["event"] == "idempotency.skipped"]
    assert [e["items"] for e in skipped] == [1]
    assert await _queued(amqp_url) == sorted(_ids(with_ids))  # nothing of the 503
