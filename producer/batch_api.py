"""The batch route: up to `max_batch_size` messages validated together, published
concurrently, a result per item; idempotency keys per item (producer.batch_keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response, status
from fastapi.exceptions import RequestValidationError

from common.envelope import Envelope
from common.errors import BrokerUnavailableError, PublishNotConfirmedError, StatusUnavailableError
from common.logging import get_logger
from common.status.store import Claim, ClaimRequest
from producer.batch_keys import ItemKey, item_keys, lock_keys, refusal, repeated_keys
from producer.idempotency import BatchKeysTaken, Outcomes
from producer.ingest import (
    AUTH_RESPONSES,
    REPLAYED_HEADER,
    UNAVAILABLE_RESPONSES,
    Ingest,
    IngestDep,
    ServiceUnavailable,
    checked_body,
    due_time,
    envelope_for,
    idempotency_header,
    key_scope,
    keys_unchecked,
    publish_traced,
)
from producer.schemas import BatchIn, BatchItemResult, BatchOut, Problem

__all__ = ["batch_router"]

_log = get_logger("hopline.producer")
batch_router = APIRouter()


BatchIdempotencyKey = Annotated[
    str | None,
    idempotency_header(
        "Send the same batch again with the same key (within the status retention): items "
        "accepted before answer with their first `message_id` and `replayed: true` and are "
        "not published again; items that failed are published now. Every item a replay: 200 "
        "with `Idempotent-Replayed: true`. Without the header, an item's own `message_id` is "
        "its key (shared with `POST /v1/messages`)."
    ),
]


@batch_router.post(
    "/v1/messages/batch",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {
            "model": BatchOut,
            "description": "Every item was accepted before, within the retention, with its "
            "key (`Idempotency-Key` + index, or message_id): the first answers again, each "
            "`replayed`, nothing published (`Idempotent-Replayed: true`).",
        },
        409: {
            "model": Problem,
            "description": "Some item's key is being published by another request (retry "
            "after `Retry-After`), or was used for a different request; `detail` names the "
            "items. Nothing of the batch was published.",
        },
        413: {"model": Problem},
        415: {"model": Problem},
        **AUTH_RESPONSES,
        **UNAVAILABLE_RESPONSES,
    },
    summary="Publish up to `max_batch_size` messages concurrently; a result per item",
)
async def post_batch(
    batch: BatchIn,
    ingest: IngestDep,
    response: Response,
    idempotency_key: BatchIdempotencyKey = None,
) -> BatchOut:
    settings, key = ingest.settings, ingest.key
    if len(batch.messages) > settings.max_batch_size:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "messages"),
                    "msg": f"at most {settings.max_batch_size} messages per batch",
                    "input": len(batch.messages),
                }
            ]
        )
    # Validate everything first: a batch with a bad item publishes nothing.
    bodies = [
        checked_body(message, settings, ("body", "messages", index))
        for index, message in enumerate(batch.messages)
    ]
    dues = [
        due_time(message, ("body", "messages", index))
        for index, message in enumerate(batch.messages)
    ]
    keys = item_keys(batch, idempotency_key, key_scope(ingest))
    _refuse_repeated(keys)
    if key is not None:
        for message in batch.messages:
            key.check_message(message.type, message.priority)
        key.spend(len(batch.messages))
    ingest.metrics.batch.observe(len(batch.messages))
    envelopes = [envelope_for(message, settings) for message in batch.messages]
    items = [_Item(*item) for item in zip(envelopes, bodies, dues, strict=True)]
    replays, outcomes = await _publish_batch(items, keys, ingest, idempotency_key)
    for outcome in outcomes.values():  # a bug, not the broker: its key is already released
        if outcome is not None and not isinstance(
            outcome, BrokerUnavailableError | PublishNotConfirmedError
        ):
            raise outcome
    results = _results(items, replays, outcomes)
    failed = sum(1 for r in results if r.status == "failed")
    if outcomes and failed == len(outcomes):
        first_error = next(r.error for r in results if r.error)
        raise ServiceUnavailable(f"none of the {failed} messages was confirmed: {first_error}")
    if not outcomes:  # every item a replay
        response.status_code = status.HTTP_200_OK
        response.headers[REPLAYED_HEADER] = "true"
    _log.info(
        "batch.accepted", accepted=len(results) - failed, failed=failed, replayed=len(replays)
    )
    return BatchOut(accepted=len(results) - failed, failed=failed, results=results)


@dataclass(frozen=True, slots=True)
class _Item:
    """One message of a batch, ready to publish."""

    envelope: Envelope
    body: bytes
    due: datetime | None


def _refuse_repeated(keys: Sequence[ItemKey]) -> None:
    """422 for a message_id twice in one batch: its second item could only wait for the
    first (in flight) or repeat it."""
    repeats = repeated_keys(keys)
    if repeats:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "messages", index, "message_id"),
                    "msg": f"message_id repeats item {first}'s: a batch carries each "
                    "message_id once",
                    "input": None,
                }
                for index, first in repeats.items()
            ]
        )


async def _publish_batch(
    items: Sequence[_Item],
    keys: Sequence[ItemKey],
    ingest: Ingest,
    idempotency_key: str | None,
) -> tuple[Mapping[int, Claim], Outcomes]:
    """The items accepted before (by index: the first answer), and how the publish of every
    other item went. Keyed items are claimed first (producer.idempotency)."""

    async def publish(replays: Mapping[int, Claim]) -> Outcomes:
        return await _publish_items(
            {index: item for index, item in enumerate(items) if index not in replays}, ingest
        )

    if keys and ingest.idempotent is not None:
        requests = {
            k.index: ClaimRequest(
                k.key,
                k.fingerprint,
                items[k.index].envelope.message_id,
                items[k.index].envelope.routing_key,
            )
            for k in keys
        }
        lock = lock_keys(idempotency_key, key_scope(ingest), keys)
        try:
            return await ingest.idempotent.publish_batch_once(requests, lock, publish)
        except BatchKeysTaken as taken:
            by_header = idempotency_key is not None
            raise refusal(taken.mismatched, taken.in_flight, by_header=by_header) from taken
        except StatusUnavailableError as exc:
            keys_unchecked(idempotency_key, exc, items=len(keys))
    elif keys:
        keys_unchecked(idempotency_key, None)
    return {}, await publish({})


async def _publish_items(items: Mapping[int, _Item], ingest: Ingest) -> Outcomes:
    """Publish `items` concurrently; by index, None (confirmed) or the error."""
    if not items:
        return {}
    if not ingest.publisher.ready:
        raise ServiceUnavailable("RabbitMQ is not reachable right now")
    outcomes = await asyncio.gather(
        *(publish_traced(item.envelope, item.body, item.due, ingest) for item in items.values()),
        return_exceptions=True,
    )
    return dict(zip(items, outcomes, strict=True))


def _results(
    items: Sequence[_Item], replays: Mapping[int, Claim], outcomes: Outcomes
) -> list[BatchItemResult]:
    results = []
    for index, item in enumerate(items):
        first = replays.get(index)
        outcome = outcomes.get(index)
        results.append(
            BatchItemResult(
                index=index,
                status="accepted" if outcome is None else "failed",
                message_id=item.envelope.message_id if first is None else first.message_id,
                routing_key=item.envelope.routing_key if first is None else first.routing_key,
                deliver_at=item.due,
                error=None if outcome is None else str(outcome),
                replayed=first is not None,
            )
        )
    return results
