"""Fault scenarios: a numbered stream through the real producer and consumers, a fault in the
middle, and every message accounted for at the end (tests/support/chaos.py).

Two promises are asserted in every scenario: nothing the producer accepted (202) is lost, and
a fault changes no outcome (no message the handler would handle ends in quarantine; a poison
message ends there alone, with the delivery limit as its reason). Recovery times and counts
are reported in the table at the end of the run, never asserted.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from deploy.local.broker import (
    LocalBroker,
    discard_local_broker,
    kill_local_broker,
    rabbitmq_server_available,
    restart_local_broker,
    start_local_broker,
    stop_local_broker,
)
from tests.support.chaos import (
    EXIT,
    FAIL_FIRST,
    NAMES,
    SERVICE,
    HttpStream,
    Pipeline,
    Supervisor,
    Tally,
    consumer_count,
    quarantined_numbers,
    settle,
    tally,
    through_fault,
)
from tests.support.needs import missing
from tests.support.pipeline import queue_depth
from tests.support.processes import stop_process
from tests.support.proxy import TcpProxy
from tests.support.wait import wait_until

# Services reconnect every second (aio-pika's default is 5 s) so a scenario stays short.
RECONNECT = "?reconnect_interval=1"


# Retries wait 3 s: at 150 messages/s with every other one failing once, hundreds of
# messages sit in the delay levels whenever the fault strikes.
SLOW_RETRY = {"HOPLINE_RETRY_DELAYS_S": "3"}


async def test_broker_killed_and_restarted_with_hundreds_waiting_in_delay_levels(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    node = private_broker
    with Pipeline(
        node.amqp_url + RECONNECT, tmp_path, consumer_env=SLOW_RETRY, producer_env=SLOW_RETRY
    ) as pipeline:
        consumers = [pipeline.start_consumer(), pipeline.start_consumer()]
        await pipeline.wait_ready(node.amqp_url, consumers=2)
        # Given 3 000 numbered messages at 150 per second, every other one failing once
        stream = HttpStream(
            pipeline.port, 3000, rate_per_s=150, flags=lambda n: {FAIL_FIRST: n % 2 == 0}
        )
        waiting_to_retry = 0

        # When the broker is SIGKILLed a third of the way in, and started again
        async def fault() -> None:
            nonlocal waiting_to_retry
            # 3 s = 2 s in level 1, then 1 s in level 0
            waiting_to_retry = sum(
                [await queue_depth(node.amqp_url, NAMES.delay_level(n)) for n in (1, 0)]
            )
            await asyncio.to_thread(kill_local_broker, node)
            await asyncio.to_thread(restart_local_broker, node)

        fault_at, records = await through_fault(stream, pipeline.records, after=1000, fault=fault)
        # Then the same consumer processes are consuming again (no restart) ...
        assert [process.poll() for process in consumers] == [None, None]
        assert await consumer_count(node.amqp_url) == 2, "consumers did not come back"
        result = tally(
            "broker SIGKILL + restart, retries waiting",
            stream,
            records,
            await quarantined_numbers(node.amqp_url),
            fault_at=fault_at,
            notes={"in_delay_levels_at_kill": waiting_to_retry},
        )
    # ... the producer refused (503) while the broker was away, nothing accepted is lost, and
    # no message that was waiting for its retry (or arriving) was quarantined by the fault
    assert waiting_to_retry >= 100, "the fault did not strike while retries were waiting"
    assert result.refused_503 > 0
    assert result.lost == 0, result
    assert result.wrong_outcome == 0, result


POISON = 100


async def _declare_then_stop(pipeline: Pipeline, amqp_url: str) -> None:
    """A consumer declares the service's queues once, and stops (SIGTERM)."""
    consumer = pipeline.start_consumer()
    await pipeline.wait_ready(amqp_url, consumers=1)
    assert await asyncio.to_thread(stop_process, consumer) == 0


async def _poison_scenario(
    scenario: str, amqp_url: str, pipeline: Pipeline, stream: HttpStream, supervisor: Supervisor
) -> Tally:
    """Once the poison message is in quarantine and everything else handled: the tally."""
    queue = NAMES.quarantine(SERVICE)

    async def arrived() -> bool:
        return await queue_depth(amqp_url, queue) >= 1

    await wait_until(arrived, timeout_s=120, interval_s=0.5, message="poison never quarantined")
    records = await settle(stream, pipeline.records, never_handled=frozenset({POISON}))
    return tally(
        scenario,
        stream,
        records,
        await quarantined_numbers(amqp_url),
        fault_at=None,
        expected_quarantine={POISON: "delivery_limit"},
        notes={"consumer_exits": len(supervisor.exits)},
    )


