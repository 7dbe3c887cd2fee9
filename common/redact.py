"""Keep secrets out of logs and error messages."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["redact_event", "redact_text", "redact_url"]

_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@", re.IGNORECASE
)
_SECRET_KEYS = ("password", "passwd", "secret", "token", "api_key", "apikey", "authorization")


# Credentials after an HTTP auth scheme, e.g. in a logged header or an exception's text.
_AUTH_CREDENTIALS = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact_url(text: str) -> str:
    """`amqp://user:pw@host/` -> `amqp://user:***@host/`, anywhere in `text`."""
    return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)


def redact_text(text: str) -> str:
    """Passwords in URLs and `Bearer ...` / `Basic ...` credentials, anywhere in `text` (an
    error message, a traceback); cheap when there is nothing to mask."""
    if "://" in text:
        text = redact_url(text)
    if "earer " in text or "asic " in text or "EARER " in text or "ASIC " in text:
        text = _AUTH_CREDENTIALS.sub(r"\1 ***", text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: "***" if _is_secret_key(str(k)) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    # Cached: a process logs the same few dozen keys millions of times (one line per message).
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_KEYS)


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: mask secret-looking keys, passwords inside URLs and auth
    credentials, in nested values too. It runs after exceptions are formatted, so a
    traceback is masked as well."""
    for key, value in event.items():
        if _is_secret_key(key):
            event[key] = "***"
        elif isinstance(value, str):
            if "://" in value or "earer " in value or "asic " in value:
                event[key] = redact_text(value)
        elif isinstance(value, Mapping | list | tuple):
            event[key] = _redact_value(value)
    return event
