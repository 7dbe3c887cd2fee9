"""What a version before the delay levels left in the broker: a retry tier and its exchange,
declared exactly as it declared them (quorum, at-least-once, into `hopline.requeue`)."""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, AbstractExchange

from common.names import Names

__all__ = ["declare_legacy_tier"]


async def declare_legacy_tier(
    channel: AbstractChannel, names: Names, delay_s: float
) -> tuple[AbstractExchange, str]:
    """(the old `hopline.retry` exchange, the tier's routing key = its queue name)."""
    tier = names.legacy_retry_queue(delay_s)
    exchange = await channel.declare_exchange(names.legacy_retry, "direct", durable=True)
    queue = await channel.declare_queue(
        tier,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": round(delay_s * 1000),
            "x-dead-letter-exchange": names.requeue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    await queue.bind(exchange, tier)
    return exchange, tier
