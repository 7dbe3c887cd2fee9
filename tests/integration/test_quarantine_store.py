"""Looking at and moving quarantined messages on a real broker."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from common.connection import connect
from common.headers import ATTEMPT, EDITED_FROM, ERROR_TYPE, REPLAY_COUNT
from common.names import Names
from common.quarantine.selection import Selection, group_id
from common.quarantine.sweep import Edit, QueueSweep
from common.settings import HoplineSettings
from consumer import Registry
from tests.support.pipeline import consumer_settings, drain, queue_depth, running_worker
from tests.support.quarantine import seed_quarantine
from tests.support.wait import wait_until

NAMES = Names()
QUARANTINE = NAMES.quarantine("orders")
ORIGIN = NAMES.work_queue("orders", "normal")


@pytest.fixture
async def store(amqp_url: str) -> AsyncIterator[QueueSweep]:
    connection = await connect(HoplineSettings(amqp_url=SecretStr(amqp_url)), name="test")
    yield QueueSweep(connection, NAMES)
    await connection.close()


def _failures(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": f"m-{n}", "payload": {"n": n}, **extra} for n in range(count)]


async def test_looking_many_times_changes_nothing(amqp_url: str, store: QueueSweep) -> None:
    ids = await seed_quarantine(amqp_url, "orders", _failures(30))
    for _ in range(5):
        seen = await store.browse(QUARANTINE)
        assert [m.id for m in seen] == ids, "same messages, same order"
    assert await queue_depth(amqp_url, QUARANTINE) == 30
    first = (await store.browse(QUARANTINE, limit=1))[0]
    assert first.error_type == "RuntimeError"
    assert first.origin_queue == ORIGIN
    assert first.attempts == 3


async def test_filters_and_groups(amqp_url: str, store: QueueSweep) -> None:
    await seed_quarantine(
        amqp_url,
        "orders",
        [
            *_failures(3, type="orders.created", error_type="KeyError"),
            {"id": "x-1", "type": "orders.paid", "error_type": "TimeoutError", "error": "db slow"},
        ],
    )
    slow = await store.browse(QUARANTINE, Selection(error="db slow"))
    assert [m.id for m in slow] == ["x-1"]
    paid = await store.browse(QUARANTINE, Selection(message_type="orders.created"))
    assert len(paid) == 3
    group = group_id("KeyError", "orders.created")
    assert len(await store.browse(QUARANTINE, Selection(group=group))) == 3


async def test_replay_sends_back_to_the_origin_queue_with_attempt_reset(
    amqp_url: str, store: QueueSweep
) -> None:
    await seed_quarantine(amqp_url, "orders", _failures(5))
    report = await store.replay(QUARANTINE, Selection(ids=frozenset({"m-1", "m-3"})))
    assert report.moved == 2 and sorted(report.ids) == ["m-1", "m-3"]
    back = await drain(amqp_url, ORIGIN)
    assert sorted(m.message_id or "" for m in back) == ["m-1", "m-3"]
    for message in back:
        assert message.headers[ATTEMPT] == 1
        assert message.headers[REPLAY_COUNT] == 1
        assert ERROR_TYPE not in message.headers
    remaining = await store.browse(QUARANTINE)
    assert [m.id for m in remaining] == ["m-0", "m-2", "m-4"], "order of the rest kept"


async def test_dry_run_moves_nothing(amqp_url: str, store: QueueSweep) -> None:
    await seed_quarantine(amqp_url, "orders", _failures(4))
    report = await store.replay(QUARANTINE, Selection(), dry_run=True)
    assert report.matched == 4 and report.moved == 0
    report = await store.discard(QUARANTINE, Selection(), archive=None, dry_run=True)
    assert report.matched == 4
    assert await queue_depth(amqp_url, QUARANTINE) == 4
    assert await queue_depth(amqp_url, ORIGIN) == 0


async def test_an_edited_replay_is_a_copy_with_a_new_id(amqp_url: str, store: QueueSweep) -> None:
    await seed_quarantine(amqp_url, "orders", _failures(1))
    edit = Edit(body=b'{"n": 100}', headers={"fixed-by": "ops"})
    report = await store.replay(QUARANTINE, Selection(ids=frozenset({"m-0"})), edit=edit)
    assert report.moved == 1
    [copy] = await drain(amqp_url, ORIGIN)
    assert copy.body == b'{"n": 100}'
    assert copy.message_id != "m-0"
    assert copy.headers[EDITED_FROM] == "m-0"
    assert copy.headers["fixed-by"] == "ops"
    assert await queue_depth(amqp_url, QUARANTINE) == 0


async def test_discard_archives_then_import_puts_back(amqp_url: str, store: QueueSweep) -> None:
    await seed_quarantine(amqp_url, "orders", _failures(3))
    archive = io.BytesIO()
    report = await store.discard(QUARANTINE, Selection(), archive=archive)
    assert report.moved == 3
    assert await queue_depth(amqp_url, QUARANTINE) == 0
    lines = archive.getvalue().splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == ["m-0", "m-1", "m-2"]
    imported = await store.import_archive(lines)
    assert imported.moved == 3
    back = await store.browse(QUARANTINE)
    assert [m.id for m in back] == ["m-0", "m-1", "m-2"]
    assert back[0].error_type == "RuntimeError", "headers survive the round trip"


async def test_an_archive_line_cannot_put_a_message_into_a_work_queue(
    amqp_url: str, store: QueueSweep
) -> None:
    # Given an archive line forged to name a work queue
    await seed_quarantine(amqp_url, "orders", _failures(1))
    archive = io.BytesIO()
    await store.discard(QUARANTINE, Selection(), archive=archive)
    record = orjson.loads(archive.getvalue())
    record["queue"] = "hopline.orders.high"
    # When it is imported, it is refused with the reason, and the work queue stays empty
    report = await store.import_archive([orjson.dumps(record)])
    assert report.moved == 0
    assert report.failures == [
        ("m-0", "'hopline.orders.high' is not a quarantine or unroutable queue")
    ]
    assert await queue_depth(amqp_url, "hopline.orders.high") == 0


async def test_a_replayed_message_that_fails_again_is_marked(
    amqp_url: str, store: QueueSweep
) -> None:
    # Given a real consumer whose handler always fails permanently
    registry = Registry("orders")

    @registry.handler("#")
    async def broken(payload: Any) -> None:
        from consumer import PermanentError

        raise PermanentError("still broken")

    await seed_quarantine(amqp_url, "orders", _failures(1))
    async with running_worker(consumer_settings(amqp_url), registry):
        # When the message is replayed and fails again
        await store.replay(QUARANTINE, Selection(ids=frozenset({"m-0"})))

        async def back_in_quarantine() -> bool:
            found = await store.browse(QUARANTINE)
            return bool(found) and found[0].error_type == "PermanentError"

        await wait_until(back_in_quarantine, timeout_s=10)
    # Then it says so
    [again] = await store.browse(QUARANTINE)
    assert again.failed_again_after_replay
    assert again.replay_count == 1
