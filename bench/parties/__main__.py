"""`python -m bench.parties <name> <json args>`: run one party on the chosen event loop."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

import orjson

from bench.child import emit

_PARTIES = {
    "raw_publish": "bench.parties.raw:publish",
    "raw_consume": "bench.parties.raw:consume",
    "aiormq_consume": "bench.parties.raw:aiormq_consume",
    "hopline_consumer": "bench.parties.consumer:run",
    "status_recorder": "bench.parties.status:recorder",
    "http_load": "bench.parties.http_load:run",
    "dramatiq_fill": "bench.parties.peers:dramatiq_fill",
    "dramatiq_drain": "bench.parties.peers:dramatiq_drain",
    "celery_fill": "bench.parties.peers:celery_fill",
    "celery_drain": "bench.parties.peers:celery_drain",
    "faststream_fill": "bench.parties.peers:faststream_fill",
    "faststream_drain": "bench.parties.peers:faststream_drain",
    "faststream_quiet_fill": "bench.parties.peers:faststream_fill",
    "faststream_quiet_drain": "bench.parties.peers:faststream_drain",
}


def main() -> None:
    name, raw_args = sys.argv[1], sys.argv[2]
    args: dict[str, Any] = orjson.loads(raw_args)
    module, _, attribute = _PARTIES[name].partition(":")
    party: Callable[[dict[str, Any]], Any] = getattr(importlib.import_module(module), attribute)
    if not inspect.iscoroutinefunction(party):
        result = party(args)  # Dramatiq and Celery are synchronous
    elif args.get("loop") == "uvloop":
        import uvloop

        result = uvloop.run(party(args))
    else:
        result = asyncio.run(party(args))
    emit("result", **result)


if __name__ == "__main__":
    main()
