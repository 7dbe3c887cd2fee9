"""A consumer's Prometheus metrics (prometheus-client), one registry per worker.

Label values stay bounded: `type` is the handler's registered pattern (a type no handler
takes is `(unknown)`), never a message id; `queue` and `delay` come from the topology.
Queue depths and message ages are RabbitMQ's own (`rabbitmq_prometheus`), not counted here.

    hopline_consumer_messages_total{service,type,priority,outcome,reason}  settled deliveries
    hopline_consumer_handler_duration_seconds{service,type}                 handler runs
    hopline_consumer_handlers_in_flight{service} / _handler_slots{service}  busy / all slots
    hopline_consumer_redeliveries_total{service,priority}                   redelivered flag
    hopline_consumer_retry_copies_total{service,delay}                      retries by delay (le_8s)
    hopline_consumer_settle_seconds{service,kind}                           copy confirm latency
    hopline_consumer_broker_connected{service} / _broker_reconnects_total   the connection
    hopline_consumer_breaker_open{service}                                  outage breaker
    hopline_consumer_consuming{service,queue}                               1 while subscribed
    hopline_consumer_last_delivery_timestamp_seconds{service,queue}         for "stuck" checks
    hopline_consumer_delivery_age_seconds{service,queue}                    the last delivered
                                                                            message's age
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["UNKNOWN_TYPE", "ConsumerMetrics"]

UNKNOWN_TYPE = "(unknown)"
# Handler runs from a millisecond to minutes.
_DURATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SETTLE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ConsumerMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.service = service
        r = self.registry
        self.messages = Counter(
            "hopline_consumer_messages",
            "Deliveries settled, by outcome (ack, retry, quarantine, rejected, "
            "left_for_redelivery) and, for failures, the reason class.",
            ["service", "type", "priority", "outcome", "reason"],
            registry=r,
        )
        self.handler_duration = Histogram(
            "hopline_consumer_handler_duration_seconds",
            "Time a handler ran, whatever its outcome.",
            ["service", "type"],
            buckets=_DURATION_BUCKETS_S,
            registry=r,
        )
        self.in_flight = Gauge(
            "hopline_consumer_handlers_in_flight", "Handlers running now.", ["service"], registry=r
        )
        self.slots = Gauge(
            "hopline_consumer_handler_slots",
            "Handlers that may run at once.",
            ["service"],
            registry=r,
        )
        self.redeliveries = Counter(
            "hopline_consumer_redeliveries",
            "Deliveries the broker marked as redelivered (a consumer died or lost its channel).",
            ["service", "priority"],
            registry=r,
        )
        self.retry_copies = Counter(
            "hopline_consumer_retry_copies",
            "Retry copies confirmed into the delay levels, by delay: le_8s is 5 to 8 s.",
            ["service", "delay"],
            registry=r,
        )
        self.settle = Histogram(
            "hopline_consumer_settle_seconds",
            "Time from publishing a retry or quarantine copy to its confirm.",
            ["service", "kind"],
            buckets=_SETTLE_BUCKETS_S,
            registry=r,
        )
        self.broker_connected = Gauge(
            "hopline_consumer_broker_connected",
            "1 while the connection to RabbitMQ is open.",
            ["service"],
            registry=r,
        )
        self.reconnects = Counter(
            "hopline_consumer_broker_reconnects",
            "Times the connection to RabbitMQ came back after a loss.",
            ["service"],
            registry=r,
        )
        self.breaker_open = Gauge(
            "hopline_consumer_breaker_open",
            "1 while the outage breaker keeps the consumer paused.",
            ["service"],
            registry=r,
        )
        self.consuming = Gauge(
            "hopline_consumer_consuming",
            "1 while the queue has a consumer of this process.",
            ["service", "queue"],
            registry=r,
        )
        self.last_delivery = Gauge(
            "hopline_consumer_last_delivery_timestamp_seconds",
            "When the queue last delivered to this process (Unix time).",
            ["service", "queue"],
            registry=r,
        )
        self.delivery_age = Gauge(
            "hopline_consumer_delivery_age_seconds",
            "Age of the message the queue delivered last (now minus its timestamp): how long "
            "messages wait before a handler takes them.",
            ["service", "queue"],
            registry=r,
        )
        self._delivered_at: dict[str, float] = {}  # queue -> Unix time of its last delivery
        self._waited_s: dict[str, float] = {}  # queue -> how long that message had waited
        self._durations: dict[str, Histogram] = {}
        self._settled: dict[tuple[str, str, str, str], Counter] = {}
        self.slots.labels(service).set(0)
        self.breaker_open.labels(service).set(0)

    # -- recording (label children cached: these run once per message) --------------------

    def delivered(self, queue: str, now_s: float, sent_at_s: float | None) -> None:
        """Two dict stores per message; the gauges read them when Prometheus scrapes."""
        if queue not in self._delivered_at:
            self._expose_queue(queue)
        self._delivered_at[queue] = now_s
        if sent_at_s is not None:
            self._waited_s[queue] = max(0.0, now_s - sent_at_s)

    def _expose_queue(self, queue: str) -> None:
        self._delivered_at[queue] = 0.0
        self.last_delivery.labels(self.service, queue).set_function(
            lambda: self._delivered_at[queue]
        )
        self.delivery_age.labels(self.service, queue).set_function(
            lambda: self._waited_s.get(queue, 0.0)
        )

    def last_delivered_at(self, queue: str) -> float | None:
        """Unix time of the queue's last delivery to this process (None: none yet)."""
        return self._delivered_at.get(queue) or None

    def count_busy_slots(self, busy: Callable[[], float]) -> None:
        """Handlers in flight, read from the scheduler when scraped (no per-message cost)."""
        self.in_flight.labels(self.service).set_function(busy)

    def handler_ran(self, type_label: str, seconds: float) -> None:
        child = self._durations.get(type_label)
        if child is None:
            child = self._durations[type_label] = self.handler_duration.labels(
                self.service, type_label
            )
        child.observe(seconds)

    def settled(self, type_label: str, priority: str, outcome: str, reason: str) -> None:
        key = (type_label, priority, outcome, reason)
        child = self._settled.get(key)
        if child is None:
            child = self._settled[key] = self.messages.labels(
                self.service, type_label, priority, outcome, reason
            )
        child.inc()
