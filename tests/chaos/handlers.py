"""The handler the fault scenarios run in real consumer processes.

Each handled message appends one JSON line (its number, the process, the time) to
`HOPLINE_TEST_RECORD_FILE`, after the work and before the ack: a line is a message handled.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson

from consumer import Registry

registry = Registry("chaos")


@registry.handler("chaos.work", timeout=60)
async def work(payload: Any) -> None:
    await asyncio.sleep(float(payload.get("sleep_s", 0)))
    line = orjson.dumps({"n": payload["n"], "pid": os.getpid(), "t": time.time()})
    with open(os.environ["HOPLINE_TEST_RECORD_FILE"], "ab") as record:
        record.write(line + b"\n")
