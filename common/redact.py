"""Keep secrets out of logs and error messages."""

from __future__ import annotations

import functools
import re
from collections.abc import MutableMapping
from typing import Any

__all__ = ["redact_event", "redact_url"]

_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@", re.IGNORECASE
)
_SECRET_KEYS = ("password", "passwd", "secret", "token", "api_key", "apikey", "authorization")


def redact_url(text: str) -> str:
    """`amqp://user:pw@host/` -> `amqp://user:***@host/`, anywhere in `text`."""
    return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    # Cached: a process logs the same few dozen keys millions of times (one line per message).
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_KEYS)


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: mask secret-looking keys and passwords inside URLs."""
    for key, value in event.items():
        if _is_secret_key(key):
            event[key] = "***"
        elif isinstance(value, str) and "://" in value:
            event[key] = redact_url(value)
    return event
