"""The producer's part in message status: `accepted` events, the store, and the recorder.

The recorder runs inside the producer by default (`HOPLINE_STATUS_RECORDER=true`): the
producer already serves `GET /v1/messages/{id}` from the same store, so `make run` and a
one-host deployment need no other process; with several producers, each one's recorder is a
competing consumer of the one status queue (use PostgreSQL then: a SQLite file belongs to
one host). `hopline recorder` runs the same recorder alone, to scale it apart from the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.emitter import EventEmitter
from common.envelope import Envelope
from common.events import PRODUCER_SOURCE, Event
from common.status.recorder import Recorder
from common.status.store import StatusStore, open_store
from producer.settings import ProducerSettings

__all__ = ["ProducerStatus"]


@dataclass(slots=True)
class ProducerStatus:
    """What the producer holds for status; each part may be absent (turned off)."""

    store: StatusStore | None = None
    emitter: EventEmitter | None = None
    recorder: Recorder | None = None

    @classmethod
    def from_settings(cls, settings: ProducerSettings) -> ProducerStatus:
        ingestion = settings.serve in ("all", "ingestion")
        store = open_store(
            settings.status_url.get_secret_value(), retention_s=settings.status_retention_s
        )
        emitter = (
            EventEmitter(settings, name="hopline-producer events")
            if ingestion and settings.events_enabled
            else None
        )
        recorder = Recorder(settings, store) if ingestion and settings.status_recorder else None
        return cls(store, emitter, recorder)

    async def start(self) -> None:
        if self.emitter is not None:
            await self.emitter.start()
        if self.recorder is not None:
            await self.recorder.start()

    async def close(self) -> None:
        if self.emitter is not None:
            await self.emitter.close()
        if self.recorder is not None:
            await self.recorder.close()
        if self.store is not None:
            await self.store.close()

    def accepted(self, envelope: Envelope, sent_at: datetime) -> None:
        """The broker confirmed `envelope`, sent at `sent_at`: say so on the events exchange
        (with the time it was sent: its consumer may have started before the confirm)."""
        if self.emitter is None:
            return
        event = Event(
            event="accepted",
            message_id=envelope.message_id,
            service=PRODUCER_SOURCE,
            type=envelope.message_type,
            routing_key=envelope.routing_key,
            attempt=1,
            at=sent_at,
        )
        self.emitter.emit(event, source=PRODUCER_SOURCE)
