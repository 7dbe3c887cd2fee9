"""In-memory stand-ins that implement the real interfaces (checked by the contract tests)."""

from __future__ import annotations

import aio_pika

from common.errors import BrokerUnavailableError, PublishNotConfirmedError

__all__ = ["FakePublisher"]


class FakePublisher:
    """A `producer.publisher.Publisher` that keeps what it is given."""

    def __init__(self) -> None:
        self.published: list[tuple[str, aio_pika.Message]] = []
        self.delays: dict[str, float | None] = {}  # by message id: what publish was asked
        self.available = True
        self.confirming = True
        self.started = False

    @property
    def ready(self) -> bool:
        return self.started and self.available

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def publish(
        self, message: aio_pika.Message, routing_key: str, delay_s: float | None = None
    ) -> None:
        if not self.ready:
            raise BrokerUnavailableError("RabbitMQ is not reachable right now")
        if not self.confirming:
            raise PublishNotConfirmedError("the broker did not confirm the publish within 1 s")
        self.published.append((routing_key, message))
        self.delays[message.message_id or ""] = delay_s