async def test_poison_message_in_a_backlog_is_quarantined_alone(
    amqp_url: str, tmp_path: Path
) -> None:
    with Pipeline(amqp_url, tmp_path) as pipeline:
        await _declare_then_stop(pipeline, amqp_url)
        # Given a backlog of 1 000 messages, one of which ends its consumer process every time
        stream = HttpStream(
            pipeline.port, 1000, rate_per_s=500, flags=lambda n: {EXIT: n == POISON}
        )
        await stream.run()
        # When a consumer works it off under a supervisor that restarts it after each exit
        async with Supervisor(pipeline) as supervisor:
            result = await _poison_scenario(
                "poison message (process exits) in a backlog, supervised",
                amqp_url,
                pipeline,
                stream,
                supervisor,
            )
    # Then only the poison message is in quarantine, with the delivery limit as its reason;
    # every other message was handled, none lost
    assert result.lost == 0, result
    assert result.wrong_outcome == 0, result
    assert result.processed == result.accepted - 1, result


async def test_poison_message_in_a_trickle_is_quarantined_alone(
    amqp_url: str, tmp_path: Path
) -> None:
    with Pipeline(amqp_url, tmp_path) as pipeline:
        await _declare_then_stop(pipeline, amqp_url)
        # Given a consumer under a supervisor that restarts it after each exit
        async with Supervisor(pipeline) as supervisor:
            await pipeline.wait_ready(amqp_url, consumers=1)
            # When 1 000 messages arrive at 150 per second, one of which ends its process
            stream = HttpStream(
                pipeline.port, 1000, rate_per_s=150, flags=lambda n: {EXIT: n == POISON}
            )
            await stream.run()
            result = await _poison_scenario(
                "poison message (process exits) in a trickle, supervised",
                amqp_url,
                pipeline,
                stream,
                supervisor,
            )
    # Then only the poison message is in quarantine; every other one was handled
    assert result.lost == 0, result
    assert result.wrong_outcome == 0, result
    assert result.processed == result.accepted - 1, result


async def test_consumer_sigkilled_with_handlers_running(amqp_url: str, tmp_path: Path) -> None:
    with Pipeline(amqp_url, tmp_path) as pipeline:
        victim, survivor = pipeline.start_consumer(), pipeline.start_consumer()
        await pipeline.wait_ready(amqp_url, consumers=2)
        # Given 2 000 messages whose handlers take 50 ms, 16 at a time per consumer
        stream = HttpStream(pipeline.port, 2000, rate_per_s=150, sleep_s=0.05)

        # When one consumer is SIGKILLed a third of the way in, handlers running
        async def fault() -> None:
            victim.send_signal(signal.SIGKILL)

        fault_at, records = await through_fault(stream, pipeline.records, after=600, fault=fault)
        result = tally(
            "consumer SIGKILL, handlers running",
            stream,
            records,
            await quarantined_numbers(amqp_url),
            fault_at=fault_at,
            notes={
                "handled_by_survivor_after_kill": sum(
                    1
                    for r in records
                    if r["pid"] == survivor.pid and float(r["t"]) > fault_at  # type: ignore[arg-type]
                )
            },
        )
        assert survivor.poll() is None
    # Then its unacked messages went to the other consumer: nothing accepted is lost
    assert result.lost == 0, result
    assert result.wrong_outcome == 0, result
    assert result.accepted == result.sent


async def test_sigterm_under_load(amqp_url: str, tmp_path: Path) -> None:
    with Pipeline(amqp_url, tmp_path) as pipeline:
        stopping, staying = pipeline.start_consumer(), pipeline.start_consumer()
        await pipeline.wait_ready(amqp_url, consumers=2)
        stream = HttpStream(pipeline.port, 2000, rate_per_s=150, sleep_s=0.05)
        exit_code: int | None = None

        # When one consumer gets SIGTERM a third of the way in
        async def fault() -> None:
            nonlocal exit_code
            stopping.send_signal(signal.SIGTERM)
            exit_code = await asyncio.to_thread(stopping.wait, 30)

        fault_at, records = await through_fault(stream, pipeline.records, after=600, fault=fault)
        result = tally(
            "consumer SIGTERM under load",
            stream,
            records,
            await quarantined_numbers(amqp_url),
            fault_at=fault_at,
        )
        assert staying.poll() is None
    # Then it drained and exited cleanly, and nothing accepted is lost; in-flight handlers
    # finished and were acked, so nothing is handled twice either
    assert exit_code == 0
    assert result.lost == 0, result
    assert result.wrong_outcome == 0, result
    assert result.duplicates == 0, result


async def _inject(proxy: TcpProxy, fault: str) -> None:
    if fault == "reset":
        proxy.reset()
    elif fault == "half-open":
        proxy.half_open()
    else:  # a stall shorter than the heartbeat timeout, or long enough to trip it
        proxy.stall()
        await asyncio.sleep(1.5 if fault == "short stall" else 8.0)  # the fault's own length
        proxy.resume()


