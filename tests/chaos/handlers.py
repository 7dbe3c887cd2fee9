"""The handler the fault scenarios run in real consumer processes.

Each handled message appends one JSON line (its number, the process, the time) to
`HOPLINE_TEST_RECORD_FILE`, after the work and before the ack: a line is a message handled.
A payload may ask for a failure (tests/support/chaos.py): `fail_first` raises a
RetryableError on attempt 1 (the message then waits in the delay levels), `exit` ends the process
on every attempt (a poison message).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson

from common.envelope import Envelope
from consumer import Registry, RetryableError

registry = Registry("chaos")


@registry.handler("chaos.work", timeout=60)
async def work(payload: Any, envelope: Envelope) -> None:
    if payload.get("exit"):
        os._exit(3)  # as a segfault or an OOM kill would: no cleanup, no acks
    if payload.get("fail_first") and envelope.attempt == 1:
        raise RetryableError(f"transient failure of message {payload['n']} on attempt 1")
    await asyncio.sleep(float(payload.get("sleep_s", 0)))
    line = orjson.dumps({"n": payload["n"], "pid": os.getpid(), "t": time.time()})
    with open(os.environ["HOPLINE_TEST_RECORD_FILE"], "ab") as record:
        record.write(line + b"\n")
