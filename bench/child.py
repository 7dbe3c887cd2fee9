"""The child side of a party process: JSON lines on stdout that the harness reads.

`ready` once set up, `progress` a few times a second, `result` once at the end. Anything a
party logs goes to stderr, which the harness keeps in a log file.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["emit", "progress_while", "rss_kib"]


def emit(event: str, **data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps({"event": event, **data}) + b"\n")
    sys.stdout.buffer.flush()


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size in KiB, from /proc (0 where there is no /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def progress_while(done: Callable[[], int], peak_rss: list[int]) -> None:
    """Report `done()` and track peak RSS until cancelled."""
    while True:
        emit("progress", done=done())
        peak_rss[0] = max(peak_rss[0], rss_kib())
        await asyncio.sleep(0.25)


def now() -> float:
    return time.perf_counter()
