"""Several broker URLs for one connection: the nodes of a RabbitMQ cluster.

`HOPLINE_AMQP_URL` may list several URLs separated by commas. A connection opens to the
first node that answers, and when it is lost, each reconnect attempt that fails moves on to
the next URL, round the list, so clients of a stopped node fail over to the others. Options
in the query string (`heartbeat`, `reconnect_interval`, ...) come from the URL that answered
first and apply to all: give every URL the same ones.

aio-pika's robust connection reconnects to the one URL it was given; `FailoverConnection`
changes only which URL each of its attempts uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from yarl import URL

from common.amqp_url import split_urls

__all__ = ["FailoverConnection", "split_urls"]


class FailoverConnection(RobustConnection):
    """A robust connection that tries the next URL after a failed (re)connect attempt."""

    def __init__(self, url: URL, *, alternates: Sequence[URL] = (), **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        query = url.query
        self._urls = [url, *(alternate.with_query(query) for alternate in alternates)]
        self._current = 0

    async def _RobustConnection__connect_transport(self) -> None:
        """aio-pika's single connect attempt (on start and on every reconnect)."""
        self.url = self._urls[self._current]
        try:
            await super()._RobustConnection__connect_transport()  # type: ignore[misc]
        except BaseException:
            self._current = (self._current + 1) % len(self._urls)
            raise
