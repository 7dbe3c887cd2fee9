"""Carry out a decision on a delivery: ack, or confirm a copy somewhere else and then ack.

A retry or quarantine copy is published with a confirm on the settler's own channel, and
only then is the delivery acked (through the `AckBatcher`). When the copy is not confirmed,
what happens depends on why, because a fault must not change a message's outcome:

    the copy channel is closed (broker restart, lost connection)
        -> wait until it is open again and publish again, for as long as the delivery's own
           channel is open; once that one is gone the broker redelivers the message with its
           attempt count intact (`Settled.LEFT`). Nothing moves towards quarantine.
    the broker refused the copy (nack, unroutable return) or did not confirm it in time
        -> a refused retry copy becomes a quarantine copy that says so (`QUARANTINED`);
           if a quarantine copy fails too, `basic.reject(requeue=False)`, one message at a
           time, and the broker dead-letters it to quarantine itself (`REJECTED`; the reason
           is then read from the broker's `x-death`, see common.quarantine.failed).

No delivery is handled while the copy channel is closed either (`wait_until_publishable`):
a handler's outcome could not be settled, and its work would be done twice.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractExchange
from aio_pika.exceptions import DeliveryError

from common.copies import DeliveryContext, failure_copy, held_copy, retry_copy
from common.delays import REQUEUE_TARGET, delay_exchanges, delay_route
from common.logging import get_logger
from common.names import Names
from common.teardown import connection_torn_down_as
from consumer.acks import AckBatcher
from consumer.delivery import Delivery
from consumer.policy import Outcome, OutcomeKind, Quarantine, Retry

__all__ = ["Settled", "Settler"]

_log = get_logger("hopline.consumer")

# How often a delivery waiting for the copy channel looks again (only during an outage).
_CHANNEL_POLL_S = 0.05
# A copy interrupted by a closing channel this many times in a row is treated as refused:
# a channel the broker closes on every publish (a deleted exchange) is not an outage.
_MAX_INTERRUPTIONS = 3


class Settled(enum.StrEnum):
    """How a delivery was settled; the value is the `outcome` of its log line."""

    ACKED = "ack"
    RETRIED = "retry"
    QUARANTINED = "quarantine"
    HELD = "held"  # a foreign publisher's deliver-at is ahead: waits in the delay levels
    DEFERRED = "deferred"  # its handler was at its limit: back to the tail of its queue
    LEFT = "left_for_redelivery"  # its channel closed first: the broker redelivers it
    REJECTED = "rejected"  # no copy confirmed: the broker dead-letters it to quarantine


class _Refused(Exception):
    """The broker refused a copy or did not confirm it in time (the channel stayed open)."""


class _ChannelGone(Exception):
    """The delivery's channel closed before its copy was confirmed."""


