"""Idempotent ingestion: a key already accepted within retention gets its first answer again.

    claim the key in the store (one unique row per key)
      claimed    -> publish; confirmed: the key is `accepted`; failed: the key is released,
                    so the client may send the same request again after its 503
      accepted   -> the first answer (same message_id), nothing published
      in_flight  -> another request with this key is publishing right now: 409, retry
      mismatch   -> the key was used for a different request: 409 (the IETF draft's 422
                    would read as "this request is invalid"; it is valid, the key is taken)

Within one process, requests with the same key also wait for each other (a lock per key),
so concurrent duplicates see `accepted`, not `in_flight`; across processes the store's
unique row decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from common.errors import HoplineError, StatusUnavailableError
from common.logging import get_logger
from common.status.store import StatusStore
from producer.schemas import MessageAccepted

__all__ = ["IdempotencyConflict", "IdempotencyInFlight", "Idempotent", "fingerprint"]

_log = get_logger("hopline.producer")


class IdempotencyConflict(HoplineError):
    """409: the key was already used for a different request."""


class IdempotencyInFlight(HoplineError):
    """409: a request with this key is being published right now."""


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class Idempotent:
    def __init__(self, store: StatusStore) -> None:
        self._store = store
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def _held(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def publish_once(
        self,
        key: str,
        request_fingerprint: str,
        accepted: MessageAccepted,
        publish: Callable[[], Awaitable[None]],
    ) -> tuple[MessageAccepted, bool]:
        """The answer for this key, and whether it is a replay of an earlier one.

        Raises StatusUnavailableError when the store cannot say (the caller answers 503)."""
        async with self._held(key):
            claim = await self._store.claim(
                key,
                request_fingerprint,
                accepted.message_id,
                accepted.routing_key,
                datetime.now(UTC),
            )
            if claim.outcome == "accepted":
                first = accepted.model_copy(
                    update={"message_id": claim.message_id, "routing_key": claim.routing_key}
                )
                return first, True
            if claim.outcome == "mismatch":
                raise IdempotencyConflict(
                    "this Idempotency-Key (or message_id) was already used for a different "
                    f"request, accepted as message {claim.message_id}: use a new key"
                )
            if claim.outcome == "in_flight":
                raise IdempotencyInFlight(
                    "a request with this Idempotency-Key (or message_id) is being published "
                    "right now: send it again after Retry-After to get its answer"
                )
            try:
                await publish()
            except BaseException:
                with contextlib.suppress(StatusUnavailableError):
                    await self._store.release(key)
                raise
            try:
                await self._store.confirm(key)
            except StatusUnavailableError as exc:
                _log.warning(
                    "idempotency.unconfirmed",
                    message_id=accepted.message_id,
                    error=str(exc),
                    consequence="a repeat of this request after the claim goes stale may "
                    "publish again",
                )
            return accepted, False
