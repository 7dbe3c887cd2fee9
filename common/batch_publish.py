"""Publish a batch of small messages on one aiormq channel: one write, one wait, a confirm each.

aiormq's `basic_publish` spends, on every message, a channel lock, a timeout scope, three
pamqp frame objects marshalled generically, a future registered in two future stores and an
entry in the connection's write queue. For lifecycle events (small, alike, two per handled
message) that was most of a consumer's CPU (bench/README.md, "Lifecycle events and
status"). `publish_batch` does the same wire work for a whole batch at once:

- the frames are packed by hand (`struct`): the method frame is cached per routing key and
  the properties are marshalled once; tests/unit/test_batch_frames.py checks the bytes
  against pamqp's own marshalling;
- the batch is one entry of the write queue, put under the channel's lock, so its delivery
  tags are consecutive and no other publisher on the channel interleaves;
- each delivery tag gets a `_Slot` in aiormq's `channel.confirmations` where aiormq would put
  a future: aiormq settles it on the broker's ack or nack (`multiple` included), and the
  batch's one future (registered with the channel, so a closing channel fails it) resolves
  when every slot is settled.

The result is one bool per message: True when the broker confirmed it (ack), False when it
refused it (nack), or when the channel closed or `timeout_s` passed first (then the message
may or may not have arrived: at-least-once callers publish it again).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from functools import lru_cache

from aiormq.abc import AbstractChannel, ChannelFrame
from aiormq.channel import Channel
from pamqp.commands import Basic

from common.teardown import connection_torn_down_as

__all__ = ["publish_batch"]

_FRAME_END = b"\xce"
_METHOD, _HEADER, _BODY = 1, 2, 3
_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_HEADER_HEAD = struct.Struct(">HHQ")  # class (basic), weight (0), body size


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HEAD.pack(kind, channel, len(payload)) + payload + _FRAME_END


def _short_string(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"an AMQP short string holds at most 255 bytes, not {len(raw)}")
    return bytes((len(raw),)) + raw


@lru_cache(maxsize=1024)
def _method_frame(channel: int, exchange: str, routing_key: str) -> bytes:
    """basic.publish: class 60, method 40, ticket 0, exchange, routing key, no flags."""
    payload = b"\x00\x3c\x00\x28\x00\x00" + _short_string(exchange)
    return _frame(_METHOD, channel, payload + _short_string(routing_key) + b"\x00")


def message_frames(
    channel: int,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    max_body_frame: int,
) -> bytes:
    """The wire bytes of one basic.publish: method, content header and body frames.
    `properties` is `Basic.Properties.marshal()`; bodies over `max_body_frame` bytes are
    split the way aiormq splits them."""
    parts = [
        _method_frame(channel, exchange, routing_key),
        _frame(_HEADER, channel, _HEADER_HEAD.pack(60, 0, len(body)) + properties),
    ]
    if len(body) < max_body_frame:
        parts.append(_frame(_BODY, channel, body))
    else:
        parts.extend(
            _frame(_BODY, channel, body[at : at + max_body_frame])
            for at in range(0, len(body), max_body_frame)
        )
    return b"".join(parts)


class _Batch:
    __slots__ = ("confirmed", "done", "waiting")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.confirmed = [False] * size
        self.waiting = size
        self.done = done

    def settle(self, index: int, confirmed: bool) -> None:
        self.confirmed[index] = confirmed
        self.waiting -= 1
        if not self.waiting and not self.done.done():
            self.done.set_result(None)


class _Slot:
    """Where aiormq expects a publish's future: it calls done(), cancelled(), set_result()
    with the broker's Basic.Ack, or set_exception() for a nack."""

    __slots__ = ("_batch", "_index", "_settled")

    def __init__(self, batch: _Batch, index: int) -> None:
        self._batch = batch
        self._index = index
        self._settled = False

    def done(self) -> bool:
        return self._settled

    def cancelled(self) -> bool:
        # True once abandoned (timeout, closed channel): aiormq then logs a late confirm at
        # debug level instead of warning about it.
        return self._settled

    def set_result(self, frame: object) -> None:
        self._settle(isinstance(frame, Basic.Ack))

    def set_exception(self, exc: BaseException) -> None:
        self._settle(False)

    def abandon(self) -> None:
        self._settled = True

    def _settle(self, confirmed: bool) -> None:
        if not self._settled:
            self._settled = True
            self._batch.settle(self._index, confirmed)


async def publish_batch(
    channel: AbstractChannel,
    exchange: str,
    messages: Sequence[tuple[str, bytes]],
    properties: Basic.Properties,
    timeout_s: float,
) -> list[bool]:
    """Publish `(routing_key, body)` pairs with the same `properties` on a channel opened
    with publisher confirms; one bool per message, True when the broker confirmed it."""
    if not messages:
        return []
    if not isinstance(channel, Channel):  # its confirm table and write queue are used
        raise TypeError(f"publish_batch needs an aiormq Channel, not {type(channel).__name__}")
    if not channel.publisher_confirms:
        raise ValueError("publish_batch needs a channel opened with publisher confirms")
    marshalled = properties.marshal()
    payload = b"".join(
        message_frames(channel.number, exchange, key, marshalled, body, channel.max_content_size)
        for key, body in messages
    )
    done: asyncio.Future[None] = channel.create_future()
    batch = _Batch(len(messages), done)
    slots = [_Slot(batch, index) for index in range(len(messages))]
    try:
        with connection_torn_down_as():
            # The deadline covers the lock and the write queue too, not only the confirms: a
            # connection that died leaves its write queue full for ever, and a put outside
            # the deadline waited on it for ever, holding the channel's lock.
            async with asyncio.timeout(timeout_s):
                await _write(channel, slots, payload)
                await done
    except Exception:  # timed out, channel closed, connection torn down (common.teardown)
        pass  # the slots not settled by now count as not confirmed
    finally:
        # Left in aiormq's table: a late confirm then finds its slot and is ignored quietly.
        for slot in slots:
            slot.abandon()
    return batch.confirmed


async def _write(channel: Channel, slots: list[_Slot], payload: bytes) -> None:
    """Give the batch consecutive delivery tags, a slot each in aiormq's confirm table, and
    put its frames on the write queue, all under the channel's lock. A put that does not
    happen gives the tags back before the lock is released (as aiormq's basic_publish does):
    the broker numbers the next publish as if this batch never existed."""
    async with channel.lock:
        first_tag = channel.delivery_tag + 1
        for tag, slot in enumerate(slots, start=first_tag):
            channel.confirmations[tag] = slot  # type: ignore[assignment]  # duck-typed future
        channel.delivery_tag += len(slots)
        try:
            await channel.write_queue.put(ChannelFrame(payload=payload, should_close=False))
        except BaseException:
            channel.delivery_tag -= len(slots)
            for tag in range(first_tag, first_tag + len(slots)):
                channel.confirmations.pop(tag, None)
            raise
