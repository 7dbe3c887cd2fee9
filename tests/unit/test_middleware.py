"""Middleware registered on a registry: run around every handler in the declared order, and
an exception one raises is an outcome like the handler's. Through the in-memory harness,
which calls the dispatch the worker calls (the real worker: tests/integration/test_limits.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from common.envelope import Envelope
from consumer import PermanentError, Registry
from consumer.policy import OutcomeKind
from consumer.testing import Harness


def registry_with_trail(trail: list[str]) -> Registry:
    registry = Registry("orders")

    @registry.middleware
    @asynccontextmanager
    async def session(envelope: Envelope) -> AsyncIterator[None]:
        trail.append(f"session opened for {envelope.message_type}")
        try:
            yield
        finally:
            trail.append("session closed")

    @registry.middleware
    @asynccontextmanager
    async def tenant(envelope: Envelope) -> AsyncIterator[None]:
        trail.append(f"tenant {envelope.headers.get('tenant')}")
        yield
        trail.append("tenant left")

    @registry.handler("orders.created")
    async def created(payload: Any) -> None:
        trail.append("handler")
        if payload.get("fail"):
            raise RuntimeError("handler failed")

    return registry


async def test_hooks_run_around_the_handler_in_the_order_they_were_registered() -> None:
    trail: list[str] = []
    harness = Harness(registry_with_trail(trail))

    result = await harness.send("orders.created", {}, headers={"tenant": "acme"})

    assert result.acked
    assert trail == [
        "session opened for orders.created",
        "tenant acme",
        "handler",
        "tenant left",
        "session closed",
    ]


async def test_a_failing_handler_still_leaves_the_hooks_that_clean_up() -> None:
    trail: list[str] = []
    harness = Harness(registry_with_trail(trail))

    result = await harness.send("orders.created", {"fail": True})

    assert result.retry is not None
    assert trail[-2:] == ["handler", "session closed"]


def registry_with_failing_hook(error: Exception) -> Registry:
    registry = Registry("orders")

    @registry.middleware
    @asynccontextmanager
    async def database(envelope: Envelope) -> AsyncIterator[None]:
        raise error
        yield

    @registry.handler("orders.created")
    async def created(payload: Any) -> None:
        raise AssertionError("the handler must not run when a hook before it failed")

    return registry


async def test_an_exception_in_a_hook_is_retryable() -> None:
    harness = Harness(registry_with_failing_hook(ConnectionError("database is down")))

    result = await harness.send("orders.created", {})

    assert result.outcome.kind is OutcomeKind.RETRYABLE
    assert result.outcome.error_type == "ConnectionError"
    assert result.retry is not None


async def test_a_permanent_error_in_a_hook_quarantines_at_once() -> None:
    harness = Harness(registry_with_failing_hook(PermanentError("unknown tenant")))

    result = await harness.send("orders.created", {})

    assert result.quarantine is not None
    assert result.quarantine.reason == "permanent: PermanentError: unknown tenant"
