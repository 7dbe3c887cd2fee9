"""The archive form of a failed message: one JSON line with the body and every property,
so `import` can put a message back exactly as it was."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import aio_pika
import orjson

from common.quarantine.failed import PROPERTY_NAMES, FailedMessage, parse_time

__all__ = ["from_archive_line", "json_safe", "open_archive", "to_archive_line"]


def json_safe(value: Any) -> Any:
    """AMQP header values (bytes, datetimes, decimals, nested tables) as plain JSON."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def to_archive_line(message: FailedMessage, *, queue: str) -> bytes:
    """One JSON line; a non-UTF-8 body is kept as base64."""
    try:
        body: str = message.body.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        body = base64.b64encode(message.body).decode("ascii")
        encoding = "base64"
    record = {
        "id": message.id,
        "queue": queue,
        "routing_key": message.routing_key,
        "properties": json_safe(message.properties),
        "timestamp": message.timestamp.isoformat() if message.timestamp else None,
        "headers": json_safe(message.headers),
        "body": body,
        "body_encoding": encoding,
        "archived_at": datetime.now(UTC).isoformat(),
    }
    return orjson.dumps(record) + b"\n"


def from_archive_line(line: bytes | str) -> tuple[str, aio_pika.Message, str]:
    """(queue it was archived from, the message as it was, its id); ValueError if invalid."""
    try:
        record = orjson.loads(line)
        raw_body = record["body"]
        body = (
            base64.b64decode(raw_body)
            if record.get("body_encoding") == "base64"
            else raw_body.encode("utf-8")
        )
        properties = record.get("properties") or {}
        message = aio_pika.Message(
            body,
            headers=record.get("headers") or {},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=parse_time(record.get("timestamp")),
            **{name: properties.get(name) for name in PROPERTY_NAMES},
        )
        return str(record["queue"]), message, str(record["id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not an archive line: {exc}") from exc


def open_archive(path: Path) -> BinaryIO:
    """Open an archive to append to, readable by its owner only: archived messages carry
    payloads and error texts."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file made with a wider mode is narrowed
    return os.fdopen(descriptor, "ab")