class Settler:
    """Publishes retry and quarantine copies with confirms on its own channel; acks through
    the `AckBatcher`."""

    def __init__(
        self,
        channel: AbstractChannel,
        names: Names,
        *,
        service: str,
        consumer_name: str,
        publish_timeout_s: float,
        acks: AckBatcher,
        on_confirmed: Callable[[str, float], None] | None = None,
    ) -> None:
        """`on_confirmed(kind, seconds)` learns how long each confirmed copy took (metrics)."""
        self._acks = acks
        self._on_confirmed = on_confirmed
        self._channel = channel
        self._names = names
        self._service = service
        self._consumer_name = consumer_name
        self._timeout_s = publish_timeout_s
        self._delays: dict[str, AbstractExchange] = {}
        self._dlx: AbstractExchange | None = None
        self._requeue: AbstractExchange | None = None
        self._outage_logged = False

    async def open(self) -> None:
        self._delays = {
            name: await self._channel.get_exchange(name, ensure=False)
            for name in delay_exchanges(self._names)
        }
        self._dlx = await self._channel.get_exchange(self._names.dlx, ensure=False)
        self._requeue = await self._channel.get_exchange(self._names.requeue, ensure=False)

    async def wait_until_publishable(self, delivery_channel: aiormq.abc.AbstractChannel) -> bool:
        """True once the copy channel is open; False if the delivery's channel closed first
        (the broker then redelivers the delivery, so it must not be handled here)."""
        while self._channel.is_closed:
            if delivery_channel.is_closed:
                return False
            if not self._outage_logged:
                self._outage_logged = True
                _log.warning(
                    "settle.channel_closed",
                    consequence="deliveries wait until the channel for retry and quarantine "
                    "copies is open again",
                )
            await asyncio.sleep(_CHANNEL_POLL_S)
        if self._outage_logged:
            self._outage_logged = False
            _log.info("settle.channel_open")
        return not delivery_channel.is_closed

    def ack(self, delivery: Delivery) -> Settled:
        """Mark for ack (sent within this event-loop turn); LEFT if the channel is gone."""
        if self._acks.mark(delivery.channel, delivery.delivery_tag):
            return Settled.ACKED
        _log.warning(
            "settle.failed",
            delivery_tag=delivery.delivery_tag,
            error="the delivery's channel is closed",
            consequence="the broker redelivers the message",
        )
        return Settled.LEFT

    def _acked_as(self, delivery: Delivery, settled: Settled) -> Settled:
        """`settled` once the copy is safe and the delivery marked for ack (LEFT if its
        channel is gone)."""
        return settled if self.ack(delivery) is Settled.ACKED else Settled.LEFT

    async def retry(
        self,
        delivery: Delivery,
        decision: Retry,
        context: DeliveryContext,
        outcome: Outcome,
    ) -> Settled:
        copy = retry_copy(
            delivery,
            context,
            next_attempt=decision.next_attempt,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
        )
        refusal = (
            f"retry_not_confirmed: the copy for a {decision.delay_s:g} s delay in "
            f"{self._names.delay} was not confirmed ({{}}); replay it once the delay levels "
            "take messages again"
        )
        return await self._delayed(
            delivery, copy, decision.delay_s, Settled.RETRIED, context, outcome, refusal
        )

    async def hold(self, delivery: Delivery, delay_s: float, context: DeliveryContext) -> Settled:
        """Into the delay levels until it is due, then back to its queue, attempt unchanged."""
        copy = held_copy(delivery, context)
        refusal = (
            f"hold_not_confirmed: the copy that waits {delay_s:.0f} s for its deliver-at was "
            "not confirmed ({}); replay it when it is due"
        )
        outcome = Outcome(OutcomeKind.RETRYABLE, "HoldNotConfirmed", refusal.format("refused"))
        return await self._delayed(delivery, copy, delay_s, Settled.HELD, context, outcome, refusal)

    async def _delayed(
        self,
        delivery: Delivery,
        copy: aio_pika.Message,
        delay_s: float,
        settled: Settled,
        context: DeliveryContext,
        outcome: Outcome,
        refusal: str,
    ) -> Settled:
        """Publish `copy` into the delay levels, back to its queue when due, then ack; a
        refused copy is quarantined with `refusal` (its `{}` the broker's answer) rather than
        left to the broker's bare "rejected"."""
        assert self._delays, "Settler.open() was not awaited"
        exchange, key = delay_route(self._names, delay_s, REQUEUE_TARGET)
        try:
            await self._publish(delivery, self._delays[exchange], copy, key, settled.value)
        except _ChannelGone:
            return Settled.LEFT
        except _Refused as refused:
            instead = Quarantine(refusal.format(refused))
            return await self.quarantine(delivery, instead, context, outcome)
        return self._acked_as(delivery, settled)

    async def quarantine(
        self,
        delivery: Delivery,
        decision: Quarantine,
        context: DeliveryContext,
        outcome: Outcome,
    ) -> Settled:
        assert self._dlx is not None, "Settler.open() was not awaited"
        copy = failure_copy(
            delivery,
            context,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
            traceback=outcome.traceback,
            reason=decision.reason,
            consumer=self._consumer_name,
        )
        try:
            await self._publish(delivery, self._dlx, copy, self._service, "quarantine")
        except _ChannelGone:
            return Settled.LEFT
        except _Refused:
            if await _reject(delivery):
                self._acks.settled(delivery.channel, delivery.delivery_tag)
                return Settled.REJECTED
            return Settled.LEFT
        return self._acked_as(delivery, Settled.QUARANTINED)

    async def defer(
        self, delivery: Delivery, context: DeliveryContext, delay_s: float
    ) -> Settled | None:
        """Back to its own queue with its attempt unchanged (its handler is at its limit,
        consumer.limits): after `delay_s` in the delay levels, or at once to the tail of
        the queue when it is 0; then ack. None if the broker refused the copy."""
        assert self._requeue is not None and self._delays, "Settler.open() was not awaited"
        copy = held_copy(delivery, context)
        try:
            if delay_s > 0:
                exchange, key = delay_route(self._names, delay_s, REQUEUE_TARGET)
                await self._publish(delivery, self._delays[exchange], copy, key, "defer")
            else:
                await self._publish(delivery, self._requeue, copy, "", "defer")
        except _ChannelGone:
            return Settled.LEFT
        except _Refused:
            return None
        return self._acked_as(delivery, Settled.DEFERRED)

    async def _publish(
        self,
        delivery: Delivery,
        exchange: AbstractExchange,
        copy: aio_pika.Message,
        routing_key: str,
        kind: str,
    ) -> None:
        """Publish until confirmed; `_Refused` if the broker says no, `_ChannelGone` if the
        delivery's channel closed first."""
        for interruption in range(1, _MAX_INTERRUPTIONS + 1):
            if not await self.wait_until_publishable(delivery.channel):
                raise _ChannelGone
            try:
                started = time.monotonic()
                with connection_torn_down_as():  # the channel's connection died meanwhile
                    await exchange.publish(
                        copy, routing_key, mandatory=True, timeout=self._timeout_s
                    )
                if self._on_confirmed is not None:
                    self._on_confirmed(kind, time.monotonic() - started)
                return
            except DeliveryError as exc:  # nack, or returned as unroutable
                self._log_refused(exchange, routing_key, exc, kind)
                raise _Refused(_describe(exc)) from exc
            except Exception as exc:
                if not self._channel.is_closed or interruption == _MAX_INTERRUPTIONS:
                    # An open channel that did not confirm in time: the broker's answer.
                    self._log_refused(exchange, routing_key, exc, kind)
                    raise _Refused(_describe(exc)) from exc
                _log.warning(
                    "copy.interrupted",
                    exchange=exchange.name,
                    routing_key=routing_key,
                    error=_describe(exc),
                    action="publishing again once the channel is open",
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _log_refused(
        self, exchange: AbstractExchange, routing_key: str, exc: Exception, kind: str
    ) -> None:
        _log.warning(
            "copy.not_confirmed",
            exchange=exchange.name,
            routing_key=routing_key,
            error=_describe(exc),
            fallback=_FALLBACK_OF_KIND.get(kind, "a quarantine copy"),
        )


# What happens to a delivery whose copy of this kind the broker refused (else: quarantine).
_FALLBACK_OF_KIND = {
    "quarantine": "reject to the dead-letter exchange",
    "defer": "run it here once its handler has room",
}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no confirm in time"
    return f"{type(exc).__name__}: {exc}"


async def _reject(delivery: Delivery) -> bool:
    """Reject without requeue (the broker dead-letters it); a lost channel only means the
    broker will redeliver."""
    try:
        await delivery.channel.basic_reject(delivery.delivery_tag, requeue=False)
    except Exception as exc:
        _log.warning(
            "settle.failed",
            delivery_tag=delivery.delivery_tag,
            error=f"{type(exc).__name__}: {exc}",
            consequence="the broker redelivers the message",
        )
        return False
    return True
