"""The producer's Prometheus metrics (prometheus-client), one registry per app.

    hopline_producer_requests_total{route,status}        answered requests
    hopline_producer_publish_seconds                      publish to broker confirm
    hopline_producer_unavailable_total{cause}             503s: broker_unavailable, not_confirmed
    hopline_producer_batch_messages                       messages per batch request

`route` is one of the producer's own paths (anything else is `other`): bounded labels.
"""

from __future__ import annotations

import time

import aio_pika
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import BrokerUnavailableError, PublishNotConfirmedError
from producer.publisher import Publisher

__all__ = ["CONTENT_TYPE_LATEST", "MeasuredPublisher", "ProducerMetrics", "RequestCounter"]

_ROUTES = ("/v1/messages/batch", "/v1/messages", "/healthz", "/readyz", "/metrics", "/docs")
_PUBLISH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000)


def route_label(path: str) -> str:
    if path.startswith("/v1/admin") or path == "/admin":
        return "admin"
    return next((route for route in _ROUTES if path == route), "other")


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hopline_producer_requests", "HTTP requests answered.", ["route", "status"], registry=r
        )
        self.publish = Histogram(
            "hopline_producer_publish_seconds",
            "Time from publishing a message to the broker's confirm.",
            buckets=_PUBLISH_BUCKETS_S,
            registry=r,
        )
        self.unavailable = Counter(
            "hopline_producer_unavailable",
            "Messages answered 503, by cause.",
            ["cause"],
            registry=r,
        )
        for cause in ("broker_unavailable", "not_confirmed"):
            self.unavailable.labels(cause)  # present at 0 from the start: alerts can use rate()
        self.batch = Histogram(
            "hopline_producer_batch_messages",
            "Messages per batch request.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )

    def exposition(self) -> bytes:
        return _generate(self.registry)


class RequestCounter:
    """ASGI middleware: one count per answered request, by route and status."""

    def __init__(self, app: ASGIApp, *, metrics: ProducerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_label(scope["path"])

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


class MeasuredPublisher:
    """A `Publisher` that times each publish to its confirm and counts the ones that fail
    by cause; everything else is the wrapped publisher's."""

    def __init__(self, inner: Publisher, metrics: ProducerMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    @property
    def ready(self) -> bool:
        return self._inner.ready

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def publish(
        self, message: aio_pika.Message, routing_key: str, delay_s: float | None = None
    ) -> None:
        started = time.monotonic()
        try:
            await self._inner.publish(message, routing_key, delay_s)
        except BrokerUnavailableError:
            self._metrics.unavailable.labels("broker_unavailable").inc()
            raise
        except PublishNotConfirmedError:
            self._metrics.unavailable.labels("not_confirmed").inc()
            raise
        self._metrics.publish.observe(time.monotonic() - started)
