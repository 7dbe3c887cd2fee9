"""Which idempotency key each item of a batch has, and how a refused batch is explained.

    Idempotency-Key header h     item i's key is h, U+001F, i: no client key holds U+001F,
                                 so no single request's key names an item's; every item is
                                 keyed, and each carries the whole batch's fingerprint: the
                                 header names the request, so the same header with any other
                                 batch is a mismatch
    else the item's message_id   its key is the message_id and its fingerprint the item's own:
                                 the single endpoint's key space, so a message_id accepted
                                 singly is a replay in a batch, and the other way round
    else                         no key: published as it always was

Keys are scoped to the API key that sent them (`scoped_key`), like the single endpoint's.
Pure: no store, no broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from producer.idempotency import (
    IdempotencyConflict,
    IdempotencyInFlight,
    request_fingerprint,
    scoped_key,
)
from producer.schemas import BatchIn

__all__ = ["ItemKey", "item_keys", "lock_keys", "refusal", "repeated_keys"]

_LISTED = 10  # item indexes a detail names before it only counts the rest


@dataclass(frozen=True, slots=True)
class ItemKey:
    index: int  # the item's place in the batch
    key: str  # scoped
    fingerprint: str


def item_keys(batch: BatchIn, header: str | None, scope: str) -> list[ItemKey]:
    """The keyed items of `batch`, in order (unkeyed items are left out)."""
    if header is not None:
        whole = request_fingerprint(batch)
        return [
            # Joined by a character no client key holds (printable ASCII only), so no
            # single request's key or message_id can name a batch item's row
            ItemKey(index, scoped_key(scope, f"{header}\x1f{index}"), whole)
            for index in range(len(batch.messages))
        ]
    return [
        ItemKey(index, scoped_key(scope, message.message_id), request_fingerprint(message))
        for index, message in enumerate(batch.messages)
        if message.message_id is not None
    ]


def repeated_keys(keys: Sequence[ItemKey]) -> dict[int, int]:
    """Items whose key an earlier item of the batch already has: index -> that earlier index.

    One request cannot publish a key twice, nor wait for itself to finish publishing it."""
    first: dict[str, int] = {}
    repeats: dict[int, int] = {}
    for item in keys:
        if item.key in first:
            repeats[item.index] = first[item.key]
        else:
            first[item.key] = item.index
    return repeats


def lock_keys(header: str | None, scope: str, keys: Sequence[ItemKey]) -> list[str]:
    """What to lock in this process while the batch is claimed and published: its header's
    key (identical batches wait for each other), else every item key in one order (two
    batches sharing message_ids in other orders cannot deadlock)."""
    if header is not None:
        return [scoped_key(scope, header)]
    return sorted({item.key for item in keys})


def refusal(
    mismatched: Sequence[int], in_flight: Sequence[int], *, by_header: bool
) -> IdempotencyConflict | IdempotencyInFlight:
    """The 409 for a batch whose keys another request holds, naming the items, why, and
    what to do: a conflict when any key was used for a different request (sending the
    batch again cannot help), else in flight (it can, after Retry-After)."""
    what = "Idempotency-Key" if by_header else "message_id"
    reasons = []
    if mismatched:
        if by_header:
            reasons.append(
                "this Idempotency-Key was already used for a different batch (it was "
                f"accepted with other contents at {_items(mismatched)}): send this batch "
                "with a new Idempotency-Key"
            )
        else:
            reasons.append(
                f"the message_id of {_items(mismatched)} was already accepted for a different "
                "message: give those items new message_ids"
            )
    if in_flight:
        reasons.append(
            f"{_items(in_flight)} {'is' if len(in_flight) == 1 else 'are'} being published "
            f"right now by another request with the same {what}: send this batch again "
            "after Retry-After to get its answer"
        )
    detail = "; ".join(reasons) + "; nothing in this batch was published"
    return IdempotencyConflict(detail) if mismatched else IdempotencyInFlight(detail)


def _items(indexes: Sequence[int]) -> str:
    """`item 3`, `items 0, 2, 5`, or `items 0, 1, ... 9 and 15 more`."""
    if len(indexes) == 1:
        return f"item {indexes[0]}"
    listed = ", ".join(str(index) for index in indexes[:_LISTED])
    rest = len(indexes) - _LISTED
    return f"items {listed}" + (f" and {rest} more" if rest > 0 else "")
