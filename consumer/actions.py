"""Carry out a decision on a delivery: ack, or confirm a copy somewhere else and then ack.

If the copy cannot be confirmed, the delivery is rejected without requeue, one message at a
time (`basic.reject`), and the broker dead-letters it to quarantine itself: a message is
never acked before it is safe elsewhere, and never requeued to spin.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from common.copies import failure_copy, retry_copy
from common.logging import get_logger
from common.names import Names
from consumer.policy import Outcome, Quarantine, Retry

__all__ = ["DeliveryContext", "Settler"]

_log = get_logger("hopline.consumer")


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What we know of a delivery before its handler runs."""

    origin_queue: str
    original_routing_key: str
    attempt: int
    message_type: str | None
    message_id: str | None


class Settler:
    """Publishes retry and quarantine copies with confirms on its own channel."""

    def __init__(
        self,
        channel: AbstractChannel,
        names: Names,
        *,
        service: str,
        consumer_name: str,
        publish_timeout_s: float,
    ) -> None:
        self._channel = channel
        self._names = names
        self._service = service
        self._consumer_name = consumer_name
        self._timeout_s = publish_timeout_s
        self._retry: AbstractExchange | None = None
        self._dlx: AbstractExchange | None = None

    async def open(self) -> None:
        self._retry = await self._channel.get_exchange(self._names.retry, ensure=False)
        self._dlx = await self._channel.get_exchange(self._names.dlx, ensure=False)

    async def ack(self, incoming: AbstractIncomingMessage) -> bool:
        return await _settle(incoming.ack(), incoming)

    async def retry(
        self,
        incoming: AbstractIncomingMessage,
        decision: Retry,
        context: DeliveryContext,
        outcome: Outcome,
    ) -> bool:
        assert self._retry is not None, "Settler.open() was not awaited"
        copy = retry_copy(
            incoming,
            origin_queue=context.origin_queue,
            original_routing_key=context.original_routing_key,
            next_attempt=decision.next_attempt,
            message_type=context.message_type,
            message_id=context.message_id,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
        )
        tier = self._names.retry_queue(decision.delay_s)
        return await self._forward(incoming, self._retry, copy, tier)

    async def quarantine(
        self,
        incoming: AbstractIncomingMessage,
        decision: Quarantine,
        context: DeliveryContext,
        outcome: Outcome,
    ) -> bool:
        assert self._dlx is not None, "Settler.open() was not awaited"
        copy = failure_copy(
            incoming,
            origin_queue=context.origin_queue,
            original_routing_key=context.original_routing_key,
            attempt=context.attempt,
            message_type=context.message_type,
            message_id=context.message_id,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
            traceback=outcome.traceback,
            reason=decision.reason,
            consumer=self._consumer_name,
        )
        return await self._forward(incoming, self._dlx, copy, self._service)

    async def _forward(
        self,
        incoming: AbstractIncomingMessage,
        exchange: AbstractExchange,
        copy: aio_pika.Message,
        routing_key: str,
    ) -> bool:
        """Confirm the copy, then ack; if the copy fails, reject so the broker quarantines."""
        try:
            await exchange.publish(copy, routing_key, mandatory=True, timeout=self._timeout_s)
        except Exception as exc:  # any failure means "not confirmed"; the broker takes over
            _log.warning(
                "copy.not_confirmed",
                exchange=exchange.name,
                routing_key=routing_key,
                error=f"{type(exc).__name__}: {exc}",
                fallback="reject to the dead-letter exchange",
            )
            await _settle(incoming.reject(requeue=False), incoming)
            return False
        return await _settle(incoming.ack(), incoming)


async def _settle(action: object, incoming: AbstractIncomingMessage) -> bool:
    """Await an ack/reject; a lost channel only means the broker will redeliver."""
    try:
        await action  # type: ignore[misc]
    except Exception as exc:
        _log.warning(
            "settle.failed",
            delivery_tag=incoming.delivery_tag,
            error=f"{type(exc).__name__}: {exc}",
            consequence="the broker redelivers the message",
        )
        return False
    return True
