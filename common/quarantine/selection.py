"""Which failed messages an operator means, and how they group (pure)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from common.quarantine.failed import FailedMessage

__all__ = [
    "Group",
    "Selection",
    "group_id",
    "group_messages",
    "message_summary",
    "parse_duration",
    "selection_from_filters",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `7d`, `1w` -> timedelta; ValueError with the accepted forms."""
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"duration {text!r} is not like 90s, 15m, 2h, 7d or 1w")
    return timedelta(seconds=float(found[1]) * _UNIT_S[found[2]])


def group_id(error_type: str, message_type: str | None) -> str:
    """A short, stable name for a (error type, message type) group, usable on the CLI."""
    key = f"{error_type}\0{message_type or ''}".encode()
    return hashlib.sha256(key).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Selection:
    """Filters; every one that is set must match. An empty selection matches everything."""

    ids: frozenset[str] = frozenset()
    message_type: str | None = None
    error: str | None = None  # substring of error type or message, case-insensitive
    since: timedelta | None = None
    group: str | None = None
    id_prefixes: frozenset[str] = frozenset()  # ids as a person types them, like git's

    def matches(self, message: FailedMessage, *, now: datetime | None = None) -> bool:
        if self.ids and message.id not in self.ids:
            return False
        if self.id_prefixes and not any(message.id.startswith(p) for p in self.id_prefixes):
            return False
        if self.message_type and message.message_type != self.message_type:
            return False
        if self.error:
            needle = self.error.lower()
            haystack = f"{message.error_type}\n{message.error_message}\n{message.reason}".lower()
            if needle not in haystack:
                return False
        if self.since is not None:
            failed_at = message.failed_at or message.timestamp
            if failed_at is None or failed_at < (now or datetime.now(UTC)) - self.since:
                return False
        return not (self.group and group_id(message.error_type, message.message_type) != self.group)

    @property
    def is_everything(self) -> bool:
        return self == Selection()


def selection_from_filters(
    ids: Iterable[str] | None = None,
    message_type: str | None = None,
    error: str | None = None,
    since: str | None = None,
    group: str | None = None,
) -> Selection:
    """The selection an operator's filters mean (CLI options, admin API query or body);
    ValueError naming `since` when it is not a duration."""
    try:
        window = parse_duration(since) if since else None
    except ValueError as exc:
        raise ValueError(f"since: {exc}") from None
    return Selection(frozenset(ids or ()), message_type, error, window, group)


def message_summary(queue: str, message: FailedMessage) -> dict[str, Any]:
    """One line of a listing, as the CLI's `--json` and the admin API give it."""
    return {
        "id": message.id,
        "queue": queue,
        "type": message.message_type,
        "origin_queue": message.origin_queue,
        "routing_key": message.routing_key,
        "attempts": message.attempts,
        "error_type": message.error_type,
        "error": message.error_first_line,
        "reason": message.reason,
        "failed_at": message.failed_at,
        "replay_count": message.replay_count,
        "failed_again_after_replay": message.failed_again_after_replay,
    }


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    error_type: str
    message_type: str | None
    count: int
    oldest: datetime | None
    newest: datetime | None
    failed_again: int  # of which failed again after a replay
    example_error: str

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def group_messages(messages: Iterable[FailedMessage]) -> list[Group]:
    """Failures by (error type, message type), largest group first."""
    buckets: dict[tuple[str, str | None], list[FailedMessage]] = {}
    for message in messages:
        buckets.setdefault((message.error_type, message.message_type), []).append(message)
    groups = []
    for (error_type, message_type), members in buckets.items():
        times = [m.failed_at or m.timestamp for m in members if (m.failed_at or m.timestamp)]
        groups.append(
            Group(
                id=group_id(error_type, message_type),
                error_type=error_type,
                message_type=message_type,
                count=len(members),
                oldest=min(times) if times else None,  # type: ignore[type-var]
                newest=max(times) if times else None,  # type: ignore[type-var]
                failed_again=sum(1 for m in members if m.failed_again_after_replay),
                example_error=members[0].error_first_line,
            )
        )
    return sorted(groups, key=lambda g: (-g.count, g.error_type, g.message_type or ""))
