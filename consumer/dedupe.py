"""Consumer-side dedupe for handlers declared `idempotent=True`.

A delivery whose message_id already succeeded for this service (as the status store says)
is acked without running its handler again: a redelivery after a lost ack does not repeat
the side effect. The store is read only for such handlers, and only opened when the
registry has one. It knows what the recorder has written: a redelivery that comes within
the recording delay of the first success (usually well under a second) still runs. A store
that cannot be read means the handler runs (at-least-once, as without dedupe), said once.
"""

from __future__ import annotations

from common.errors import StatusUnavailableError
from common.logging import get_logger
from common.settings import HoplineSettings
from common.status.store import SqlStatusStore, open_store
from consumer.registry import HandlerSpec, Registry

__all__ = ["Dedupe"]

_log = get_logger("hopline.consumer")


class Dedupe:
    def __init__(self, settings: HoplineSettings, registry: Registry) -> None:
        self._service = registry.service
        self._store: SqlStatusStore | None = None
        if any(spec.idempotent for spec in registry.specs):
            self._store = open_store(
                settings.status_url.get_secret_value(), retention_s=settings.status_retention_s
            )
        self._unavailable = False

    async def already_succeeded(self, spec: HandlerSpec, message_id: str) -> bool:
        if not spec.idempotent or self._store is None:
            return False
        try:
            done = await self._store.succeeded(message_id, self._service)
        except StatusUnavailableError as exc:
            if not self._unavailable:
                self._unavailable = True
                _log.warning(
                    "dedupe.unavailable",
                    error=str(exc),
                    consequence="idempotent handlers run without the check (at-least-once)",
                )
            return False
        self._unavailable = False
        return done

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
