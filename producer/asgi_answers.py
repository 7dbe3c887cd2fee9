"""Answering from a pure ASGI middleware, before the app: a JSON error that closes the
connection (its body was not read, so the connection cannot be reused)."""

from __future__ import annotations

import orjson
from starlette.types import Send

__all__ = ["send_refusal"]


async def send_refusal(
    send: Send, status: int, detail: str, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra_headers,
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
