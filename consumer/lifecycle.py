"""What a consumer did with a delivery, as lifecycle events (common.events).

`started` when a handler is about to run; once the delivery is settled, `succeeded` (with the
handler's result, bounded by HOPLINE_MAX_RESULT_BYTES), `retry_scheduled` (attempt, delay,
error) or `quarantined` (reason). A delivery left for redelivery (its channel closed) emits
nothing: it runs again and speaks then. Events go to the emitter's buffer; only `started`
may wait, for room in that buffer, never an ack.
"""

from __future__ import annotations

from datetime import UTC, datetime

from common.emitter import EventEmitter
from common.envelope import original_routing_key
from common.events import Event, EventName, bounded_result
from common.headers import read_replay_count
from consumer.delivery import Delivery
from consumer.policy import Ack, Decision, Outcome, Quarantine, Retry
from consumer.settler import Settled

__all__ = ["Lifecycle"]


class Lifecycle:
    def __init__(self, emitter: EventEmitter | None, service: str, max_result_bytes: int) -> None:
        """`emitter=None`: events are off (HOPLINE_EVENTS_ENABLED=false)."""
        self.emitter = emitter
        self._service = service
        self._max_result_bytes = max_result_bytes

    async def started(
        self, delivery: Delivery, message_type: str, message_id: str, attempt: int
    ) -> None:
        """Before a handler runs; waits while the events already waiting are too many for
        the broker to keep up with (common.emitter: the consumer runs at their pace)."""
        if self.emitter is not None:
            await self.emitter.room()
            self._emit("started", delivery, message_type, message_id, attempt)

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
        if self.emitter is None or message_id is None or settled is Settled.LEFT:
            return
        if settled is Settled.ACKED and isinstance(decision, Ack):
            result = bounded_result(outcome.result, self._max_result_bytes)
            self._emit("succeeded", delivery, message_type, message_id, attempt, result=result)
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
            )

    def _emit(
        self,
        name: EventName,
        delivery: Delivery,
        message_type: str | None,
        message_id: str,
        attempt: int,
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
            at=datetime.now(UTC),
            replay=read_replay_count(delivery.headers),
            **fields,  # type: ignore[arg-type]
        )
        self.emitter.emit(event, source=self._service)
