"""Test a service's handlers without RabbitMQ: the consumer's own path, in memory.

`Harness(registry)` runs what a consumer runs for a delivery (decoding, foreign bare-JSON
bodies included; model validation; the registry's middleware; the handler within its time
limit; the retry policy) and returns the decision instead of publishing it:

    harness = Harness(registry)
    result = await harness.send("orders.created", {"order_id": "A-1", "amount_cents": 5})
    assert result.acked
    result = await harness.send("payments.charge", {}, attempt=1)
    assert result.retry == Retry(delay_s=1.0, next_attempt=2)

Nothing here talks to a broker: the broker's part (copies, confirms, the delay in a retry
tier) is tested for real in the project's integration tests and by `consumer.pytest_plugin`.
Concurrency and rate limits are a consumer's scheduling, not a delivery's path: a harness
ignores them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.envelope import JSON_CONTENT_TYPE, decode_delivery, encode_payload
from common.errors import UndecodableMessageError
from common.headers import ATTEMPT, read_attempt
from common.names import routing_key
from common.settings import HoplineSettings
from consumer.deadlines import Deadlines
from consumer.dispatch import run_handler, undecodable, unknown_type
from consumer.policy import (
    DEFAULT_MAX_ATTEMPTS,
    Ack,
    Decision,
    Delays,
    Outcome,
    Quarantine,
    Retry,
    RetryPolicy,
    decide,
)
from consumer.registry import Registry

__all__ = ["Ack", "Harness", "Quarantine", "Result", "Retry"]


@dataclass(frozen=True, slots=True)
class Result:
    """How a delivery ended: the `decision` (what a consumer would do) and the handler's
    `outcome` (its kind, error type, message and traceback)."""

    decision: Decision
    outcome: Outcome

    @property
    def acked(self) -> bool:
        return isinstance(self.decision, Ack)

    @property
    def retry(self) -> Retry | None:
        """The retry (its delay and the next attempt's number), or None."""
        return self.decision if isinstance(self.decision, Retry) else None

    @property
    def quarantine(self) -> Quarantine | None:
        """The quarantine (with the reason an operator reads), or None."""
        return self.decision if isinstance(self.decision, Quarantine) else None


@dataclass(frozen=True, slots=True)
class _Incoming:
    """A delivery as `decode_delivery` reads it (the fields of aio-pika's IncomingMessage)."""

    body: bytes
    routing_key: str | None
    type: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    timestamp: datetime | None = None
    app_id: str | None = None


class Harness:
    """A registry's consumer path in memory. `settings` give the priorities and the default
    retry delays (by default hopline's defaults, whatever the environment says)."""

    def __init__(self, registry: Registry, settings: HoplineSettings | None = None) -> None:
        self.registry = registry
        self._settings = settings or HoplineSettings.model_construct()
        self._priorities = self._settings.priority_order
        self._default_schedule = Delays(tuple(self._settings.retry_delays_s))
        self._default_policy = RetryPolicy(DEFAULT_MAX_ATTEMPTS, self._default_schedule)

    async def send(
        self,
        message_type: str,
        payload: Any,
        *,
        priority: str = "normal",
        attempt: int = 1,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Result:
        """Deliver a message as the producer or `hopline publish` would send it, on its
        `attempt` (1 = the first run; the retry's number after that)."""
        return await self.send_raw(
            encode_payload(payload),
            routing_key=routing_key(priority, message_type),
            message_type=message_type,
            content_type=JSON_CONTENT_TYPE,
            headers={**(headers or {}), ATTEMPT: attempt},
            message_id=message_id or str(uuid.uuid4()),
            correlation_id=correlation_id,
        )

    async def send_raw(
        self,
        body: bytes,
        *,
        routing_key: str,
        message_type: str | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Result:
        """Deliver bytes as any AMQP client may publish them (a foreign publisher's bare JSON
        body with only a routing key, say); the queue's priority is the key's first word."""
        incoming = _Incoming(
            body=body,
            routing_key=routing_key,
            type=message_type,
            content_type=content_type,
            content_encoding=content_encoding,
            headers=dict(headers or {}),
            message_id=message_id,
            correlation_id=correlation_id,
            timestamp=datetime.now(UTC),
        )
        return await self._deliver(incoming, routing_key.partition(".")[0])

    async def _deliver(self, incoming: _Incoming, priority: str) -> Result:
        attempt = read_attempt(incoming.headers)
        try:
            envelope = decode_delivery(
                incoming, priority=priority, priorities=self._priorities, attempt=attempt
            )
        except UndecodableMessageError as exc:
            outcome = undecodable(exc.reason)
            return Result(decide(outcome, attempt, self._default_policy), outcome)
        spec = self.registry.find(envelope.message_type)
        if spec is None:
            outcome = unknown_type(self.registry.service, envelope.message_type)
            return Result(decide(outcome, attempt, self._default_policy), outcome)
        deadlines = Deadlines()
        try:
            outcome = await run_handler(spec, envelope, deadlines, self.registry.hooks)
        finally:
            await deadlines.close()
        policy = RetryPolicy(spec.max_attempts, spec.retry or self._default_schedule)
        return Result(decide(outcome, attempt, policy), outcome)
