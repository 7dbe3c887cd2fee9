"""A minimal HTTP/1.1 keep-alive client for load generation.

httpx spends more CPU per request than the producer does to answer it, and on a 2-core
machine the load generator's CPU is taken from the server: the figure would measure the
client. This client does only what the benchmark needs: POST a JSON body on a kept-alive
connection and read the status and the Content-Length body of the answer.
"""

from __future__ import annotations

import asyncio

__all__ = ["HttpConnection"]


class HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, header: str = "") -> tuple[int, bytes]:
        """`header`: extra header lines, each ending in CRLF (e.g. an Idempotency-Key)."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"{header}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._writer.write(head + body)
        return await self._answer()

    async def get(self, path: str) -> tuple[int, bytes]:
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        return await self._answer()

    async def _answer(self) -> tuple[int, bytes]:
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()
