"""Which key each item of a batch has, and the 409 that names the items (pure, no store)."""

from __future__ import annotations

from typing import Any

import pytest

from producer.batch_keys import ItemKey, item_keys, lock_keys, refusal, repeated_keys
from producer.idempotency import (
    IdempotencyConflict,
    IdempotencyInFlight,
    request_fingerprint,
    scoped_key,
)
from producer.schemas import BatchIn, MessageIn


def _batch(*message_ids: str | None) -> BatchIn:
    messages: list[dict[str, Any]] = [
        {"type": "orders.created", "payload": {"n": n}, "message_id": message_id}
        for n, message_id in enumerate(message_ids)
    ]
    return BatchIn.model_validate({"messages": messages})


def test_a_header_keys_every_item_by_its_index_scoped_like_the_single_endpoint() -> None:
    batch = _batch("m-0", None)

    keys = item_keys(batch, "import-7", "team-a")

    assert [(k.index, k.key) for k in keys] == [
        (0, scoped_key("team-a", "import-7\x1f0")),
        (1, scoped_key("team-a", "import-7\x1f1")),
    ]


def test_no_single_request_key_names_a_batch_item_s_key() -> None:
    batch_item = item_keys(_batch("m-0", None), "import-1", "")[0].key

    assert batch_item not in {scoped_key("", "import-1#0"), scoped_key("", "import-1")}


def test_a_scoped_key_is_storable_in_postgresql_text_and_unambiguous() -> None:
    # PostgreSQL text cannot hold NUL (it was the separator once: every key was a 503 there)
    assert "\x00" not in scoped_key("team-a", "k")
    # A client key is printable ASCII: no scope and key run into another pair's
    pairs = [("a", "b c"), ("a b", "c"), ("", "a b c"), ("a\x1fb", "c"), ("a", "b")]
    assert len({scoped_key(scope, key) for scope, key in pairs}) == len(pairs)


def test_with_a_header_every_item_carries_the_whole_batch_s_fingerprint() -> None:
    # The header names the request: the same header with another batch must mismatch at
    # every index, not replay the items the two batches happen to share
    batch, other = _batch("m-0", "m-1"), _batch("m-0", "m-1", "m-2")

    keys, other_keys = item_keys(batch, "k", ""), item_keys(other, "k", "")

    assert {k.fingerprint for k in keys} == {request_fingerprint(batch)}
    assert keys[0].key == other_keys[0].key
    assert keys[0].fingerprint != other_keys[0].fingerprint


def test_without_a_header_an_item_s_message_id_is_the_single_endpoint_s_key() -> None:
    batch = _batch(None, "order-7", None, "order-9")
    single = MessageIn.model_validate(batch.messages[1].model_dump())

    keys = item_keys(batch, None, "team-a")

    assert keys == [
        ItemKey(1, scoped_key("team-a", "order-7"), request_fingerprint(single)),
        ItemKey(3, scoped_key("team-a", "order-9"), request_fingerprint(batch.messages[3])),
    ]


def test_items_without_a_header_or_message_id_have_no_key() -> None:
    assert item_keys(_batch(None, None), None, "") == []


def test_the_same_message_id_under_two_api_keys_is_two_keys() -> None:
    [a] = item_keys(_batch("m"), None, "team-a")
    [b] = item_keys(_batch("m"), None, "team-b")

    assert a.key != b.key


def test_a_repeated_message_id_names_the_earlier_item_it_repeats() -> None:
    keys = item_keys(_batch("a", "b", "a", None, "b", "a"), None, "")

    assert repeated_keys(keys) == {2: 0, 4: 1, 5: 0}
    assert repeated_keys(item_keys(_batch("a", "a"), "h", "")) == {}  # the header decides


def test_a_header_batch_locks_its_header_s_key_and_others_every_item_key_sorted() -> None:
    by_header = item_keys(_batch("b", "a"), "h", "s")
    by_ids = item_keys(_batch("b", "a"), None, "s")

    assert lock_keys("h", "s", by_header) == [scoped_key("s", "h")]
    assert lock_keys(None, "s", by_ids) == [scoped_key("s", "a"), scoped_key("s", "b")]


@pytest.mark.parametrize(
    ("mismatched", "in_flight", "by_header", "kind", "says"),
    [
        (
            [0, 1],
            [],
            True,
            IdempotencyConflict,
            "this Idempotency-Key was already used for a different batch (it was accepted "
            "with other contents at items 0, 1): send this batch with a new Idempotency-Key; "
            "nothing in this batch was published",
        ),
        (
            [3],
            [],
            False,
            IdempotencyConflict,
            "the message_id of item 3 was already accepted for a different message: give "
            "those items new message_ids; nothing in this batch was published",
        ),
        (
            [],
            [2, 5],
            False,
            IdempotencyInFlight,
            "items 2, 5 are being published right now by another request with the same "
            "message_id: send this batch again after Retry-After to get its answer; nothing "
            "in this batch was published",
        ),
        (
            [1],
            [4],
            False,
            IdempotencyConflict,  # sending the batch again cannot help: no Retry-After
            "the message_id of item 1 was already accepted for a different message: give "
            "those items new message_ids; item 4 is being published right now by another "
            "request with the same message_id: send this batch again after Retry-After to "
            "get its answer; nothing in this batch was published",
        ),
    ],
)
def test_a_refused_batch_names_its_items_why_and_what_to_do(
    mismatched: list[int], in_flight: list[int], by_header: bool, kind: type, says: str
) -> None:
    refused = refusal(mismatched, in_flight, by_header=by_header)

    assert type(refused) is kind
    assert str(refused) == says


def test_a_long_list_of_items_is_cut_short_with_a_count() -> None:
    refused = refusal(list(range(25)), [], by_header=True)

    assert "items 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 15 more" in str(refused)
