"""consumer.scheduler.PriorityBuffer: highest priority first, FIFO within a priority."""

from __future__ import annotations

import asyncio

from consumer.scheduler import PriorityBuffer


async def take_all(buffer: PriorityBuffer[str]) -> list[str]:
    taken = []
    while len(buffer):
        taken.append(await buffer.get())
        buffer.done()
    return taken


async def test_rank_zero_comes_before_rank_two_whatever_arrived_first() -> None:
    # Given low-priority work that arrived before high-priority work
    buffer: PriorityBuffer[str] = PriorityBuffer()
    buffer.put(2, "low-1")
    buffer.put(2, "low-2")
    buffer.put(1, "normal-1")
    buffer.put(0, "high-1")

    # Then a free slot takes the high-priority delivery first
    assert await take_all(buffer) == ["high-1", "normal-1", "low-1", "low-2"]


async def test_within_one_rank_deliveries_keep_their_order() -> None:
    buffer: PriorityBuffer[str] = PriorityBuffer()
    for i in range(50):
        buffer.put(i % 3, f"{i % 3}-{i:02d}")

    taken = await take_all(buffer)

    assert taken == sorted(taken)
    assert len(taken) == 50


async def test_items_need_not_be_comparable() -> None:
    buffer: PriorityBuffer[object] = PriorityBuffer()
    first, second = object(), object()
    buffer.put(1, first)
    buffer.put(1, second)

    assert await buffer.get() is first
    assert await buffer.get() is second
    buffer.done()
    buffer.done()


async def test_len_counts_what_waits() -> None:
    buffer: PriorityBuffer[str] = PriorityBuffer()
    assert len(buffer) == 0

    buffer.put(0, "a")
    buffer.put(2, "b")
    assert len(buffer) == 2

    await buffer.get()
    assert len(buffer) == 1


async def test_a_waiting_slot_wakes_for_the_next_put() -> None:
    buffer: PriorityBuffer[str] = PriorityBuffer()
    waiting = asyncio.create_task(buffer.get())
    await asyncio.sleep(0)
    assert not waiting.done()

    buffer.put(2, "late")

    assert await asyncio.wait_for(waiting, 1) == "late"
    buffer.done()


async def test_drained_waits_until_every_item_is_done() -> None:
    # Given two items, one handled
    buffer: PriorityBuffer[str] = PriorityBuffer()
    buffer.put(0, "a")
    buffer.put(0, "b")
    await buffer.get()
    buffer.done()
    drained = asyncio.create_task(buffer.drained())
    await asyncio.sleep(0)

    # Then drained is still waiting
    assert not drained.done()

    # When the second is handled too, drained returns
    await buffer.get()
    buffer.done()
    await asyncio.wait_for(drained, 1)
    assert drained.done()
