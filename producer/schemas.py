"""Request and response bodies of the ingestion API."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from common.delays import MAX_DELAY_S
from common.headers import RESERVED_PREFIX
from common.names import MESSAGE_TYPE_PATTERN

__all__ = [
    "BatchIn",
    "BatchItemResult",
    "BatchOut",
    "MessageAccepted",
    "MessageIn",
    "Problem",
    "document_priorities",
]

_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# The same, minus names starting with `x-` (reserved), as a JSON Schema pattern.
_HEADER_NAME_SCHEMA = (
    r"^([A-WYZa-wyz0-9][A-Za-z0-9_.-]{0,127}|[Xx]([A-Za-z0-9_.][A-Za-z0-9_.-]{0,126})?)$"
)
# All of a message's headers travel in one AMQP frame (128 KiB by default, and a larger
# one closes the whole connection): 64 headers of 128 + 256 characters (up to 74 KiB in
# UTF-8) leave room for the properties and for what retries and quarantine add.
_MAX_HEADER_VALUE_CHARS = 256
_SHORT_STRING = r"^[ -~]+$"


class MessageIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "orders.created",
                    "payload": {"order_id": "A-1001", "amount_cents": 2599},
                    "priority": "high",
                }
            ]
        },
    )

    type: str = Field(
        pattern=MESSAGE_TYPE_PATTERN,
        max_length=200,
        description="Message type: dotted lowercase words, e.g. `orders.created`.",
    )
    payload: JsonValue = Field(description="Any JSON value; handed to the handler as is.")
    priority: str = Field("normal", max_length=32, description="One of the configured priorities.")
    # AMQP carries both as short strings (255 bytes), so printable ASCII only.
    correlation_id: str | None = Field(None, min_length=1, max_length=255, pattern=_SHORT_STRING)
    message_id: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=_SHORT_STRING,
        description="Your own id (printable ASCII), to make retries of this request idempotent "
        "downstream. Generated (UUID) when absent.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="String headers passed to the handler. Names starting with `x-` are reserved.",
        # The rules `_header_names` enforces, in the schema too, so clients can see them.
        json_schema_extra={
            "propertyNames": {"pattern": _HEADER_NAME_SCHEMA},
            "additionalProperties": {"type": "string", "maxLength": _MAX_HEADER_VALUE_CHARS},
        },
    )

    delay_s: float | None = Field(
        None,
        strict=True,  # a number: `false` or `"5"` are mistakes, not a delay of 0 or 5 s
        ge=0,
        le=MAX_DELAY_S,
        description="Deliver no earlier than this many seconds from now (rounded up to whole "
        "seconds; held in the broker, routed by its type when due). Not with `deliver_at`.",
    )
    deliver_at: AwareDatetime | None = Field(
        None,
        description="Deliver no earlier than this time (RFC 3339 with a time zone, not in the "
        f"past, at most {MAX_DELAY_S} s ahead). Not with `delay_s`.",
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> MessageIn:
        if self.delay_s is not None and self.deliver_at is not None:
            raise ValueError("give delay_s or deliver_at, not both")
        return self

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name.lower().startswith(("x-", RESERVED_PREFIX)):
                raise ValueError(f"header {name!r}: names starting with 'x-' are reserved")
            if not _matches(name):
                raise ValueError(f"header {name!r}: use letters, digits, '_', '.', '-' (max 128)")
            if len(value) > _MAX_HEADER_VALUE_CHARS:
                raise ValueError(
                    f"header {name!r}: value longer than {_MAX_HEADER_VALUE_CHARS} characters"
                )
        return headers


def _matches(name: str) -> bool:
    return _HEADER_NAME.fullmatch(name) is not None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[MessageIn] = Field(min_length=1, description="Up to `max_batch_size` messages.")


class MessageAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    message_id: str
    routing_key: str
    deliver_at: datetime | None = Field(
        None, description="When a scheduled message becomes due (absent: delivered now)."
    )


class BatchItemResult(BaseModel):
    index: int
    status: Literal["accepted", "failed"]
    message_id: str
    routing_key: str
    deliver_at: datetime | None = None
    error: str | None = Field(None, description="Why this item was not accepted; retry it.")
    replayed: bool = Field(
        False,
        description="Accepted before with this item's idempotency key: the first answer's "
        "`message_id` and `routing_key`, and nothing published now.",
    )


class BatchOut(BaseModel):
    accepted: int = Field(description="Items accepted, now or before (`replayed`).")
    failed: int
    results: list[BatchItemResult]


class Problem(BaseModel):
    detail: str


def document_priorities(openapi: dict[str, Any], priorities: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI document with `priority` limited to the configured priorities (in place).

    The priorities are configuration, so the model cannot carry them; without this the
    schema promises that any string is accepted where the API answers 422.
    """
    message = openapi.get("components", {}).get("schemas", {}).get("MessageIn", {})
    priority = message.get("properties", {}).get("priority")
    if priority is not None:
        priority["enum"] = list(priorities)
    return openapi
