"""The producer as a real uvicorn process against hostile HTTP clients.

Oversized bodies, wrong content types and invalid UTF-8 get a 4xx; clients that trickle
their request a byte at a time, or stall half-way through a body, hold only their own
connection: everyone else is still answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from deploy.local.broker import free_port
from tests.support.processes import service_process, wait_http_ready

MAX_REQUEST_BYTES = 64 * 1024
GOOD = {"type": "jobs.quick", "payload": {"n": 1}}


@pytest.fixture
async def producer(amqp_url: str, tmp_path: Path) -> AsyncIterator[int]:
    port = free_port()
    with service_process(
        "producer",
        amqp_url,
        tmp_path / "producer.log",
        HOPLINE_PORT=str(port),
        HOPLINE_MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES),
    ):
        await wait_http_ready(port)
        yield port


async def _post_good(port: int) -> int:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        return (await client.post("/v1/messages", json=GOOD)).status_code


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        (b"x" * (MAX_REQUEST_BYTES + 1), "application/json", 413),
        (b'{"type": "a.b", "payload": 1}', "text/plain", 415),
        (b"type=a.b&payload=1", "application/x-www-form-urlencoded", 415),
        (b'{"type": "a.b", "payload": "\xff\xfe"}', "application/json", 422),
        (b'{"type": "a.b", "payload": ', "application/json", 422),
        (b"", "application/json", 422),
    ],
    ids=["oversized", "text-plain", "form", "invalid-utf8", "truncated-json", "empty"],
)
async def test_a_bad_body_is_a_4xx_and_the_producer_keeps_serving(
    producer: int, content: bytes, content_type: str, expected: int
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{producer}", timeout=10) as client:
        response = await client.post(
            "/v1/messages", content=content, headers={"content-type": content_type}
        )
    assert response.status_code == expected, response.text
    assert await _post_good(producer) == 202


async def test_an_oversized_chunked_body_is_refused(producer: int) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_REQUEST_BYTES // 1024 + 2):
            yield b"x" * 1024

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{producer}", timeout=10) as client:
        response = await client.post(
            "/v1/messages", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert await _post_good(producer) == 202


async def _trickle(port: int, request: bytes, delay_s: float, stop: asyncio.Event) -> None:
    """A slow client: the request one byte at a time, until told to stop."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for byte in request:
            if stop.is_set():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(delay_s)
        await stop.wait()
    except ConnectionError:
        return  # the server may close a slow connection: that is fine too
    finally:
        writer.close()


async def test_slow_clients_do_not_hold_up_the_others(producer: int) -> None:
    # Given 30 clients trickling headers a byte at a time, and 10 that send their headers
    # and then stall half-way through the body they announced
    body = b'{"type": "jobs.quick", "payload": {"n": 1}}'
    trickled = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    stalled = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10])
    )
    stop = asyncio.Event()
    slow = [asyncio.create_task(_trickle(producer, trickled, 0.2, stop)) for _ in range(30)]
    slow += [asyncio.create_task(_trickle(producer, stalled, 0.0, stop)) for _ in range(10)]
    try:
        await asyncio.sleep(1.0)  # let them all get a connection in
        # When other clients post meanwhile
        statuses = await asyncio.gather(*(_post_good(producer) for _ in range(20)))
        # Then every one of them is answered
        assert statuses == [202] * 20
        assert not any(task.done() for task in slow[:30]), "slow clients are still trickling"
    finally:
        stop.set()
        await asyncio.gather(*slow, return_exceptions=True)
