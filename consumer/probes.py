"""A consumer's HTTP endpoint (`HOPLINE_METRICS_PORT`): /metrics, /healthz, /readyz.

    /healthz   200 when the event loop answers (a blocked loop answers nothing: liveness fails)
    /readyz    200 when the worker is connected, consumes every queue it should (or is paused
               on purpose by its outage breaker) and is not stuck; else 503 with the reason
    /metrics   the worker's Prometheus registry (consumer/metrics.py)

It runs in the worker's own event loop (uvicorn as a task), so it answers only while that loop
does, and it never reads or moves a message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consumer.metrics import ConsumerMetrics

__all__ = ["ProbeServer", "probe_app"]

Readiness = Callable[[], Awaitable[str | None]]  # None: ready; else why not


def probe_app(metrics: ConsumerMetrics, readiness: Readiness) -> Starlette:
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        problem = await readiness()
        if problem is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "detail": problem}, status_code=503)

    async def metrics_page(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_page),
        ]
    )


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM and SIGINT to the consumer (its shutdown grace)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ProbeServer:
    """uvicorn serving `probe_app` as a task of the running loop."""

    def __init__(self, app: Starlette, *, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="hopline-probes")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start (e.g. the port is taken)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
