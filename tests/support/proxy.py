"""A TCP proxy between services and the broker that can cut, stall and half-open connections.

    async with TcpProxy("127.0.0.1", 5672) as proxy:   # services connect to proxy.port
        proxy.reset()        # abort every connection now (both sides see it at once)
        proxy.stall()        # stop moving bytes, connections stay open; new ones wait too
        proxy.resume()
        proxy.half_open()    # the broker's side is closed, the client's side is left open
                             # and silent: only heartbeats can tell the client

aio-pika's own test suite puts a proxy like this between client and broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field

__all__ = ["TcpProxy"]

_CHUNK = 64 * 1024


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    blackholed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.connections_seen = 0

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        self.reset()
        for writer in list(self._clients):  # half-open ones, and any still waiting to connect
            _abort(writer)
        self._clients.clear()
        if self._server is not None:
            await self._server.wait_closed()

    def url(self, amqp_url: str) -> str:
        """`amqp_url` with its host and port replaced by the proxy's."""
        scheme, rest = amqp_url.split("://", 1)
        credentials, _, location = rest.rpartition("@")
        path = location.partition("/")[2]
        prefix = f"{credentials}@" if credentials else ""
        return f"{scheme}://{prefix}127.0.0.1:{self.port}/{path}"

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def reset(self) -> None:
        """Abort every open connection, with a TCP reset on both sides."""
        for pair in list(self._pairs):
            for writer in (pair.client, pair.upstream):
                _abort(writer)
        self._pairs.clear()

    def half_open(self) -> None:
        """Close the broker's side of every connection; leave the client's open and silent."""
        for pair in list(self._pairs):
            pair.blackholed = True
            _abort(pair.upstream)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_seen += 1
        self._clients.add(writer)
        try:
            await self._connect(reader, writer)
        finally:
            self._clients.discard(writer)
            _close(writer)  # both directions are done (a half-open client has hung up too)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()  # a stalled network does not connect anyone either
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _abort(writer)
            return
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, pair, to_client=False),
                self._pipe(up_reader, writer, pair, to_client=True),
            )
        finally:
            self._pairs.discard(pair)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: _Pair,
        *,
        to_client: bool,
    ) -> None:
        try:
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                if pair.blackholed:
                    continue  # swallowed: the other side is gone and nobody says so
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        if pair.blackholed and to_client:
            return  # half-open: the client's side stays open
        _close(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
