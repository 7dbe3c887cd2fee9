"""The consumer runtime: declare the service's queues, consume them by priority, settle.

Lifecycle: `start()` connects, declares and begins consuming; `stop()` cancels the
consumers (no new deliveries), lets buffered and running handlers finish within the grace
period and closes the connection. Whatever is still unacked then is redelivered by the
broker to another consumer: nothing is lost, at worst handled twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from structlog.contextvars import bind_contextvars, reset_contextvars

from common.connection import broker_version, connect
from common.copies import DeliveryContext
from common.declare import declare_topology
from common.delays import delay_bucket, held_for
from common.emitter import EventEmitter
from common.envelope import Envelope, decode_delivery, original_routing_key
from common.errors import UndecodableMessageError
from common.headers import read_attempt
from common.legacy_tiers import find_legacy_tiers
from common.logging import get_logger
from common.topology import Topology, service_topology
from common.tracing import process_span, tracing_enabled
from consumer.acks import AckBatcher
from consumer.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from consumer.deadlines import Deadlines
from consumer.dedupe import Dedupe
from consumer.delivery import Delivery
from consumer.dispatch import run_handler, undecodable, unknown_type
from consumer.isolation import SuspectGate, probation
from consumer.lifecycle import Lifecycle
from consumer.limits import HandlerLimits
from consumer.metrics import UNKNOWN_TYPE, ConsumerMetrics
from consumer.policy import (
    DEFAULT_MAX_ATTEMPTS,
    Ack,
    Decision,
    Delays,
    Outcome,
    OutcomeKind,
    Quarantine,
    Retry,
    RetryPolicy,
    decide,
)
from consumer.probes import ProbeServer, probe_app
from consumer.registry import HandlerSpec, Registry
from consumer.scheduler import PrioritySlots
from consumer.settings import ConsumerSettings
from consumer.settler import Settled, Settler
from consumer.subscription import Subscription

__all__ = ["Worker"]

_log = get_logger("hopline.consumer")


class Worker:
    def __init__(
        self,
        settings: ConsumerSettings,
        registry: Registry,
        *,
        consumer_name: str | None = None,
        on_settled: Callable[[str | None, Decision, Outcome], None] | None = None,
    ) -> None:
        """`on_settled(message_id, decision, outcome)` learns each delivery's end once it is
        settled (consumer.pytest_plugin waits on it)."""
        self.settings = settings
        self._on_settled = on_settled
        self.registry = registry
        self.service = registry.service
        self.consumer_name = consumer_name or f"{self.service}@{socket.gethostname()}:{os.getpid()}"
        self._default_schedule = Delays(tuple(settings.retry_delays_s))
        self._default_policy = RetryPolicy(DEFAULT_MAX_ATTEMPTS, self._default_schedule)
        # Built once: `settings.priority_order` makes a new tuple on every call, and decoding
        # needs it for every delivery.
        self._priorities = settings.priority_order
        self._policies = {spec.type_pattern: self._policy_for(spec) for spec in registry.specs}
        self._hooks = registry.hooks
        self._limits = HandlerLimits(registry, self._priorities)
        self._slots = PrioritySlots(settings.concurrency)
        self._gate = SuspectGate()
        self.metrics = ConsumerMetrics(self.service)
        self._probes: ProbeServer | None = None
        # Decided once, at start: a span per handler run only when a tracer provider is set
        # (checking it per message cost about a sixth of a no-op drain).
        self._tracing = False
        self._consuming_since = 0.0  # Unix time: "no delivery yet" counts from here
        self.metrics.count_busy_slots(lambda: self._slots.busy)
        self._deadlines = Deadlines()
        self._connection: AbstractRobustConnection | None = None
        self._topology: Topology | None = None
        self._settler: Settler | None = None
        emitter = (
            EventEmitter(settings, name=f"hopline-consumer {self.consumer_name} events")
            if settings.events_enabled
            else None
        )
        self._acks = AckBatcher(gate=emitter)  # acks wait for their events' confirms
        self._subscriptions: list[Subscription] = []
        self._breaker = _breaker(settings)
        self._pausing: asyncio.Task[None] | None = None
        self._lifecycle = Lifecycle(
            emitter, self.service, settings.max_result_bytes, settings.events_started_after_s
        )
        self._dedupe = Dedupe(settings, registry)
        self.ready = asyncio.Event()

    def _policy_for(self, spec: HandlerSpec) -> RetryPolicy:
        return RetryPolicy(spec.max_attempts, spec.retry or self._default_schedule)

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        settings = self.settings
        self._tracing = tracing_enabled()
        self._connection = connection = await connect(
            settings, name=f"hopline-consumer {self.consumer_name}"
        )
        try:
            self._topology = service_topology(
                settings, self.service, self.registry.type_patterns, broker_version(connection)
            )
            await declare_topology(connection, self._topology)
            await _report_legacy_tiers(connection, settings)
            connection.reconnect_callbacks.add(self._redeclare)
            self._watch_connection(connection)

            publish_channel = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._settler = Settler(
                publish_channel,
                settings.names,
                service=self.service,
                consumer_name=self.consumer_name,
                publish_timeout_s=settings.publish_timeout_s,
                acks=self._acks,
                on_confirmed=self._settle_observed,
            )
            await self._settler.open()
            if self._lifecycle.emitter is not None:
                await self._lifecycle.emitter.start()
            self._acks.start()
            channels = [await self._open_queue(priority) for priority in settings.served_priorities]
            for priority, channel in zip(settings.served_priorities, channels, strict=True):
                await self._run_probation(priority, channel)
            for priority, channel in zip(settings.served_priorities, channels, strict=True):
                await self._consume(priority, channel)
        except BaseException:
            await self._close()
            raise
        self._consuming_since = time.time()
        if settings.metrics_port is not None:
            self._probes = ProbeServer(
                probe_app(self.metrics, self.readiness),
                host=settings.metrics_host,
                port=settings.metrics_port,
            )
            await self._probes.start()
        self.ready.set()
        _log.info(
            "consumer.started",
            service=self.service,
            priorities=list(settings.served_priorities),
            types=list(self.registry.type_patterns),
            concurrency=settings.concurrency,
            prefetch=settings.effective_prefetch,
        )

    async def _open_queue(self, priority: str) -> AbstractRobustChannel:
        """The channel that consumes `priority`'s work queue."""
        assert self._connection is not None and self._topology is not None
        name = self.settings.names.work_queue(self.service, priority)
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self.settings.effective_prefetch)
        spec = self._topology.queue(name)
        # Declared through the channel, so aio-pika declares it again when the channel reopens.
        await channel.declare_queue(name, durable=True, arguments=dict(spec.argument_items))
        return channel

    async def _run_probation(self, priority: str, channel: AbstractRobustChannel) -> None:
        """Redelivered messages left by a crashed consumer run one at a time before consuming
        (consumer.isolation)."""
        name = self.settings.names.work_queue(self.service, priority)
        rank = self.settings.priorities.index(priority)

        async def run_alone(raw: DeliveredMessage) -> None:
            await self._handle_alone(Delivery(raw, name, priority, rank))

        suspects = await probation(await channel.get_underlay_channel(), name, run_alone)
        if suspects:
            _log.warning(
                "consumer.probation",
                queue=name,
                redelivered=suspects,
                detail="messages a crashed or disconnected consumer left unacked ran one at a time",
            )

    async def _consume(self, priority: str, channel: AbstractRobustChannel) -> None:
        name = self.settings.names.work_queue(self.service, priority)
        rank = self.settings.priorities.index(priority)

        async def on_delivery(raw: DeliveredMessage) -> None:
            delivery = Delivery(raw, name, priority, rank)
            sent_at = delivery.timestamp  # second resolution: good enough for waits of seconds
            self.metrics.delivered(
                name, time.time(), sent_at.timestamp() if sent_at is not None else None
            )
            if delivery.redelivered:
                self.metrics.redeliveries.labels(self.service, priority).inc()
                await self._handle_alone(delivery)
            elif self._limits:
                await self._handle_limited(delivery)
            else:
                await self._handle(delivery)

        subscription = Subscription(channel, name, on_delivery, on_cancelled=self._redeclare)
        await subscription.start()
        self._subscriptions.append(subscription)
        self.metrics.consuming.labels(self.service, name).set(1)

    def _watch_connection(self, connection: AbstractRobustConnection) -> None:
        metrics, service = self.metrics, self.service
        # Read when scraped: the connection's own state, no callback to keep in step with it.
        metrics.broker_connected.labels(service).set_function(
            lambda: float(connection.connected.is_set() and not connection.is_closed)
        )
        metrics.slots.labels(service).set(self.settings.concurrency)

        def back(*_args: object) -> None:
            metrics.reconnects.labels(service).inc()

        connection.reconnect_callbacks.add(back)

    async def _redeclare(self, *_args: object) -> None:
        if self._connection is not None and self._topology is not None:
            await declare_topology(self._connection, self._topology)
            _log.info("topology.redeclared", service=self.service)

    async def _handle(self, delivery: Delivery) -> None:
        """Runs in the task aiormq started for this delivery, once a handler slot is free."""
        await self._gate.enter()
        try:
            await self._slots.acquire(delivery.rank)
            try:
                await self._process(delivery)
            except Exception:  # a bug of ours must not go unseen; the broker redelivers
                _log.exception("delivery.crashed", queue=delivery.queue)
            finally:
                self._slots.release()
        finally:
            self._gate.leave()

    async def _handle_limited(self, delivery: Delivery) -> None:
        """A delivery whose handler has limits waits for its place without a handler slot,
        or goes back to the tail of its queue (consumer.limits)."""
        limit = self._limits.for_delivery(delivery)
        if limit is None:
            await self._handle(delivery)
            return
        if not await limit.enter():
            if await self._defer(delivery, limit.deferral_s()):
                return
            await limit.enter(bounded=False)  # the broker refused the deferral: wait here
        try:
            await self._handle(delivery)
        finally:
            limit.leave()

    async def _defer(self, delivery: Delivery, delay_s: float) -> bool:
        """False if the broker refused the deferred copy (the delivery is still ours)."""
        settler = self._settler
        assert settler is not None
        if not await settler.wait_until_publishable(delivery.channel):
            return True  # its channel closed: the broker redelivers it
        attempt = read_attempt(delivery.headers)
        context = self._context(delivery, attempt, delivery.type, delivery.message_id)
        settled = await settler.defer(delivery, context, delay_s)
        _log.debug(
            "message.deferred",
            queue=delivery.queue,
            message_id=delivery.message_id,
            delay_s=round(delay_s, 3),
        )
        return settled is not None

    async def _handle_alone(self, delivery: Delivery) -> None:
        """A suspect (redelivered) delivery: no other handler runs with it, and every ack
        before it and its own are on the wire before anything else starts."""
        await self._gate.enter_alone()
        try:
            await self._slots.acquire(delivery.rank)
            try:
                await self._acks.flush()
                await self._process(delivery)
                await self._acks.flush()
            except Exception:
                _log.exception("delivery.crashed", queue=delivery.queue)
            finally:
                self._slots.release()
        finally:
            self._gate.leave_alone()

    async def _process(self, delivery: Delivery) -> None:
        settler = self._settler
        assert settler is not None
        if not await settler.wait_until_publishable(delivery.channel):
            return  # its channel closed while the copy channel was down: redelivered
        attempt = read_attempt(delivery.headers)
        # Bound and reset by token: cheaper than `bound_contextvars`, which copies the whole
        # context on every message. `type` is bound once the envelope says what it is.
        tokens = bind_contextvars(
            message_id=delivery.message_id, queue=delivery.queue, attempt=attempt, type=None
        )
        try:
            hold_s = held_for(delivery.headers)
            if hold_s is not None:
                await self._hold(delivery, hold_s, attempt)
                return
            try:
                envelope = decode_delivery(
                    delivery,
                    priority=delivery.queue_priority,
                    priorities=self._priorities,
                    attempt=attempt,
                    redelivered=delivery.redelivered,
                )
            except UndecodableMessageError as exc:
                outcome = undecodable(exc.reason)
                await self._apply(
                    delivery,
                    decide(outcome, attempt, self._default_policy),
                    attempt,
                    delivery.type,
                    delivery.message_id,
                    outcome,
                    UNKNOWN_TYPE,
                )
                return
            bind_contextvars(type=envelope.message_type)  # before the handler: its lines too
            spec = self.registry.find(envelope.message_type)
            if spec is None:
                outcome = unknown_type(self.service, envelope.message_type)
                policy = self._default_policy
                type_label = UNKNOWN_TYPE
            else:
                type_label = spec.type_pattern
                await self._lifecycle.started(
                    delivery, envelope.message_type, envelope.message_id, attempt
                )
                started = time.monotonic()
                if self._tracing:
                    span = process_span(
                        delivery.queue, delivery.headers, envelope.message_id, attempt
                    )
                    with span:
                        outcome = await self._run(spec, envelope)
                else:
                    outcome = await self._run(spec, envelope)
                self.metrics.handler_ran(type_label, time.monotonic() - started)
                policy = self._policies[spec.type_pattern]
            await self._apply(
                delivery,
                decide(outcome, attempt, policy),
                attempt,
                envelope.message_type,
                envelope.message_id,
                outcome,
                type_label,
            )
        finally:
            reset_contextvars(**tokens)

    async def _run(self, spec: HandlerSpec, envelope: Envelope) -> Outcome:
        if await self._dedupe.already_succeeded(spec, envelope.message_id):
            _log.info("message.skipped", reason="already succeeded for this service")
            return Outcome.success()
        return await run_handler(spec, envelope, self._deadlines, self._hooks)

    async def _hold(self, delivery: Delivery, hold_s: float, attempt: int) -> None:
        """A foreign publisher's `x-hopline-deliver-at` is ahead: wait in the broker."""
        settler = self._settler
        assert settler is not None
        context = self._context(delivery, attempt, delivery.type, delivery.message_id)
        settled = await settler.hold(delivery, hold_s, context)
        spec = self.registry.find(delivery.type or "")
        type_label = spec.type_pattern if spec is not None else UNKNOWN_TYPE
        self.metrics.settled(type_label, delivery.queue_priority, settled.value, "")
        _log.info("message.handled", outcome=settled.value, held_s=round(hold_s, 3))

    @staticmethod
    def _context(
        delivery: Delivery, attempt: int, message_type: str | None, message_id: str | None
    ) -> DeliveryContext:
        return DeliveryContext(
            origin_queue=delivery.queue,
            original_routing_key=original_routing_key(delivery),
            attempt=attempt,
            message_type=message_type,
            message_id=message_id,
        )

    async def _apply(
        self,
        delivery: Delivery,
        decision: Ack | Retry | Quarantine,
        attempt: int,
        message_type: str | None,
        message_id: str | None,
        outcome: Outcome,
        type_label: str,
    ) -> None:
        settler = self._settler
        assert settler is not None
        if self._breaker is not None:
            self._observe(outcome)
        priority = delivery.queue_priority
        if isinstance(decision, Ack):
            settled = settler.ack(delivery)
            self._lifecycle.settled(
                delivery, settled, decision, outcome, message_type, message_id, attempt
            )
            self.metrics.settled(type_label, priority, settled.value, "")
            _log.info("message.handled", outcome=settled.value)
            self._observed(message_id, decision, outcome)
            return
        context = self._context(delivery, attempt, message_type, message_id)
        reason = outcome.kind.value  # a bounded class for the metric label, never the text
        if isinstance(decision, Retry):
            settled = await settler.retry(delivery, decision, context, outcome)
            self._lifecycle.settled(
                delivery, settled, decision, outcome, message_type, message_id, attempt
            )
            self.metrics.settled(type_label, priority, settled.value, reason)
            if settled is Settled.RETRIED:
                delay = delay_bucket(decision.delay_s)
                self.metrics.retry_copies.labels(self.service, delay).inc()
            _log.warning(
                "message.handled",
                outcome=settled.value,
                delay_s=decision.delay_s,
                next_attempt=decision.next_attempt,
                error_type=outcome.error_type,
                error=outcome.error_message,
            )
        else:
            settled = await settler.quarantine(delivery, decision, context, outcome)
            self._lifecycle.settled(
                delivery, settled, decision, outcome, message_type, message_id, attempt
            )
            self.metrics.settled(type_label, priority, settled.value, reason)
            _log.log(
                logging.WARNING if settled is Settled.LEFT else logging.ERROR,
                "message.handled",
                outcome=settled.value,
                reason=decision.reason,
                error_type=outcome.error_type,
            )
        self._observed(message_id, decision, outcome)

    def _observed(self, message_id: str | None, decision: Decision, outcome: Outcome) -> None:
        if self._on_settled is not None:
            self._on_settled(message_id, decision, outcome)

    async def readiness(self) -> str | None:
        """None when this worker does its job; else why not (its /readyz answer)."""
        connection = self._connection
        if connection is None or connection.is_closed or not connection.connected.is_set():
            return "not connected to RabbitMQ"
        paused = self._breaker is not None and self._breaker.state is not BreakerState.CLOSED
        if paused:
            return None  # consuming nothing on purpose: the breaker waits out an outage
        idle = [s.queue for s in self._subscriptions if not s.consuming]
        if idle:
            return f"not consuming {', '.join(idle)}"
        if self._slots.busy >= self.settings.concurrency:
            return None  # every handler busy: slow, not stuck
        return await self._stuck(connection)

    async def _stuck(self, connection: AbstractRobustConnection) -> str | None:
        """A queue with ready messages that delivered nothing for `stuck_after_s`."""
        limit_s = self.settings.stuck_after_s
        now = time.time()  # the metrics' clock: each delivery is timed once, there
        since = {
            s.queue: self.metrics.last_delivered_at(s.queue) or self._consuming_since
            for s in self._subscriptions
        }
        quiet = [queue for queue, at in since.items() if now - at > limit_s]
        if not quiet:
            return None
        async with connection.channel() as channel:
            for queue in quiet:
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                except Exception as exc:  # gone, or the channel failed: not ready either way
                    return f"cannot read {queue}: {type(exc).__name__}: {exc}"
                ready = declared.declaration_result.message_count or 0
                if ready:
                    return (
                        f"{queue} holds {ready} ready messages but delivered none for "
                        f"{now - since[queue]:.0f} s"
                    )
        return None

    def _settle_observed(self, kind: str, seconds: float) -> None:
        self.metrics.settle.labels(self.service, kind).observe(seconds)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking deliveries, let handlers finish within the grace period, close."""
        grace_s = self.settings.shutdown_grace_s if grace_s is None else grace_s
        if self._pausing is not None:
            self._pausing.cancel()
        await self._cancel_consumers()
        try:
            await asyncio.wait_for(self._slots.drained(), timeout=grace_s)
        except TimeoutError:
            _log.warning(
                "consumer.grace_expired",
                grace_s=grace_s,
                unfinished=self._slots.busy + len(self._slots),
                consequence="unacked messages are redelivered by the broker",
            )
        await self._close()  # first of all, the acks of every handler that finished go out
        _log.info("consumer.stopped", service=self.service)

    async def _cancel_consumers(self) -> None:
        for subscription in self._subscriptions:
            await subscription.stop()
            self.metrics.consuming.labels(self.service, subscription.queue).set(0)

    def _observe(self, outcome: Outcome) -> None:
        """Feed the outage breaker; pause or resume consuming when its state changes."""
        assert self._breaker is not None
        if outcome.kind not in _BREAKER_COUNTS:
            return  # a bad message says nothing about the dependency
        failed = outcome.kind is not OutcomeKind.SUCCESS
        changed = self._breaker.record(failed, time.monotonic())
        if changed is not None:
            self.metrics.breaker_open.labels(self.service).set(changed is BreakerState.OPEN)
        if changed is BreakerState.OPEN:
            self._pausing = asyncio.create_task(self._pause(), name="hopline-breaker")
        elif changed is BreakerState.CLOSED:
            _log.warning("consumer.resumed", reason="probes succeeded")
            self._pausing = asyncio.create_task(
                self._consume_again(self.settings.effective_prefetch), name="hopline-breaker"
            )

    async def _pause(self) -> None:
        """Cancel the consumers (messages stay ready in RabbitMQ), cool down, then probe."""
        assert self._breaker is not None
        policy = self._breaker.policy
        _log.warning(
            "consumer.paused",
            reason=f"transient failures reached {policy.failure_ratio:.0%} of recent outcomes",
            cooldown_s=policy.cooldown_s,
        )
        await self._cancel_consumers()
        await asyncio.sleep(policy.cooldown_s)
        if self._breaker.poll(time.monotonic()) is BreakerState.HALF_OPEN:
            _log.warning("consumer.probing", probes=policy.probes)
            await self._consume_again(policy.probes)

    async def _consume_again(self, prefetch: int) -> None:
        """Consume every work queue again, with `prefetch` unacked deliveries each."""
        await self._cancel_consumers()
        for subscription in self._subscriptions:
            await subscription.start(prefetch=prefetch)  # applies to the new consumer
            self.metrics.consuming.labels(self.service, subscription.queue).set(1)

    async def _close(self) -> None:
        if self._probes is not None:
            await self._probes.stop()
            self._probes = None
        await self._acks.close()
        await self._deadlines.close()
        await self._lifecycle.close()
        if self._lifecycle.emitter is not None:
            await self._lifecycle.emitter.close()
        await self._dedupe.close()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self.ready.clear()


async def _report_legacy_tiers(
    connection: AbstractRobustConnection, settings: ConsumerSettings
) -> None:
    """Retry tiers of an earlier version still exist: what waits there comes back by itself
    (common.legacy_tiers); say so, and how to remove them once the upgrade is over."""
    tiers = await find_legacy_tiers(connection, settings)
    if tiers:
        _log.warning(
            "topology.legacy_retry_tiers",
            tiers={tier.queue: tier.messages for tier in tiers},
            detail="messages waiting there return to their queues when their TTL expires",
            action="once every consumer runs this version: hopline topology retire-tiers",
        )


# Outcomes the breaker counts: successes and transient failures (a dependency's health).
_BREAKER_COUNTS = frozenset({OutcomeKind.SUCCESS, OutcomeKind.RETRYABLE, OutcomeKind.TIMEOUT})


def _breaker(settings: ConsumerSettings) -> CircuitBreaker | None:
    if settings.breaker_failure_ratio is None:
        return None
    return CircuitBreaker(
        BreakerPolicy(
            failure_ratio=settings.breaker_failure_ratio,
            window_s=settings.breaker_window_s,
            min_outcomes=settings.breaker_min_outcomes,
            cooldown_s=settings.breaker_cooldown_s,
            probes=settings.breaker_probes,
        )
    )
