"""Handlers the end-to-end tests run in real consumer processes.

Each call appends one JSON line to `HOPLINE_TEST_RECORD_FILE`, so the test (another
process) can count what was handled, by whom, and how often.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson

from common.envelope import Envelope
from consumer import Registry

registry = Registry("e2e")


def _record(kind: str, payload: Any, envelope: Envelope) -> None:
    line = orjson.dumps(
        {"kind": kind, "payload": payload, "id": envelope.message_id, "pid": os.getpid()}
    )
    with open(os.environ["HOPLINE_TEST_RECORD_FILE"], "ab") as record:
        record.write(line + b"\n")


@registry.handler("jobs.quick")
async def quick(payload: Any, envelope: Envelope) -> None:
    _record("quick", payload, envelope)


@registry.handler("jobs.slow", timeout=30)
async def slow(payload: Any, envelope: Envelope) -> None:
    await asyncio.sleep(float(payload.get("sleep_s", 1.0)))
    _record("slow", payload, envelope)


@registry.handler("jobs.poison")
async def poison(payload: Any, envelope: Envelope) -> None:
    """Kills its whole process, as a segfaulting C extension or an OOM kill would."""
    _record("poison-start", payload, envelope)
    await asyncio.sleep(0.5)  # let the healthy messages around it finish first
    os._exit(17)
