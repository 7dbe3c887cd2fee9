"""The retry tiers of versions before the delay levels: found, drained, retired.

Before the binary delay levels, a retry waited in one of a few fixed TTL queues
(`hopline.retry.1s` … `hopline.retry.10m`, bound to the direct exchange `hopline.retry`),
each dead-lettering into `hopline.requeue` when its TTL expired. An upgrade loses nothing
there by construction: the tiers keep their arguments, so whatever waits in them still
expires into `hopline.requeue` and reaches its work queue, which the new version consumes
as before. What is left is to say so at start, and to delete the tiers once they are empty
and no consumer of an older version publishes to them any more: an operator's step
(`hopline topology retire-tiers`), because only they know when a rolling upgrade is over.
"""

from __future__ import annotations

from dataclasses import dataclass

from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed

from common.settings import HoplineSettings

__all__ = ["LegacyTier", "find_legacy_tiers", "retire_legacy_tiers"]

# The tiers every earlier version declared unless HOPLINE_RETRY_DELAYS_S said otherwise;
# that setting's delays are looked for too (it named the tiers then).
_EARLIER_DEFAULT_DELAYS_S = (1.0, 5.0, 30.0, 120.0, 600.0)


@dataclass(frozen=True, slots=True)
class LegacyTier:
    queue: str
    messages: int


def _candidate_names(settings: HoplineSettings) -> list[str]:
    names = settings.names
    delays = dict.fromkeys((*_EARLIER_DEFAULT_DELAYS_S, *settings.retry_delays_s))
    return [names.legacy_retry_queue(delay_s) for delay_s in delays if delay_s > 0]


async def find_legacy_tiers(
    connection: AbstractConnection, settings: HoplineSettings
) -> list[LegacyTier]:
    """The old tier queues that still exist, with the messages they hold."""
    found = []
    for name in _candidate_names(settings):
        # A passive declare of a missing queue closes its channel: one channel per look.
        async with connection.channel(publisher_confirms=False) as channel:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except ChannelNotFoundEntity:
                continue
            found.append(LegacyTier(name, queue.declaration_result.message_count or 0))
    return found


async def retire_legacy_tiers(
    connection: AbstractConnection, settings: HoplineSettings
) -> tuple[list[str], list[LegacyTier]]:
    """Delete the old tiers that are empty, then the old exchange if nothing is bound to it;
    returns (deleted, tiers still holding messages).

    Quorum queues refuse `if-empty` deletes, so emptiness is checked in three steps that no
    publish can slip between: empty -> unbind from the old exchange (nothing can enter any
    more) -> still empty -> delete. A tier that got a message meanwhile is bound again.
    """
    exchange = settings.names.legacy_retry
    deleted: list[str] = []
    kept: list[LegacyTier] = []
    for tier in await find_legacy_tiers(connection, settings):
        if tier.messages:
            kept.append(tier)
            continue
        async with connection.channel(publisher_confirms=False) as channel:
            queue = await channel.get_queue(tier.queue, ensure=False)
            await queue.unbind(exchange, tier.queue)
            now = await channel.declare_queue(tier.queue, passive=True)
            if now.declaration_result.message_count:
                await queue.bind(exchange, tier.queue)
                kept.append(LegacyTier(tier.queue, now.declaration_result.message_count))
                continue
            await channel.queue_delete(tier.queue)
            deleted.append(tier.queue)
    if not kept and await _exchange_exists(connection, exchange):
        async with connection.channel(publisher_confirms=False) as channel:
            try:
                await channel.exchange_delete(exchange, if_unused=True)
                deleted.append(exchange)
            except ChannelPreconditionFailed:
                pass  # still bound: a consumer of an older version declared a tier again
    return deleted, kept


async def _exchange_exists(connection: AbstractConnection, name: str) -> bool:
    async with connection.channel(publisher_confirms=False) as channel:
        try:
            await channel.declare_exchange(name, passive=True)
        except ChannelNotFoundEntity:
            return False
    return True
