"""Lifecycle events for tests: `event("started", attempt=2)` with sensible defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from common.events import Event

__all__ = ["T0", "event"]

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(
    name: Any,
    *,
    message_id: str = "m-1",
    service: str = "demo",
    second: float = 0,
    attempt: int = 1,
    **fields: Any,
) -> Event:
    return Event(
        event=name,
        message_id=message_id,
        service="producer" if name == "accepted" else service,
        type="orders.created",
        routing_key="high.orders.created",
        attempt=attempt,
        at=T0 + timedelta(seconds=second),
        **fields,
    )
