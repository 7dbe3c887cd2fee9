"""structlog, configured once per process: JSON lines off a terminal, console on one."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Literal

import orjson
import structlog

from common.redact import redact_event
from common.tracing import current_trace_ids

__all__ = ["configure_logging", "dumps_json_line", "get_logger"]

get_logger = structlog.get_logger


def dumps_json_line(event: Any, **kwargs: Any) -> bytes:
    """orjson, which renders a consumer's per-message line several times faster than `json`;
    the standard library for what orjson refuses (integers beyond 64 bits, which a foreign
    message may carry into a logged header; a lone surrogate in an error text), ASCII-escaped
    so that even a surrogate encodes, and a log line never fails."""
    try:
        return orjson.dumps(event, default=kwargs.get("default"))
    except orjson.JSONEncodeError:
        return json.dumps(event, default=kwargs.get("default", repr)).encode()


def add_trace_ids(_logger: Any, _method: str, event: Any) -> Any:
    """The current span's ids on every line written inside it (when tracing is on)."""
    ids = current_trace_ids()
    if ids is not None:
        event["trace_id"], event["span_id"] = ids
    return event


def configure_logging(
    level: str = "info", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor
    logger_factory: Any
    if use_console:
        # Colours only for a person at a terminal: in a pipe or a file they are noise.
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        logger_factory = structlog.PrintLoggerFactory(sys.stderr)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=dumps_json_line)
        logger_factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_event,  # after formatting: a traceback's text is masked too
            add_trace_ids,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    # aio-pika and uvicorn log through the standard library; keep their warnings visible ...
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    # ... except aio-pika's and aiormq's line (and traceback) for every reconnect attempt
    # during an outage: common.connection says "lost" and "back" once each instead.
    quiet = logging.DEBUG if level == "debug" else logging.ERROR
    for noisy in ("aio_pika", "aiormq"):
        logging.getLogger(noisy).setLevel(quiet)
