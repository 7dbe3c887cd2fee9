"""Real producer and consumer processes over HTTP and AMQP."""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from pathlib import Path

import aio_pika
import httpx

from common.names import Names
from deploy.local.broker import free_port
from tests.support.pipeline import drain, publish_raw, queue_depth
from tests.support.processes import (
    read_records,
    service_process,
    stop_process,
    wait_http_ready,
)
from tests.support.wait import wait_until

NAMES = Names()
HANDLERS = "tests.e2e.handlers:registry"


async def _depth_is(amqp_url: str, queue: str, expected: int) -> bool:
    return await queue_depth(amqp_url, queue) == expected


async def _wait_consumer_ready(amqp_url: str) -> None:
    """Until the consumer consumes: its queue declared is not enough, a message published
    before its bindings exist is unroutable (this race failed the delivery-limit test)."""

    async def consuming() -> bool:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(NAMES.work_queue("e2e", "normal"), passive=True)
            return bool(queue.declaration_result.consumer_count)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            await connection.close()

    await wait_until(consuming, timeout_s=20, interval_s=0.2, message="consumer never consumed")


async def test_messages_posted_over_http_are_handled_by_a_consumer_process(
    amqp_url: str, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    port = free_port()
    with (
        service_process(
            "consumer",
            amqp_url,
            tmp_path / "consumer.log",
            HOPLINE_HANDLERS=HANDLERS,
            HOPLINE_TEST_RECORD_FILE=str(records),
        ) as consumer,
        service_process("producer", amqp_url, tmp_path / "producer.log", HOPLINE_PORT=str(port)),
    ):
        await _wait_consumer_ready(amqp_url)
        await wait_http_ready(port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            batch = {"messages": [{"type": "jobs.quick", "payload": {"n": n}} for n in range(50)]}
            response = await client.post("/v1/messages/batch", json=batch)
            assert response.status_code == 202, response.text
            assert response.json()["accepted"] == 50
        await wait_until(lambda: len(read_records(records)) >= 50, timeout_s=20)
        assert stop_process(consumer) == 0
    handled = sorted(record["payload"]["n"] for record in read_records(records))
    assert handled == list(range(50)), "each message exactly once"


async def test_sigterm_lets_running_handlers_finish_and_loses_nothing(
    amqp_url: str, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    queue = NAMES.work_queue("e2e", "normal")
    with service_process(
        "consumer",
        amqp_url,
        tmp_path / "consumer.log",
        HOPLINE_HANDLERS=HANDLERS,
        HOPLINE_TEST_RECORD_FILE=str(records),
        HOPLINE_CONCURRENCY="4",
        HOPLINE_SHUTDOWN_GRACE_S="20",
    ) as consumer:
        await _wait_consumer_ready(amqp_url)
        # Given 12 slow messages, 4 running at a time
        for n in range(12):
            await publish_raw(
                amqp_url,
                NAMES.ingress,
                "normal.jobs.slow",
                aio_pika.Message(f'{{"n": {n}, "sleep_s": 1.0}}'.encode(), delivery_mode=2),
            )
        await wait_until(lambda: len(read_records(records)) >= 1, timeout_s=15)
        # When the consumer gets SIGTERM mid-stream
        exit_code = stop_process(consumer, timeout_s=30)
    # Then it exits cleanly, and every message is either handled or still in its queue
    assert exit_code == 0
    handled = [record["payload"]["n"] for record in read_records(records)]
    assert len(handled) == len(set(handled)), "nothing handled twice"
    # The broker hands the closed channel's unacked messages back a moment later.
    await wait_until(
        lambda: _depth_is(amqp_url, queue, 12 - len(handled)),
        timeout_s=15,
        message="unhandled messages did not come back to the queue",
    )
    left = await drain(amqp_url, queue)
    left_numbers = [int(message.body.split(b":")[1].split(b",")[0]) for message in left]
    assert sorted(handled + left_numbers) == list(range(12))
    # Nothing that had started was abandoned half-way: handled ones are not in the queue
    assert not set(handled) & set(left_numbers)


async def test_a_message_that_kills_its_consumer_is_quarantined_by_the_delivery_limit(
    amqp_url: str, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    quarantine = NAMES.quarantine("e2e")

    processes = ExitStack()

    def start() -> subprocess.Popen[bytes]:
        return processes.enter_context(
            service_process(
                "consumer",
                amqp_url,
                tmp_path / "consumer.log",
                HOPLINE_HANDLERS=HANDLERS,
                HOPLINE_TEST_RECORD_FILE=str(records),
                HOPLINE_DELIVERY_LIMIT="2",
                HOPLINE_CONCURRENCY="4",
            )
        )

    with processes:
        # Given healthy messages around one that kills whichever process handles it
        process = start()
        await _wait_consumer_ready(amqp_url)
        for n in range(20):
            if n == 10:
                await publish_raw(
                    amqp_url, NAMES.ingress, "normal.jobs.poison", aio_pika.Message(b'{"n": -1}')
                )
            await publish_raw(
                amqp_url,
                NAMES.ingress,
                "normal.jobs.quick",
                aio_pika.Message(f'{{"n": {n}}}'.encode()),
            )

        # When a supervisor keeps restarting the consumer, as Kubernetes would
        restarts = 0

        async def settled() -> bool:
            nonlocal process, restarts
            if process.poll() is not None:
                restarts += 1
                process = start()
            quick = {r["payload"]["n"] for r in read_records(records) if r["kind"] == "quick"}
            return quick == set(range(20)) and await queue_depth(amqp_url, quarantine) == 1

        await wait_until(settled, timeout_s=60, interval_s=0.3, message="poison not quarantined")

    # Then the broker itself quarantined the poison after the delivery limit
    [poisoned] = await drain(amqp_url, quarantine)
    assert poisoned.body == b'{"n": -1}'
    deaths = poisoned.headers.get("x-death")
    assert deaths, poisoned.headers
    assert restarts >= 2
    starts = [r for r in read_records(records) if r["kind"] == "poison-start"]
    assert 2 <= len(starts) <= 4
