"""A consumer on one queue, registered below aio-pika's message objects, that stays alive.

aio-pika restores the consumers it registered itself when a robust channel reopens. Ours are
registered on the underlying aiormq channel (see `consumer.delivery` for why), so this class
does that part itself: it consumes again after the channel reopened (`reopen_callbacks`, run
after aio-pika re-declared the channel's queues), and when the broker cancels the consumer
(the queue was deleted, for instance) it asks `on_cancelled` to repair the topology and then
consumes again, retrying with a growing pause until it succeeds or is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import AbstractChannel as AiormqChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from common.logging import get_logger

__all__ = ["Subscription"]

_log = get_logger("hopline.consumer")

_RECOVERY_PAUSES_S = (0.5, 1.0, 2.0, 5.0)


class Subscription:
    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: str,
        on_message: Callable[[DeliveredMessage], Coroutine[Any, Any, None]],
        on_cancelled: Callable[[], Awaitable[None]],
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._on_message = on_message
        self._on_cancelled = on_cancelled
        self._wanted = False
        self._tag: str | None = None
        self._underlay: AiormqChannel | None = None
        self._recovery: asyncio.Task[None] | None = None
        channel.reopen_callbacks.add(self._on_reopen)

    @property
    def queue(self) -> str:
        return self._queue

    @property
    def consuming(self) -> bool:
        """The broker has a consumer of ours on the queue now."""
        return self._tag is not None

    async def start(self, prefetch: int | None = None) -> None:
        """Consume the queue (again), with `prefetch` unacked deliveries if given."""
        if prefetch is not None:
            await self._channel.set_qos(prefetch_count=prefetch)
        self._wanted = True
        await self._consume()

    async def stop(self) -> None:
        """Stop deliveries; those already sent are still handled (or redelivered)."""
        self._wanted = False
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
            self._recovery = None
        tag, underlay, self._tag = self._tag, self._underlay, None
        if tag is None or underlay is None or underlay.is_closed:
            return
        try:
            await underlay.basic_cancel(tag)
        except Exception as exc:  # a closed channel has no consumer left to cancel
            _log.debug("consumer.cancel_failed", queue=self._queue, error=str(exc))

    async def _consume(self) -> None:
        underlay = await self._channel.get_underlay_channel()
        if underlay is not self._underlay:
            underlay.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
            self._underlay = underlay
        result = await underlay.basic_consume(self._queue, self._on_message, no_ack=False)
        self._tag = result.consumer_tag

    async def _on_reopen(self, *_args: object) -> None:
        self._tag = None  # the old tag died with the old channel
        if self._wanted:
            await self._consume()

    def _on_broker_cancel(self, frame: Basic.Cancel) -> None:
        if frame.consumer_tag != self._tag or not self._wanted:
            return
        self._tag = None
        _log.warning(
            "consumer.cancelled_by_broker",
            queue=self._queue,
            action="declaring the topology again and consuming again",
        )
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="hopline-resubscribe")

    async def _recover(self) -> None:
        for attempt in itertools.count(1):
            pause_s = _RECOVERY_PAUSES_S[min(attempt, len(_RECOVERY_PAUSES_S)) - 1]
            try:
                await self._on_cancelled()
                if not self._wanted or self._tag is not None:
                    return
                await self._consume()
            except Exception as exc:
                _log.warning(
                    "consumer.resubscribe_failed",
                    queue=self._queue,
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=pause_s,
                )
                await asyncio.sleep(pause_s)
                continue
            _log.warning("consumer.resubscribed", queue=self._queue)
            return
