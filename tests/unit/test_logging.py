"""common.logging: a JSON log line is always produced, whatever a message carried into it."""

from __future__ import annotations

import json
from typing import Any

from common.logging import dumps_json_line


def test_a_plain_event_is_one_json_document() -> None:
    line = dumps_json_line({"event": "message.handled", "outcome": "ack", "attempt": 1})

    assert json.loads(line) == {"event": "message.handled", "outcome": "ack", "attempt": 1}


def test_an_integer_beyond_64_bits_is_written_exactly() -> None:
    # A foreign publisher's header can hold any integer; orjson refuses those past 64 bits.
    huge = 2**80 + 1

    line = dumps_json_line({"event": "x", "attempt": huge})

    assert json.loads(line)["attempt"] == huge


def test_objects_json_cannot_express_go_through_the_fallback() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    def fallback(value: Any) -> str:
        return repr(value)

    line = dumps_json_line({"event": "x", "thing": Opaque()}, default=fallback)

    assert json.loads(line)["thing"] == "<opaque>"


def test_non_ascii_text_stays_readable() -> None:
    line = dumps_json_line({"event": "x", "message_id": "Überweisung-✓"})

    assert "Überweisung-✓".encode() in line


def test_a_lone_surrogate_in_a_value_still_makes_a_line() -> None:
    # An error text decoded with surrogateescape can carry one; orjson and UTF-8 refuse it.
    line = dumps_json_line({"event": "x", "error": "bad byte \udcff here"})

    assert json.loads(line)["error"] == "bad byte \udcff here"