@pytest.mark.parametrize("fault", ["reset", "short stall", "half-open", "heartbeat timeout"])
async def test_connections_cut_through_a_tcp_proxy(
    amqp_url: str, tmp_path: Path, fault: str
) -> None:
    async with TcpProxy("127.0.0.1", _port(amqp_url)) as proxy:
        # Heartbeats every 2 s: a silent connection is given up after a few seconds
        services_url = proxy.url(amqp_url) + "?reconnect_interval=1&heartbeat=2"
        with Pipeline(services_url, tmp_path) as pipeline:
            consumers = [pipeline.start_consumer(), pipeline.start_consumer()]
            await pipeline.wait_ready(amqp_url, consumers=2)
            connections_before = proxy.connections_seen
            stream = HttpStream(pipeline.port, 2000, rate_per_s=150)

            fault_at, records = await through_fault(
                stream, pipeline.records, after=600, fault=lambda: _inject(proxy, fault)
            )
            assert [process.poll() for process in consumers] == [None, None]
            result = tally(
                f"TCP proxy: {fault}",
                stream,
                records,
                await quarantined_numbers(amqp_url),
                fault_at=fault_at,
                notes={"reconnections": proxy.connections_seen - connections_before},
            )
    assert result.lost == 0, result
    assert result.wrong_outcome == 0, result


def _port(amqp_url: str) -> int:
    return urlsplit(amqp_url).port or 5672


async def test_memory_alarm_blocks_publishers(private_broker: LocalBroker, tmp_path: Path) -> None:
    node = private_broker
    with Pipeline(node.amqp_url + RECONNECT, tmp_path) as pipeline:
        pipeline.start_consumer()
        await pipeline.wait_ready(node.amqp_url, consumers=1)
        stream = HttpStream(pipeline.port, 2000, rate_per_s=150)

        # When the broker raises a memory alarm a third of the way in, for 5 seconds
        async def fault() -> None:
            await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.0000001")
            await asyncio.sleep(5)  # the alarm's own length
            await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.4")

        fault_at, records = await through_fault(stream, pipeline.records, after=600, fault=fault)
        refused = [a for a in stream.answers.values() if a.status == 503]
        result = tally(
            "memory alarm (publishers blocked)",
            stream,
            records,
            await quarantined_numbers(node.amqp_url),
            fault_at=fault_at,
            notes={
                "slowest_503_s": round(
                    max((a.answered_at - a.sent_at for a in refused), default=0), 2
                )
            },
        )
    # Then the producer answered 503 instead of hanging, recovered, and lost nothing
    assert result.refused_503 > 0
    assert result.no_answer == 0, "a request hung until the client gave up"
    assert result.lost == 0, result
    assert result.wrong_outcome == 0, result


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LocalBroker]]:
    """Three private nodes joined into one RabbitMQ cluster (`rabbitmqctl join_cluster`)."""
    if not rabbitmq_server_available():
        missing("the cluster scenario needs `rabbitmq-server` on PATH")
    bases = [Path(tempfile.mkdtemp(prefix=f"hopline-cluster-{i}-")) for i in range(3)]
    nodes: list[LocalBroker] = []
    try:
        for base in bases:
            nodes.append(start_local_broker(base))
        seed = nodes[0]
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("reset")
            node.ctl("join_cluster", seed.node_name)
            node.ctl("start_app")
            node.ctl("await_startup")
        yield nodes
    finally:
        with ThreadPoolExecutor(len(nodes) or 1) as pool:
            list(pool.map(discard_local_broker, nodes))
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


async def test_a_cluster_node_stopped_and_restarted_mid_stream(
    cluster: list[LocalBroker], tmp_path: Path
) -> None:
    first, second, _third = cluster
    # Services know every node; they connect to the first that answers: `first`
    services_url = ",".join(node.amqp_url + RECONNECT for node in cluster)
    with Pipeline(services_url, tmp_path) as pipeline:
        consumers = [pipeline.start_consumer(), pipeline.start_consumer()]
        await pipeline.wait_ready(second.amqp_url, consumers=2)
        members = await asyncio.to_thread(
            first.ctl, "list_queues", "name", "type", "members", "--formatter", "json"
        )
        stream = HttpStream(pipeline.port, 3000, rate_per_s=150)

        # When the node every client is connected to stops a third of the way in, then returns
        async def fault() -> None:
            await asyncio.to_thread(stop_local_broker, first)
            await asyncio.to_thread(restart_local_broker, first)

        fault_at, records = await through_fault(stream, pipeline.records, after=1000, fault=fault)
        # Then the same consumer processes consume again, from the other nodes
        assert [process.poll() for process in consumers] == [None, None]
        assert await consumer_count(second.amqp_url) == 2
        result = tally(
            "3-node cluster: node stopped + restarted",
            stream,
            records,
            await quarantined_numbers(second.amqp_url),
            fault_at=fault_at,
        )
    work_queue = next(q for q in orjson.loads(members) if q["name"] == "hopline.chaos.normal")
    assert work_queue["type"] == "quorum" and len(work_queue["members"]) == 3
    assert result.lost == 0, result
    assert result.wrong_outcome == 0, result
