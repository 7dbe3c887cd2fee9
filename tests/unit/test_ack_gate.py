"""Acks wait for the confirms of the lifecycle events emitted before them."""

from __future__ import annotations

import asyncio
from typing import Any

from consumer.acks import AckBatcher


class _Channel:
    is_closed = False

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append((tag, multiple))


class _Gate:
    """An emitter whose confirms the test releases by hand."""

    def __init__(self) -> None:
        self.emitted = 0
        self.confirmed_through = 0
        self._changed = asyncio.Event()

    async def confirmed(self, seq: int) -> None:
        while self.confirmed_through < seq:
            await self._changed.wait()
            self._changed.clear()

    def confirm(self, seq: int) -> None:
        self.confirmed_through = seq
        self._changed.set()


def _marked_while_an_event_is_unconfirmed() -> tuple[_Gate, AckBatcher, Any]:
    """Delivery 1 marked for ack in the event-loop turn its `succeeded` event was emitted."""
    gate = _Gate()
    acks = AckBatcher(gate=gate)
    acks.start()
    channel = _Channel()
    acks.mark(channel, 1)  # type: ignore[arg-type]
    gate.emitted = 1
    return gate, acks, channel


async def test_an_ack_waits_until_the_events_emitted_with_it_are_confirmed() -> None:
    gate, acks, channel = _marked_while_an_event_is_unconfirmed()
    await asyncio.sleep(0.05)
    # Then nothing is acked while that event is unconfirmed
    assert channel.acks == []
    # And once it is confirmed, the ack goes out
    gate.confirm(1)
    await asyncio.sleep(0.05)
    assert channel.acks == [(1, True)]
    await acks.close()


async def test_without_events_acks_go_out_at_once() -> None:
    acks = AckBatcher()
    acks.start()
    channel: Any = _Channel()
    acks.mark(channel, 1)
    acks.mark(channel, 2)
    await asyncio.sleep(0.05)
    assert channel.acks == [(2, True)]
    await acks.close()


async def test_close_sends_the_acks_it_is_waiting_to_send() -> None:
    gate, acks, channel = _marked_while_an_event_is_unconfirmed()
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(acks.close())
    await asyncio.sleep(0.05)
    gate.confirm(1)
    await closing
    assert channel.acks == [(1, True)]  # not lost by cancelling the waiting flush
