"""Header names the pipeline adds (DESIGN.md, "Message envelope") and their bounds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ATTEMPT",
    "CONSUMER",
    "DELIVER_AT",
    "EDITED_FROM",
    "ERROR_MESSAGE",
    "ERROR_TRACEBACK",
    "ERROR_TYPE",
    "FAILED_AT",
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_TRACEBACK_CHARS",
    "ORIGIN_QUEUE",
    "REASON",
    "REPLAYED_AT",
    "REPLAY_COUNT",
    "RESERVED_PREFIX",
    "ROUTING_KEY",
    "bounded",
    "bounded_tail",
    "read_attempt",
    "read_replay_count",
]

RESERVED_PREFIX = "x-hopline-"
ATTEMPT = "x-hopline-attempt"
ORIGIN_QUEUE = "x-hopline-queue"
ROUTING_KEY = "x-hopline-routing-key"
ERROR_TYPE = "x-hopline-error-type"
ERROR_MESSAGE = "x-hopline-error-message"
ERROR_TRACEBACK = "x-hopline-error-traceback"
FAILED_AT = "x-hopline-failed-at"
CONSUMER = "x-hopline-consumer"
# Why the message was quarantined, e.g. "gave up after 5 attempts: ...".
REASON = "x-hopline-reason"
# Set by an operator's replay: how often, when, and (an edited copy) the id it was made from.
REPLAY_COUNT = "x-hopline-replay-count"
REPLAYED_AT = "x-hopline-replayed-at"
EDITED_FROM = "x-hopline-edited-from"
# Not before this time (RFC 3339, or Unix seconds): set on a scheduled message; a foreign
# publisher may set it on a plain publish to hopline.ingress to have it held until then.
DELIVER_AT = "x-hopline-deliver-at"

# A header table must fit in one AMQP frame (128 KiB by default) next to everything else,
# so what we add is bounded no matter how large an exception is.
MAX_ERROR_MESSAGE_CHARS = 1_000
MAX_TRACEBACK_CHARS = 8_000


def bounded(text: str, limit: int) -> str:
    """Keep the head of `text` (an error message's first words matter most)."""
    marker = " …[truncated]"
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return text[:limit]
    return text[: limit - len(marker)] + marker


def bounded_tail(text: str, limit: int) -> str:
    """Keep the tail of `text` (a traceback's innermost frames matter most)."""
    marker = "[truncated]… "
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return text[len(text) - limit :]
    return marker + text[-(limit - len(marker)) :]


def read_attempt(headers: Mapping[str, Any] | None) -> int:
    """Our 1-based attempt counter; absent or unreadable (a foreign publisher) means 1."""
    if not headers:
        return 1
    raw: Any = headers.get(ATTEMPT)
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    try:
        attempt = int(raw)
    except (TypeError, ValueError, OverflowError):
        return 1
    return max(attempt, 1)


def read_replay_count(headers: Mapping[str, Any] | None) -> int:
    """How many times an operator replayed the message; absent or unreadable means 0."""
    raw: Any = (headers or {}).get(REPLAY_COUNT)
    try:
        return max(int(raw), 0) if raw is not None else 0
    except (TypeError, ValueError, OverflowError):
        return 0
