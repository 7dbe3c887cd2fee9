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

A batch (`publish_batch_once`) claims all its keyed items first, in one store call: if any
is `mismatch` or `in_flight` it releases what it claimed and publishes nothing; otherwise
it publishes every item not `accepted` before, then confirms the keys whose publish was
confirmed and releases the others (one store call each), so sending the same batch again
publishes only what failed. Which key an item has: producer.batch_keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime

from pydantic import BaseModel

from common.errors import HoplineError, StatusUnavailableError
from common.logging import get_logger
from common.status.store import Claim, ClaimRequest, StatusStore
from producer.schemas import MessageAccepted

__all__ = [
    "BatchKeysTaken",
    "IdempotencyConflict",
    "IdempotencyInFlight",
    "Idempotent",
    "Outcomes",
    "fingerprint",
    "request_fingerprint",
    "scoped_key",
]

# What publishing a batch's items did, by item index: None (confirmed) or why it failed.
Outcomes = Mapping[int, BaseException | None]

_log = get_logger("hopline.producer")


class IdempotencyConflict(HoplineError):
    """409: the key was already used for a different request."""


class IdempotencyInFlight(HoplineError):
    """409: a request with this key is being published right now."""


class BatchKeysTaken(HoplineError):
    """A batch's keys that another request holds: nothing of the batch was published."""

    def __init__(self, mismatched: list[int], in_flight: list[int]) -> None:
        super().__init__(f"keys taken: mismatched {mismatched}, in flight {in_flight}")
        self.mismatched = mismatched  # item indexes whose key was used for another request
        self.in_flight = in_flight  # item indexes another request is publishing right now


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_fingerprint(request: BaseModel) -> str:
    """What makes two requests with one key the same request: their parsed bodies."""
    return fingerprint(request.model_dump_json().encode())


def scoped_key(scope: str, given: str) -> str:
    """A client's key as stored: scoped to the API key that sent it (`scope`).

    The separator is one no client key holds (they are printable ASCII), so the last one
    marks the boundary; not NUL, which PostgreSQL text cannot store."""
    return f"{scope}\x1f{given}"


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

    @contextlib.asynccontextmanager
    async def _all_held(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Every key's lock, taken in sorted order so two holders of shared keys cannot
        wait for each other."""
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self._held(key))
            yield

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
                await self._release([key])
                raise
            await self._confirm([key], message_id=accepted.message_id)
            return accepted, False

    async def publish_batch_once(
        self,
        requests: Mapping[int, ClaimRequest],
        lock_keys: Iterable[str],
        publish: Callable[[Mapping[int, Claim]], Awaitable[Outcomes]],
    ) -> tuple[dict[int, Claim], Outcomes]:
        """Claim every keyed item (`requests`, by item index), then `publish(replays)`: it
        publishes every item but the replays (keyed or not) and says how each went.

        Returns the replays (items accepted before: the first answer's id and routing key)
        and the outcomes. Raises BatchKeysTaken when a key is another request's (nothing
        is published then), StatusUnavailableError when the store cannot claim."""
        async with self._all_held(lock_keys):
            claims = dict(
                zip(
                    requests,
                    await self._store.claim_many(list(requests.values()), datetime.now(UTC)),
                    strict=True,
                )
            )
            claimed = [requests[i].key for i, claim in claims.items() if claim.outcome == "claimed"]
            mismatched = [i for i, claim in claims.items() if claim.outcome == "mismatch"]
            in_flight = [i for i, claim in claims.items() if claim.outcome == "in_flight"]
            if mismatched or in_flight:
                await self._release(claimed)
                raise BatchKeysTaken(mismatched, in_flight)
            replays = {i: claim for i, claim in claims.items() if claim.outcome == "accepted"}
            try:
                outcomes = await publish(replays)
            except BaseException:
                await self._release(claimed)
                raise
            published = [i for i in requests if i not in replays]
            confirmed = [requests[i].key for i in published if outcomes[i] is None]
            if confirmed:
                await self._confirm(confirmed, items=len(confirmed))
            # Failed items' keys are freed: the same batch sent again publishes just those.
            await self._release([requests[i].key for i in published if outcomes[i] is not None])
            return replays, outcomes

    async def _confirm(self, keys: list[str], **log_context: object) -> None:
        try:
            await self._store.confirm_many(keys)
        except StatusUnavailableError as exc:
            _log.warning(
                "idempotency.unconfirmed",
                **log_context,
                error=str(exc),
                consequence="a repeat of this request after its claims go stale may publish again",
            )

    async def _release(self, keys: list[str]) -> None:
        """Free claims this request made; a store that is away frees them later (a
        pending claim goes stale and is taken over)."""
        if keys:
            with contextlib.suppress(StatusUnavailableError):
                await self._store.release_many(keys)
