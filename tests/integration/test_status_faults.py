"""Faults of the status path on real components: the store going away (PostgreSQL behind a
TCP proxy we cut, never the shared server) and the recorder SIGKILLed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from common.names import Names
from common.status.store import open_store
from consumer.registry import Registry
from tests.support.broker import Management
from tests.support.pipeline import (
    consumer_settings,
    producer_client,
    producer_settings,
    running_worker,
)
from tests.support.postgres import fresh_database
from tests.support.processes import ROOT
from tests.support.proxy import TcpProxy
from tests.support.wait import wait_until

NAMES = Names()


def _registry(handled: list[str]) -> Registry:
    registry = Registry("demo")

    @registry.handler("orders.created")
    async def created(payload: dict[str, Any]) -> int:
        handled.append(payload["n"])
        return int(payload["n"])

    return registry


async def _post(client: httpx.AsyncClient, count: int, start: int = 0) -> list[str]:
    ids = []
    for n in range(start, start + count):
        answer = await client.post(
            "/v1/messages", json={"type": "orders.created", "payload": {"n": n}}
        )
        assert answer.status_code == 202
        ids.append(answer.json()["message_id"])
    return ids


async def _all_succeeded(client: httpx.AsyncClient, ids: list[str]) -> bool:
    for message_id in ids:
        answer = await client.get(f"/v1/messages/{message_id}")
        if answer.status_code != 200:
            return False
        demo = answer.json()["services"].get("demo")
        if demo is None or demo["state"] != "succeeded":
            return False
    return True


async def test_with_the_store_down_messages_flow_get_says_503_and_every_event_is_recorded_later(
    amqp_url: str, management: Management
) -> None:
    handled: list[str] = []
    async with fresh_database() as database_url, TcpProxy("127.0.0.1", 5432) as proxy:
        settings = producer_settings(amqp_url, status_url=SecretStr(proxy.url(database_url)))
        async with (
            running_worker(consumer_settings(amqp_url), _registry(handled)),
            producer_client(settings) as client,
        ):
            before = await _post(client, 5)
            await wait_until(lambda: _all_succeeded(client, before), timeout_s=20)

            # When the store goes away
            proxy.stall()
            proxy.reset()
            during = await _post(client, 20, start=5)

            # Then messages are still accepted and handled, events wait in their queue, and
            # a status lookup says unavailable, not something wrong
            await wait_until(lambda: len(handled) == 25, timeout_s=20, message="not handled")

            async def waiting_events() -> int:  # ready, or delivered and not acked
                info = await management.queue_info(NAMES.status)
                return int(info.get("messages", 0))

            waiting = await wait_until(
                lambda: _at_least(waiting_events, 40), timeout_s=30, message="events were acked"
            )
            lookup = await client.get(f"/v1/messages/{during[0]}")
            assert lookup.status_code == 503
            assert "Retry-After" in lookup.headers

            # When it is back, every event that happened meanwhile is recorded
            proxy.resume()
            await wait_until(lambda: _all_succeeded(client, before + during), timeout_s=60)
            timelines = [(await client.get(f"/v1/messages/{i}")).json() for i in during]

    # 20 messages x accepted and succeeded (a handler this fast has its start carried in
    # succeeded's `started_at`): none acked meanwhile
    assert waiting >= 40
    assert all(
        [e["event"] for e in t["timeline"]] == ["accepted", "started", "succeeded"]
        for t in timelines
    )


def _recorder(store_url: str, amqp_url: str, log: Path) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOPLINE_")}
    environment.update(
        {
            "HOPLINE_AMQP_URL": amqp_url,
            "HOPLINE_STATUS_URL": store_url,
            "HOPLINE_LOG_FORMAT": "json",
        }
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", "recorder"],
            env=environment,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_a_recorder_killed_mid_stream_and_restarted_loses_no_event(
    amqp_url: str, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'status.sqlite3'}"
    handled: list[str] = []
    # The producer records nothing itself here: `hopline recorder` processes do.
    settings = producer_settings(amqp_url, status_recorder=False, status_url=SecretStr(store_url))
    first = _recorder(store_url, amqp_url, tmp_path / "recorder.log")
    try:
        async with (
            running_worker(consumer_settings(amqp_url), _registry(handled)),
            producer_client(settings) as client,
        ):
            ids = await _post(client, 150)
            # When the recorder has written some of the events, it is SIGKILLed
            await wait_until(lambda: _recorded_some(store_url), timeout_s=30)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            ids += await _post(client, 150, start=150)
            await wait_until(lambda: len(handled) == 300, timeout_s=60, message="not handled")
            # and started again
            second = _recorder(store_url, amqp_url, tmp_path / "recorder.log")
            try:
                await wait_until(lambda: _all_succeeded(client, ids), timeout_s=60)
                timelines = [(await client.get(f"/v1/messages/{i}")).json() for i in ids]
            finally:
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()

    # Then every message reads succeeded, with each of its three events exactly once
    assert first.returncode == -signal.SIGKILL
    assert all(
        [e["event"] for e in t["timeline"]] == ["accepted", "started", "succeeded"]
        for t in timelines
    )


async def _at_least(count: Callable[[], Awaitable[int]], wanted: int) -> int | None:
    seen = await count()
    return seen if seen >= wanted else None


async def _recorded_some(store_url: str) -> bool:
    store = open_store(store_url, retention_s=3600)
    try:
        return bool(await store.ids_starting_with("", datetime.now(UTC), 1))
    finally:
        await store.close()
