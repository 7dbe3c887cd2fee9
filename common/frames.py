"""Survive AMQP frames that foreign publishers fill with values Python cannot represent.

pamqp (under aiormq and aio-pika) decodes a `timestamp` property or a timestamp header into a
`datetime`. A publisher may send any 64-bit number there; one beyond the year 9999 makes the
decoder raise, aiormq then closes the whole connection, the robust connection reconnects,
the broker redelivers the same message, and the consumer spins until the delivery limit
dead-letters it, taking every other unacked delivery on that connection through the same
redelivery. `tolerate_out_of_range_timestamps()` makes such a timestamp decode as absent
(`None`) instead, so the message is handled like one that carries no timestamp.
"""

from __future__ import annotations

import datetime

from pamqp import decode

__all__ = ["tolerate_out_of_range_timestamps"]

_original_timestamp = decode.timestamp


def _tolerant_timestamp(value: bytes) -> tuple[int, datetime.datetime | None]:
    try:
        return _original_timestamp(value)
    except (ValueError, OverflowError, OSError):
        if len(value) < 8:
            raise  # truncated: a broken frame, not a value we can skip
        return 8, None


def tolerate_out_of_range_timestamps() -> None:
    """Decode out-of-range AMQP timestamps as None; idempotent."""
    decode.METHODS["timestamp"] = _tolerant_timestamp
    decode.TABLE_MAPPING[b"T"] = _tolerant_timestamp
