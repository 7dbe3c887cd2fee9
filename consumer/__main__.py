"""`hopline-consumer`: run one consumer service until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from aiormq.exceptions import ChannelAccessRefused

from common.connection import access_refused_error
from common.entrypoint import parse_service_arguments
from common.errors import ConfigurationError, HoplineError
from common.logging import configure_logging, get_logger
from common.settings import load_settings
from common.tracing import configure_tracing
from consumer.loader import load_registry
from consumer.settings import ConsumerSettings
from consumer.worker import Worker

__all__ = ["main", "serve"]


async def serve(settings: ConsumerSettings) -> None:
    if not settings.handlers:
        # No silent default: a service started without its handlers must not run the demo.
        raise ConfigurationError(
            "HOPLINE_HANDLERS is not set: give the service's registry as module:attribute, "
            "e.g. HOPLINE_HANDLERS=billing:registry (the demo: consumer.examples:registry)"
        )
    registry = load_registry(settings.handlers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Worker(settings, registry):
        await stop.wait()
        get_logger("hopline.consumer").info("consumer.stopping", grace_s=settings.shutdown_grace_s)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop where it exists (faster: bench/README.md), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # e.g. Windows: uvloop has no build there
        asyncio.run(main)
    else:
        uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> None:
    parse_service_arguments(
        "hopline-consumer",
        "Run one consumer service (HOPLINE_HANDLERS=module:registry) until SIGTERM or SIGINT.",
        ConsumerSettings,
        argv,
    )
    try:
        settings = load_settings(ConsumerSettings)
        configure_logging(settings.log_level, settings.log_format)
        configure_tracing("hopline-consumer")
        _run(serve(settings))
    except HoplineError as exc:
        print(f"hopline-consumer: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ChannelAccessRefused as exc:  # e.g. consuming a queue outside this user's rights
        print(f"hopline-consumer: error: {access_refused_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
