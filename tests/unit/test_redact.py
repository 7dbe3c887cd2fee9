"""common.redact: passwords in URLs and secret-looking keys never reach a log line."""

from __future__ import annotations

from typing import Any

import pytest

from common.redact import redact_event, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/"),
        ("amqps://svc:p%40ss@rabbit:5671/prod", "amqps://svc:***@rabbit:5671/prod"),
        ("amqp://:only-pw@host/", "amqp://:***@host/"),
        ("amqp://user:@host/", "amqp://user:***@host/"),
        (
            "cannot reach amqp://a:b@h1/ nor http://c:d@h2/x",
            "cannot reach amqp://a:***@h1/ nor http://c:***@h2/x",
        ),
        ("postgresql+psycopg://u:pw@db/app", "postgresql+psycopg://u:***@db/app"),
    ],
)
def test_redact_url_masks_the_password(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "amqp://localhost:5672/",
        "amqp://user@localhost/",
        "http://example.com:8080/path?a=b",
        "no url here: just text",
        "",
    ],
)
def test_redact_url_leaves_text_without_a_password_alone(text: str) -> None:
    assert redact_url(text) == text


def test_redact_url_masks_the_password_whatever_the_scheme_case() -> None:
    assert "s3cret" not in redact_url("AMQP://guest:s3cret@rabbit/")


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "PASSWD",
        "client_secret",
        "token",
        "api_key",
        "ApiKey",
        "Authorization",
    ],
)
def test_secret_looking_keys_are_masked(key: str) -> None:
    event: dict[str, Any] = {"event": "connecting", key: "hunter2"}

    result = redact_event(None, "info", event)

    assert result[key] == "***"
    assert result["event"] == "connecting"


def test_urls_in_any_value_lose_their_password() -> None:
    event: dict[str, Any] = {
        "event": "cannot connect to amqp://svc:pw@rabbit/",
        "url": "amqp://svc:pw@rabbit/",
        "attempt": 3,
        "queue": "hopline.orders.high",
    }

    result = redact_event(None, "error", event)

    assert result == {
        "event": "cannot connect to amqp://svc:***@rabbit/",
        "url": "amqp://svc:***@rabbit/",
        "attempt": 3,
        "queue": "hopline.orders.high",
    }


def test_redact_event_returns_the_same_mapping_for_the_next_processor() -> None:
    event: dict[str, Any] = {"event": "x"}

    assert redact_event(None, "info", event) is event


def test_credentials_are_masked_in_nested_values_and_auth_headers() -> None:
    event = {
        "event": "request.failed",
        "request": {"headers": {"Authorization": "Bearer hpl_secret"}, "url": "http://u:pw@h/"},
        "attempts": ["calling with Bearer hpl_abc.def", "Basic dXNlcjpwYXNz then"],
        "error": "upstream said: Bearer hpl_zzz is not valid",
    }
    redacted = redact_event(None, "info", event)
    text = repr(redacted)
    for secret in ("hpl_secret", "pw@", "hpl_abc.def", "dXNlcjpwYXNz", "hpl_zzz"):
        assert secret not in text, secret
    assert redacted["attempts"] == ["calling with Bearer ***", "Basic *** then"]


def test_a_logged_traceback_is_masked_after_it_is_formatted() -> None:
    import io
    import logging

    import structlog

    from common.logging import configure_logging

    stream = io.BytesIO()
    configure_logging("info", "json")
    structlog.configure(logger_factory=structlog.BytesLoggerFactory(stream))
    try:
        try:
            raise ConnectionError("cannot reach postgresql://app:Pa55word@db/app")
        except ConnectionError:
            structlog.get_logger("t").exception("db.failed")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    line = stream.getvalue().decode()
    assert "db.failed" in line and "Traceback" in line
    assert "Pa55word" not in line
    assert "postgresql://app:***@db/app" in line
