"""Out-of-range AMQP timestamps decode as absent instead of killing the connection."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from pamqp import decode

from common.frames import tolerate_out_of_range_timestamps


def test_an_out_of_range_timestamp_decodes_as_none() -> None:
    tolerate_out_of_range_timestamps()
    assert decode.by_type(struct.pack(">Q", 2**64 - 1), "timestamp") == (8, None)


def test_an_ordinary_timestamp_is_unchanged() -> None:
    tolerate_out_of_range_timestamps()
    consumed, value = decode.by_type(struct.pack(">Q", 1_700_000_000), "timestamp")
    assert (consumed, value) == (8, datetime.fromtimestamp(1_700_000_000, tz=UTC))


def test_a_timestamp_header_out_of_range_decodes_as_none() -> None:
    tolerate_out_of_range_timestamps()
    entry = b"\x04sent" + b"T" + struct.pack(">Q", 2**64 - 1)
    table = struct.pack(">I", len(entry)) + entry
    assert decode.field_table(table) == (len(table), {"sent": None})
