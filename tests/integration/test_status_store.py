"""The status store's contract, on both backends for real: SQLite (a file) and PostgreSQL
(a database of the test's own, dropped afterwards)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from common.status.store import ClaimRequest, SqlStatusStore, open_store
from tests.support.events import T0, event
from tests.support.postgres import fresh_database

RETENTION_S = 3600.0
NOW = T0 + timedelta(seconds=60)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStatusStore]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'status.sqlite3'}", retention_s=RETENTION_S)
        yield opened
        await opened.close()
        return
    async with fresh_database() as url:
        opened = open_store(url, retention_s=RETENTION_S)
        yield opened
        await opened.close()


def _life_with_a_retry(message_id: str = "m-1") -> list:
    return [
        event("accepted", message_id=message_id, second=0),
        event("started", message_id=message_id, second=1),
        event(
            "retry_scheduled",
            message_id=message_id,
            second=2,
            delay_s=1.0,
            error_type="RetryableError",
            error_message="gateway timeout",
        ),
        event("started", message_id=message_id, second=3, attempt=2),
        event("succeeded", message_id=message_id, second=4, attempt=2, result={"paid": True}),
    ]


async def test_an_id_never_seen_is_unknown(store: SqlStatusStore) -> None:
    assert await store.lookup("never-seen", NOW) is None


async def test_a_life_recorded_shuffled_and_twice_reads_as_it_happened(
    store: SqlStatusStore,
) -> None:
    life = _life_with_a_retry()
    shuffled = life + life
    random.Random(7).shuffle(shuffled)

    for one in shuffled:  # one event per batch: the worst order, every duplicate applied
        await store.record([one])
    status = await store.lookup("m-1", NOW)

    assert status is not None
    assert (status.type, status.routing_key) == ("orders.created", "high.orders.created")
    assert status.accepted_at == "2026-11-29T12:00:00.000000Z"
    [demo] = status.services
    assert (demo.service, demo.state, demo.attempt, demo.result) == (
        "demo",
        "succeeded",
        2,
        {"paid": True},
    )
    assert [entry.event for entry in status.timeline] == [e.event for e in life]
    assert status.timeline[2].error_type == "RetryableError"
    assert status.timeline[2].delay_s == 1.0


async def test_an_old_started_does_not_overwrite_a_newer_succeeded(store: SqlStatusStore) -> None:
    await store.record([event("succeeded", second=5)])
    await store.record([event("started", second=1)])

    status = await store.lookup("m-1", NOW)

    assert status is not None and status.services[0].state == "succeeded"


async def test_a_retrying_service_shows_its_delay(store: SqlStatusStore) -> None:
    await store.record(_life_with_a_retry()[:3])

    status = await store.lookup("m-1", NOW)

    assert status is not None
    assert (status.services[0].state, status.services[0].retry_delay_s) == ("retrying", 1.0)


async def test_a_replay_starts_a_new_life_after_quarantine(store: SqlStatusStore) -> None:
    first_life = [
        event("started", attempt=3, second=1),
        event("quarantined", attempt=3, second=2, reason="gave up after 3 attempts"),
    ]
    second_life = [
        event("replayed", attempt=0, replay=1, second=10),
        event("started", attempt=1, replay=1, second=11),
        event("succeeded", attempt=1, replay=1, second=12),
    ]
    await store.record(second_life)
    await store.record(first_life)  # late: must not pull the message back into quarantine

    status = await store.lookup("m-1", NOW)

    assert status is not None and status.services[0].state == "succeeded"
    assert [e.event for e in status.timeline] == [
        "started",
        "quarantined",
        "replayed",
        "started",
        "succeeded",
    ]


async def test_an_edited_copy_and_its_original_link_to_each_other(store: SqlStatusStore) -> None:
    await store.record([event("quarantined", message_id="old", attempt=1, second=1)])
    await store.record(
        [event("copied", message_id="new", copy_of="old", attempt=0, replay=1, second=2)]
    )

    original = await store.lookup("old", NOW)
    copy = await store.lookup("new", NOW)

    assert original is not None and original.copies == ["new"]
    assert copy is not None and copy.copy_of == "old"


async def test_past_retention_a_message_is_unknown_and_pruning_forgets_it(
    store: SqlStatusStore,
) -> None:
    await store.record(_life_with_a_retry("old"))
    await store.record([event("accepted", message_id="young", second=RETENTION_S)])
    later = T0 + timedelta(seconds=RETENTION_S + 10)

    assert await store.lookup("old", later) is None
    assert await store.prune(later) == 1
    assert await store.lookup("old", NOW) is None  # gone, not only hidden
    assert await store.lookup("young", later) is not None


async def test_a_unique_prefix_finds_the_id(store: SqlStatusStore) -> None:
    await store.record([event("accepted", message_id=i) for i in ("abc-1", "abd-2", "xyz")])

    assert await store.ids_starting_with("ab", NOW, 10) == ["abc-1", "abd-2"]
    assert await store.ids_starting_with("abc", NOW, 10) == ["abc-1"]
    assert await store.ids_starting_with("q", NOW, 10) == []


async def test_an_idempotency_key_is_claimed_once_then_answers_the_first_answer(
    store: SqlStatusStore,
) -> None:
    first = await store.claim("k", "fp", "id-1", "high.a", NOW)
    while_publishing = await store.claim("k", "fp", "id-2", "high.a", NOW)
    await store.confirm("k")
    after = await store.claim("k", "fp", "id-3", "high.a", NOW)
    other_request = await store.claim("k", "other-fp", "id-4", "high.a", NOW)

    assert first.outcome == "claimed"
    assert while_publishing.outcome == "in_flight"
    assert (after.outcome, after.message_id) == ("accepted", "id-1")
    assert (other_request.outcome, other_request.message_id) == ("mismatch", "id-1")


async def test_a_released_key_can_be_claimed_again(store: SqlStatusStore) -> None:
    await store.claim("k", "fp", "id-1", "high.a", NOW)
    await store.release("k")

    again = await store.claim("k", "fp", "id-2", "high.a", NOW)

    assert (again.outcome, again.message_id) == ("claimed", "id-2")


async def test_a_confirmed_key_is_not_released(store: SqlStatusStore) -> None:
    await store.claim("k", "fp", "id-1", "high.a", NOW)
    await store.confirm("k")
    await store.release("k")

    assert (await store.claim("k", "fp", "id-2", "high.a", NOW)).outcome == "accepted"


async def test_concurrent_claims_of_one_key_have_one_winner(store: SqlStatusStore) -> None:
    claims = await asyncio.gather(
        *(store.claim("k", "fp", f"id-{n}", "high.a", NOW) for n in range(10))
    )

    assert sorted(c.outcome for c in claims) == ["claimed"] + ["in_flight"] * 9


async def test_an_expired_key_is_a_new_request(store: SqlStatusStore) -> None:
    await store.claim("k", "fp", "id-1", "high.a", NOW)
    await store.confirm("k")
    later = NOW + timedelta(seconds=RETENTION_S + 1)

    assert (await store.claim("k", "fp", "id-2", "high.a", later)).outcome == "claimed"


async def test_a_nul_character_in_an_error_message_is_stored(store: SqlStatusStore) -> None:
    await store.record([event("retry_scheduled", delay_s=1.0, error_message="bad\x00byte")])

    status = await store.lookup("m-1", NOW)

    assert status is not None and status.services[0].error_message == "bad\ufffdbyte"


async def test_succeeded_among_names_only_the_ids_that_succeeded_for_that_service(
    store: SqlStatusStore,
) -> None:
    await store.record(
        [
            event("succeeded", message_id="m-1"),
            event("retry_scheduled", message_id="m-2"),
            event("succeeded", message_id="m-3", service="billing"),
        ]
    )

    assert await store.succeeded_among("demo", ["m-1", "m-2", "m-3", "m-4"]) == {"m-1"}
    assert await store.succeeded_among("demo", []) == set()
    assert await store.succeeded("m-3", "billing")


def _requests(*keys: str, fingerprint: str = "fp") -> list[ClaimRequest]:
    return [ClaimRequest(key, fingerprint, f"id-{key}", "high.a") for key in keys]


async def test_claim_many_answers_each_key_as_claim_would_in_order(store: SqlStatusStore) -> None:
    # Given one key accepted, one being published, one used for another request
    await store.claim("accepted", "fp", "first-accepted", "high.a", NOW)
    await store.confirm("accepted")
    await store.claim("in-flight", "fp", "first-in-flight", "high.a", NOW)
    await store.claim("other", "other-fp", "first-other", "high.a", NOW)

    # When a batch claims them and a new key together
    claims = await store.claim_many(_requests("new", "accepted", "in-flight", "other"), NOW)

    # Then each answer is the single claim's, the earlier ones naming the first answer
    assert [(c.outcome, c.message_id) for c in claims] == [
        ("claimed", "id-new"),
        ("accepted", "first-accepted"),
        ("in_flight", "first-in-flight"),
        ("mismatch", "first-other"),
    ]
    assert (await store.claim("new", "fp", "id-2", "high.a", NOW)).outcome == "in_flight"


async def test_claim_many_takes_over_an_expired_key(store: SqlStatusStore) -> None:
    await store.claim("k", "fp", "id-old", "high.a", NOW)
    await store.confirm("k")
    later = NOW + timedelta(seconds=RETENTION_S + 1)

    [claim] = await store.claim_many(_requests("k"), later)

    assert (claim.outcome, claim.message_id) == ("claimed", "id-k")


async def test_confirm_many_and_release_many_settle_a_batch_s_claims(
    store: SqlStatusStore,
) -> None:
    # Given four claimed keys, one of them confirmed before
    await store.claim_many(_requests("a", "b", "c", "d"), NOW)
    await store.confirm("d")

    # When two are confirmed and the others released
    await store.confirm_many(["a", "b"])
    await store.release_many(["c", "d"])

    # Then the confirmed answer as accepted, the released one is free again, and release
    # never frees a confirmed key
    again = await store.claim_many(_requests("a", "b", "c", "d"), NOW)
    assert [c.outcome for c in again] == ["accepted", "accepted", "claimed", "accepted"]


async def test_concurrent_claim_many_of_one_batch_have_one_winner_per_key(
    store: SqlStatusStore,
) -> None:
    keys = [f"k-{n}" for n in range(50)]

    batches = await asyncio.gather(*(store.claim_many(_requests(*keys), NOW) for _ in range(5)))

    for position in range(len(keys)):
        outcomes = sorted(batch[position].outcome for batch in batches)
        assert outcomes == ["claimed"] + ["in_flight"] * 4


async def test_claim_many_of_more_keys_than_one_statement_carries(store: SqlStatusStore) -> None:
    keys = [f"k-{n}" for n in range(2500)]  # three statements' worth

    first = await store.claim_many(_requests(*keys), NOW)
    await store.confirm_many(keys)
    again = await store.claim_many(_requests(*keys, fingerprint="fp"), NOW)

    assert {c.outcome for c in first} == {"claimed"}
    assert {c.outcome for c in again} == {"accepted"}
    assert again[-1].message_id == "id-k-2499"
    assert await store.claim_many([], NOW) == []


async def test_concurrent_claim_many_of_shared_keys_in_opposite_orders_both_answer(
    store: SqlStatusStore,
) -> None:
    keys = [f"k-{n:03}" for n in range(1000)]
    await asyncio.gather(*(store.lookup(f"warm-{n}", NOW) for n in range(4)))  # connections

    forward, backward = await asyncio.gather(
        store.claim_many(_requests(*keys), NOW), store.claim_many(_requests(*keys[::-1]), NOW)
    )

    # Each key has one winner, and neither batch failed on a deadlock between them
    won = {r.key for r, c in zip(_requests(*keys), forward, strict=True) if c.outcome == "claimed"}
    won_back = {
        r.key
        for r, c in zip(_requests(*keys[::-1]), backward, strict=True)
        if c.outcome == "claimed"
    }
    assert won | won_back == set(keys) and not won & won_back
