"""What a consumer did with a delivery, as lifecycle events (common.events).

Once the delivery is settled: `succeeded` (with the handler's result, bounded by
HOPLINE_MAX_RESULT_BYTES), `retry_scheduled` (attempt, delay, error) or `quarantined`
(reason). `started` is published once the handler has run for `started_after_s`
(HOPLINE_EVENTS_STARTED_AFTER_S, checked by one sweep, as consumer.deadlines does); a handler
done sooner has its start in the settling event's `started_at` instead. Two events per
message halved a no-op drain a second time over one (bench/README.md), and a start nobody
could have seen before the end is no less recorded: the status store turns `started_at`
back into the `started` row of the timeline.

A delivery left for redelivery (its channel closed) emits nothing: it runs again and speaks
then. Events go to the emitter's buffer; only the start of a handler may wait, for room in
that buffer, never an ack.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from common.emitter import EventEmitter
from common.envelope import original_routing_key
from common.events import Event, EventName, bounded_result
from common.headers import read_replay_count
from common.tasks import cancel_all
from consumer.delivery import Delivery
from consumer.policy import Ack, Decision, Outcome, Quarantine, Retry
from consumer.settler import Settled

__all__ = ["Lifecycle"]


@dataclass(slots=True)
class _Running:
    """A handler whose start is not announced yet."""

    delivery: Delivery
    message_type: str
    message_id: str
    attempt: int
    at: datetime
    announce_at: float  # time.monotonic()


class Lifecycle:
    def __init__(
        self,
        emitter: EventEmitter | None,
        service: str,
        max_result_bytes: int,
        started_after_s: float = 0.0,
    ) -> None:
        """`emitter=None`: events are off (HOPLINE_EVENTS_ENABLED=false)."""
        self.emitter = emitter
        self._service = service
        self._max_result_bytes = max_result_bytes
        self._started_after_s = started_after_s
        self._running: dict[int, _Running] = {}  # by id() of the delivery
        self._sweeper: asyncio.Task[None] | None = None

    async def started(
        self, delivery: Delivery, message_type: str, message_id: str, attempt: int
    ) -> None:
        """Before a handler runs; waits while the events already waiting are too many for
        the broker to keep up with (common.emitter: the consumer runs at their pace)."""
        if self.emitter is None:
            return
        await self.emitter.room()
        if not self._started_after_s:
            self._emit("started", delivery, message_type, message_id, attempt)
            return
        now = datetime.now(UTC)
        self._running[id(delivery)] = _Running(
            delivery,
            message_type,
            message_id,
            attempt,
            now,
            time.monotonic() + self._started_after_s,
        )
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._announce(), name="hopline-started")

    async def _announce(self) -> None:
        """Publish `started` for the handlers running longer than `started_after_s`."""
        period = min(self._started_after_s / 4, 0.25)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            due = [key for key, run in self._running.items() if run.announce_at <= now]
            for key in due:
                run = self._running.pop(key)
                self._emit(
                    "started",
                    run.delivery,
                    run.message_type,
                    run.message_id,
                    run.attempt,
                    at=run.at,
                )

    async def close(self) -> None:
        if self._sweeper is not None:
            await cancel_all([self._sweeper])
            self._sweeper = None

    def settled(
        self,
        delivery: Delivery,
        settled: Settled,
        decision: Decision,
        outcome: Outcome,
        message_type: str | None,
        message_id: str | None,
        attempt: int,
    ) -> None:
        running = self._running.pop(id(delivery), None)
        if self.emitter is None or message_id is None or settled is Settled.LEFT:
            return
        # A start not announced yet is carried by the event that ends the attempt.
        started_at = running.at if running is not None else None
        if settled is Settled.ACKED and isinstance(decision, Ack):
            result = bounded_result(outcome.result, self._max_result_bytes)
            self._emit(
                "succeeded",
                delivery,
                message_type,
                message_id,
                attempt,
                result=result,
                started_at=started_at,
            )
        elif settled is Settled.RETRIED and isinstance(decision, Retry):
            self._emit(
                "retry_scheduled",
                delivery,
                message_type,
                message_id,
                attempt,
                delay_s=decision.delay_s,
                error_type=outcome.error_type or None,
                error_message=outcome.error_message or None,
                started_at=started_at,
            )
        elif settled in (Settled.QUARANTINED, Settled.REJECTED):  # REJECTED: dead-lettered
            if settled is Settled.REJECTED:
                reason = "rejected: no quarantine copy was confirmed; the broker dead-letters it"
            elif isinstance(decision, Quarantine):
                reason = decision.reason
            else:
                reason = "retry_not_confirmed: the retry copy was refused; quarantined instead"
            self._emit(
                "quarantined",
                delivery,
                message_type,
                message_id,
                attempt,
                reason=reason,
                error_type=outcome.error_type or None,
                error_message=outcome.error_message or None,
                started_at=started_at,
            )

    def _emit(
        self,
        name: EventName,
        delivery: Delivery,
        message_type: str | None,
        message_id: str,
        attempt: int,
        at: datetime | None = None,
        **fields: object,
    ) -> None:
        assert self.emitter is not None
        event = Event(
            event=name,
            message_id=message_id,
            service=self._service,
            type=message_type,
            routing_key=original_routing_key(delivery),
            attempt=attempt,
            at=at or datetime.now(UTC),
            replay=read_replay_count(delivery.headers),
            **fields,  # type: ignore[arg-type]
        )
        self.emitter.emit(event, source=self._service)
