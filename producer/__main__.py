"""`hopline-producer`: serve the ingestion API with uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import uvicorn

from common.entrypoint import parse_service_arguments
from common.errors import HoplineError
from common.logging import configure_logging
from common.settings import load_settings
from common.tracing import configure_tracing
from producer.app import create_app
from producer.http_limits import guarded_protocol
from producer.settings import ProducerSettings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    parse_service_arguments(
        "hopline-producer",
        "Serve the HTTP ingestion API (and, with HOPLINE_ADMIN_TOKEN, the admin API).",
        ProducerSettings,
        argv,
    )
    try:
        settings = load_settings(ProducerSettings)
    except HoplineError as exc:
        print(f"hopline-producer: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.serve == "admin" and settings.admin_token is None:
        print(
            "hopline-producer: error: HOPLINE_SERVE=admin needs HOPLINE_ADMIN_TOKEN "
            "(e.g. openssl rand -hex 24)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if settings.serve != "admin" and not settings.api_keys and not settings.ingestion_open:
        # Open ingestion is a choice someone makes, never a default a deployment ships with.
        print(
            "hopline-producer: error: HOPLINE_API_KEYS is empty: make a key with `hopline "
            "apikey --name NAME` and put its entry there, or set HOPLINE_INGESTION_OPEN=true to "
            "accept messages from anyone who reaches this port",
            file=sys.stderr,
        )
        raise SystemExit(2)
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing("hopline-producer")
    try:
        app = create_app(settings)
    except HoplineError as exc:  # e.g. an unreadable HOPLINE_ASYNCAPI_FILE
        print(f"hopline-producer: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        http=guarded_protocol(
            header_timeout_s=settings.http_header_timeout_s,
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
        ),
        timeout_keep_alive=max(1, round(settings.http_keep_alive_s)),
        limit_concurrency=settings.http_max_connections,
    )


if __name__ == "__main__":
    main()
