"""hopline services as real processes, the way `make run` and containers start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.support.wait import wait_until

__all__ = ["read_records", "service_process", "stop_process", "wait_http_ready"]

ROOT = Path(__file__).resolve().parents[2]


def _environment(amqp_url: str, extra: dict[str, str], run_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOPLINE_")}
    env.update(
        {
            "HOPLINE_AMQP_URL": amqp_url,
            # A producer's status store: in the test's own directory, never the checkout's.
            "HOPLINE_STATUS_URL": f"sqlite:///{run_dir / 'status.sqlite3'}",
            "HOPLINE_LOG_FORMAT": "json",
            "HOPLINE_RETRY_DELAYS_S": "1",
            "HOPLINE_INGESTION_OPEN": "true",  # tests that need keys set HOPLINE_API_KEYS
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


@contextmanager
def service_process(
    module: str, amqp_url: str, log_path: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m <module>` with HOPLINE_* from `env`; killed at exit if still running."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            env=_environment(amqp_url, env, log_path.parent),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    """SIGTERM, then wait for the exit code."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout_s)


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


async def wait_http_ready(port: int, timeout_s: float = 20) -> None:
    """Until the producer on `port` answers /readyz with 200 (broker reached, topology declared)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, timeout_s=timeout_s, interval_s=0.2, message="producer not ready")
