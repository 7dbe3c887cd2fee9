"""What a client may hold or send before the producer sees its request, on a real uvicorn
process (producer/http_limits.py): headers have a deadline, a size and a count; idle
connections close; connections beyond the limit get 503. Each test ends with the producer
still answering everyone else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from deploy.local.broker import free_port
from tests.support.processes import service_process, wait_http_ready

LIMITS = {
    "HOPLINE_HTTP_HEADER_TIMEOUT_S": "1",
    "HOPLINE_HTTP_KEEP_ALIVE_S": "1",
    "HOPLINE_HTTP_MAX_HEADER_BYTES": "8192",
    "HOPLINE_HTTP_MAX_HEADERS": "50",
    "HOPLINE_HTTP_MAX_CONNECTIONS": "3",
}


@pytest.fixture
async def producer(amqp_url: str, tmp_path: Path) -> AsyncIterator[int]:
    port = free_port()
    with service_process(
        "producer", amqp_url, tmp_path / "producer.log", HOPLINE_PORT=str(port), **LIMITS
    ):
        await wait_http_ready(port)
        yield port
        # Whatever the test did, everyone else is still served
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200


async def _answer(port: int, request: bytes, *, pace_s: float = 0) -> bytes:
    """Send `request` (one byte every `pace_s` if given, stopping once the server answers);
    all the server says until it closes (deadline 30 s: a server that never closes fails)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        if pace_s:
            for byte in request:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    answer = await asyncio.wait_for(reader.read(65536), timeout=pace_s)
                except TimeoutError:
                    continue
                break
        else:
            writer.write(request)
        while chunk := await asyncio.wait_for(reader.read(65536), timeout=30):
            answer += chunk
    except ConnectionResetError:
        pass  # the answer read so far is what counts
    finally:
        writer.close()
    return answer


async def test_a_silent_connection_is_closed_with_408(producer: int) -> None:
    answer = await _answer(producer, b"")
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_headers_trickled_byte_by_byte_are_cut_off_with_408(producer: int) -> None:
    # Given headers that would take 60 s at one byte per 0.2 s
    request = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 25
    answer = await _answer(producer, request, pace_s=0.2)
    # Then the server answered 408 and closed long before they were complete
    assert answer.startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(
    "headers",
    [b"X-Big: " + b"a" * 2_000_000 + b"\r\n", b"".join(b"X-%d: v\r\n" % n for n in range(20_000))],
    ids=["one 2 MB header", "20 000 headers"],
)
async def test_too_much_header_is_refused_with_431(producer: int, headers: bytes) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    answer = await _answer(producer, request)
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_an_idle_kept_alive_connection_is_closed(producer: int) -> None:
    # Given a connection that made one request and keeps quiet
    answer = await _answer(producer, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    # Then its response came, and then the server closed it (read() returned at EOF)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.count(b"HTTP/1.1") == 1


async def test_connections_beyond_the_limit_get_503(producer: int) -> None:
    # Given as many open connections as the limit, each in the middle of its headers
    held = [await asyncio.open_connection("127.0.0.1", producer) for _ in range(3)]
    try:
        for _reader, writer in held:
            writer.write(b"GET /healthz HTTP/1.1\r\n")
            await writer.drain()
        # When one more client asks, it is told to come back, not queued without limit
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{producer}") as client:
            response = await client.get("/healthz")
        assert response.status_code == 503
    finally:
        for _reader, writer in held:
            writer.close()
