"""The frames publish_batch packs by hand are the bytes pamqp would marshal."""

from __future__ import annotations

import pamqp.frame
from hypothesis import given
from hypothesis import strategies as st
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from common.batch_publish import message_frames

PROPERTIES = Basic.Properties(
    content_type="application/json", delivery_mode=2, message_id="hopline.event"
)
MAX_BODY_FRAME = 64  # small, so that splitting is exercised


def _pamqp_bytes(channel: int, exchange: str, key: str, body: bytes) -> bytes:
    frames: list[object] = [
        Basic.Publish(exchange=exchange, routing_key=key),
        ContentHeader(0, len(body), PROPERTIES),
    ]
    if len(body) < MAX_BODY_FRAME:
        frames.append(ContentBody(body))
    else:
        chunks = range(0, len(body), MAX_BODY_FRAME)
        frames.extend(ContentBody(body[at : at + MAX_BODY_FRAME]) for at in chunks)
    return b"".join(pamqp.frame.marshal(frame, channel) for frame in frames)  # type: ignore[arg-type]


@given(
    channel=st.integers(1, 2047),
    exchange=st.from_regex(r"[A-Za-z0-9_:.-]{0,40}", fullmatch=True),  # what pamqp accepts
    key=st.text(max_size=60),
    body=st.binary(max_size=300),
)
def test_packed_frames_equal_pamqp_marshalling(
    channel: int, exchange: str, key: str, body: bytes
) -> None:
    packed = message_frames(channel, exchange, key, PROPERTIES.marshal(), body, MAX_BODY_FRAME)
    assert packed == _pamqp_bytes(channel, exchange, key, body)


def test_a_routing_key_over_255_bytes_is_refused_not_truncated() -> None:
    try:
        message_frames(1, "hopline.events", "k" * 256, PROPERTIES.marshal(), b"{}", 1024)
    except ValueError as exc:
        assert "255" in str(exc)
    else:
        raise AssertionError("a 256-byte routing key was packed")
