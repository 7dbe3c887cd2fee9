"""The harness side of a party process: start it, follow its progress bar, bound its time.

A party is `python -m bench.parties <name> <json args>`; see `bench.child` for what it
prints. Running each party in its own process keeps the harness's own work (progress bar,
bookkeeping) off the measured event loop, and lets client and server run on separate cores
the way they would in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from rich.progress import Progress, TaskID

__all__ = ["ROOT", "Party", "PartyFailed"]

ROOT = Path(__file__).resolve().parents[1]


class PartyFailed(Exception):
    pass


class Party:
    """One running party process; `await party.ready()`, then `await party.result()`."""

    def __init__(
        self,
        name: str,
        args: dict[str, Any],
        *,
        progress: Progress,
        label: str,
        total: int | None,
        log_dir: Path,
        timeout_s: float,
    ) -> None:
        self.name = name
        self.args = args
        self._progress = progress
        self._label = label
        self._total = total
        self._log_path = log_dir / f"{name}-{os.getpid()}-{id(self):x}.log"
        self._timeout_s = timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._task: TaskID | None = None
        self._ready = asyncio.Event()
        self._result: asyncio.Future[dict[str, Any]] | None = None
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> Party:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self._log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.parties",
                self.name,
                orjson.dumps(self.args).decode(),
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=1 << 20,
            )
        self._task = self._progress.add_task(self._label, total=self._total)
        self._result = asyncio.get_running_loop().create_future()
        self._follower = asyncio.create_task(self._follow())
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def _follow(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        assert self._result is not None and self._task is not None
        result: dict[str, Any] | None = None
        async for line in self._process.stdout:
            try:
                record = orjson.loads(line)
                event = record.pop("event")
            except (orjson.JSONDecodeError, AttributeError, KeyError):
                continue  # a stray print from a library; the protocol lines are JSON

            if event == "ready":
                self._ready.set()
            elif event == "progress":
                self._progress.update(self._task, completed=record["done"])
            elif event == "result":
                result = record
        code = await self._process.wait()
        self._progress.remove_task(self._task)
        if result is None or code != 0:
            tail = self._log_path.read_text(errors="replace")[-3000:]
            error = PartyFailed(f"{self.name} exited with {code} and no result:\n{tail}")
            self._ready.set()
            if not self._result.done():
                self._result.set_exception(error)
        elif not self._result.done():
            self._result.set_result(result)

    async def ready(self) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout=60)
        assert self._result is not None
        if self._result.done():
            self._result.result()  # raises the failure

    async def result(self) -> dict[str, Any]:
        assert self._result is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), timeout=self._timeout_s)
        except TimeoutError:
            await self.kill()
            raise PartyFailed(f"{self.name} did not finish within {self._timeout_s:g}s") from None

    async def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
