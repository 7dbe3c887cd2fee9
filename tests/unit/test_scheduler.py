"""consumer.scheduler.PrioritySlots: at most `limit` at once; freed slots go to rank 0 first."""

from __future__ import annotations

import asyncio

import pytest

from consumer.scheduler import PrioritySlots


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_free_slots_are_taken_at_once_up_to_the_limit() -> None:
    slots = PrioritySlots(2)

    await asyncio.wait_for(slots.acquire(2), 1)
    await asyncio.wait_for(slots.acquire(2), 1)

    assert slots.busy == 2
    third = asyncio.create_task(slots.acquire(0))
    await settle()
    assert not third.done()
    assert len(slots) == 1
    slots.release()
    await asyncio.wait_for(third, 1)
    assert slots.busy == 2


async def test_a_freed_slot_goes_to_the_highest_priority_whatever_waited_longest() -> None:
    # Given one slot, taken, and low-priority work that started waiting before high-priority work
    slots = PrioritySlots(1)
    await slots.acquire(2)
    order: list[str] = []

    async def run(rank: int, name: str) -> None:
        await slots.acquire(rank)
        order.append(name)
        slots.release()

    waiters = []
    for rank, name in ((2, "low-1"), (2, "low-2"), (1, "normal-1"), (0, "high-1")):
        waiters.append(asyncio.create_task(run(rank, name)))
        await settle()

    # When the running handler finishes
    slots.release()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)

    # Then the slot went to the high-priority delivery first, FIFO within a priority
    assert order == ["high-1", "normal-1", "low-1", "low-2"]


async def test_within_one_rank_waiters_keep_their_order() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(0)
    order: list[int] = []

    async def run(index: int) -> None:
        await slots.acquire(index % 3)
        order.append(index)
        slots.release()

    waiters = [asyncio.create_task(run(i)) for i in range(30)]
    await settle()
    slots.release()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)

    for rank in range(3):
        same_rank = [i for i in order if i % 3 == rank]
        assert same_rank == sorted(same_rank)
    assert len(order) == 30


async def test_a_cancelled_waiter_does_not_take_a_slot_away() -> None:
    # Given one slot, taken, and a waiter that gives up
    slots = PrioritySlots(1)
    await slots.acquire(0)
    quitter = asyncio.create_task(slots.acquire(0))
    patient = asyncio.create_task(slots.acquire(1))
    await settle()
    quitter.cancel()
    await settle()

    # When the slot is released, the patient waiter gets it
    slots.release()
    await asyncio.wait_for(patient, 1)
    assert slots.busy == 1
    slots.release()
    assert slots.busy == 0


async def test_a_waiter_cancelled_after_the_hand_over_passes_the_slot_on() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(0)
    first = asyncio.create_task(slots.acquire(0))
    second = asyncio.create_task(slots.acquire(0))
    await settle()

    # The slot is handed to `first`, which is cancelled before it could run
    slots.release()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first

    await asyncio.wait_for(second, 1)
    assert slots.busy == 1


async def test_drained_waits_until_no_slot_is_busy() -> None:
    slots = PrioritySlots(2)
    await slots.drained()  # idle from the start
    await slots.acquire(0)
    await slots.acquire(0)
    drained = asyncio.create_task(slots.drained())
    slots.release()
    await settle()
    assert not drained.done()

    slots.release()

    await asyncio.wait_for(drained, 1)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PrioritySlots(0)


async def test_with_free_slots_a_higher_priority_started_in_the_same_turn_goes_first() -> None:
    # Given free slots, and a low-priority delivery that asks a moment before a high one
    slots = PrioritySlots(4)
    order: list[str] = []

    async def run(rank: int, name: str) -> None:
        await slots.acquire(rank)
        order.append(name)
        slots.release()

    low = asyncio.create_task(run(2, "low"))
    high = asyncio.create_task(run(0, "high"))

    # Then the high one takes its slot first: the low one stepped back once
    await asyncio.wait_for(asyncio.gather(low, high), 1)
    assert order == ["high", "low"]
