"""Limits on what an HTTP client may hold or send before the app sees its request.

uvicorn's httptools protocol has no deadline for a request's headers and no bound on their
size or number: a silent connection stays open, headers trickled one byte at a time keep a
connection for as long as the client likes, and a 2 MB header or 20 000 headers are accepted.
`guarded_protocol()` returns the same protocol with three limits (the HTTP status in brackets):

    HOPLINE_HTTP_HEADER_TIMEOUT_S   a request's headers must be complete this long after its
                                    connection opened or its first byte arrived (408); an
                                    idle kept-alive connection is uvicorn's keep-alive's
    HOPLINE_HTTP_MAX_HEADER_BYTES   names and values of one request's headers together (431)
    HOPLINE_HTTP_MAX_HEADERS        headers in one request (431)

Keep-alive (`HOPLINE_HTTP_KEEP_ALIVE_S`) and connection count (`HOPLINE_HTTP_MAX_CONNECTIONS`,
503 beyond) are uvicorn's own options, set in `producer/__main__.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol"]


_LINGER_S = 1.0


class _Refused(Exception):
    """Stops the parser once a limit was hit (the answer is already written)."""


class _GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._refused = False
        self._header_bytes = 0
        self._headers_seen = 0
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.header_timeout_s, self._headers_too_slow
            )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        self._refuse(408, "Request Timeout", "the request's headers did not arrive in time")

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        body = detail.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason.encode(), len(body), body)
        )
        # Lingering close: end our side, drop what still arrives for a moment, then close.
        # Closing at once with unread input would reset the connection, and the client would
        # lose the answer that says what was wrong.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a limit answered already; the parser error is ours
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._headers_seen = 0
        self._arm_header_deadline()

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools may hand one header over in pieces: count bytes per call, headers per name.
        self._header_bytes += len(name) + len(value)
        if name:
            self._headers_seen += 1
        if self._header_bytes > self.max_header_bytes or self._headers_seen > self.max_headers:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"at most {self.max_headers} headers of {self.max_header_bytes} bytes together",
            )
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)


def guarded_protocol(
    *, header_timeout_s: float, max_header_bytes: int, max_headers: int
) -> type[Any]:
    """uvicorn's httptools protocol with the limits above (pass it as `http=`)."""
    return type(
        "GuardedHttpToolsProtocol",
        (_GuardedHttpToolsProtocol,),
        {
            "header_timeout_s": header_timeout_s,
            "max_header_bytes": max_header_bytes,
            "max_headers": max_headers,
        },
    )
