"""producer.limits.BodySizeLimit: oversized bodies are refused before anything parses them."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from producer.limits import BodySizeLimit

LIMIT = 64


def client(limit: int = LIMIT) -> httpx.AsyncClient:
    """A FastAPI app wrapped as the producer wraps its own (`app.add_middleware`)."""
    app = FastAPI()

    @app.post("/")
    async def echo_size(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    app.add_middleware(BodySizeLimit, max_bytes=limit)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
async def test_a_body_within_the_limit_passes_through(size: int) -> None:
    async with client() as http:
        response = await http.post("/", content=b"x" * size)

    assert response.status_code == 200
    assert response.json() == {"received": size}


@pytest.mark.parametrize("size", [LIMIT + 1, 10 * LIMIT])
async def test_a_declared_length_over_the_limit_is_refused_with_413(size: int) -> None:
    async with client() as http:
        response = await http.post("/", content=b"x" * size)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "detail": f"request body is larger than {LIMIT} bytes (HOPLINE_MAX_REQUEST_BYTES)"
    }


async def test_a_lying_content_length_is_refused_before_the_body_is_read() -> None:
    # Given a client that announces more than it sends
    reached: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    limited = BodySizeLimit(app, max_bytes=LIMIT)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", str(LIMIT + 1).encode())]}

    # When it arrives
    await limited(scope, receive, send)

    # Then the app never sees it and the answer is 413
    assert reached == []
    assert sent[0]["status"] == 413


async def test_a_chunked_body_is_counted_as_it_arrives() -> None:
    # Given a body without Content-Length that grows past the limit
    async with client() as http:
        response = await http.post("/", content=chunks(b"x" * 40, b"x" * 40))

    # Then it is refused once the bytes received pass the limit
    assert response.status_code == 413
    assert str(LIMIT) in response.json()["detail"]


async def test_a_chunked_body_within_the_limit_passes_through() -> None:
    async with client() as http:
        response = await http.post("/", content=chunks(b"x" * 30, b"x" * 30))

    assert response.status_code == 200
    assert response.json() == {"received": 60}


async def test_other_scopes_pass_straight_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def never(*_: Any) -> Any:
        raise AssertionError("the middleware must not touch a non-http scope")

    await BodySizeLimit(app, max_bytes=1)({"type": "lifespan"}, never, never)

    assert seen == ["lifespan"]
