"""The real producer (`python -m producer`, uvicorn) as a process, ready when /readyz is."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.child import rss_kib
from bench.runner import ROOT
from deploy.local.broker import free_port

__all__ = ["ProducerProcess", "producer_process"]


@dataclass(frozen=True)
class ProducerProcess:
    base_url: str
    pid: int

    def rss_kib(self) -> int:
        return rss_kib(self.pid)


@asynccontextmanager
async def producer_process(
    amqp_url: str,
    queue_type: str,
    log_path: Path,
    *,
    ready_path: str = "/readyz",
    **settings: str,
) -> AsyncIterator[ProducerProcess]:
    """A producer process; `settings` are more `HOPLINE_*` variables, and it counts as up
    once `ready_path` answers 200 (`/healthz` for one that needs no broker)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOPLINE_")}
    env.update(
        {
            "HOPLINE_AMQP_URL": amqp_url,
            "HOPLINE_QUEUE_TYPE": queue_type,
            "HOPLINE_PORT": str(port),
            "HOPLINE_LOG_FORMAT": "json",
            "HOPLINE_INGESTION_OPEN": "true",
            # A store of this run's own (the default file under the checkout would grow
            # from run to run and carry earlier idempotency keys)
            "HOPLINE_STATUS_URL": f"sqlite:///{log_path.parent / f'status-{port}.sqlite3'}",
            "PYTHONPATH": str(ROOT),
            **settings,
        }
    )
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "producer",
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base_url, process, ready_path)
        yield ProducerProcess(base_url, process.pid)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_ready(base_url: str, process: asyncio.subprocess.Process, ready_path: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"the producer exited with {process.returncode}")
            try:
                if (await client.get(ready_path)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the producer was not ready within 30 s")
