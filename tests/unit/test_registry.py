"""consumer.registry: which handler a message type finds, and how handlers are called."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel

from common.envelope import Envelope
from common.errors import ConfigurationError
from consumer.policy import Backoff, Delays
from consumer.registry import FALLBACK, Registry


async def noop(payload: Any) -> None:
    return None


def registry_with(*patterns: str) -> Registry:
    registry = Registry("orders")
    for pattern in patterns:
        registry.handler(pattern)(noop)
    return registry


@pytest.mark.parametrize(
    ("patterns", "message_type", "found"),
    [
        (["orders.created"], "orders.created", "orders.created"),
        (["orders.created"], "orders.updated", None),
        # an exact registration beats any pattern, whatever the order of registration
        (["#", "orders.*", "orders.created"], "orders.created", "orders.created"),
        (["orders.created", "orders.*", "#"], "orders.created", "orders.created"),
        (["orders.*", "#"], "orders.updated", "orders.*"),
        (["orders.*", "#"], "payments.charge", "#"),
        (["orders.*"], "orders.created.v2", None),
        (["orders.#"], "orders.created.v2", "orders.#"),
        # the catch-all comes last even when registered first
        (["#", "orders.*"], "orders.updated", "orders.*"),
        (["#", "*.created"], "orders.created", "*.created"),
    ],
)
def test_find_prefers_the_most_specific_handler(
    patterns: list[str], message_type: str, found: str | None
) -> None:
    spec = registry_with(*patterns).find(message_type)

    assert (spec.type_pattern if spec else None) == found


def test_the_catch_all_loses_to_a_multi_word_pattern_registered_after_it() -> None:
    spec = registry_with("#", "orders.#").find("orders.created")

    assert spec is not None
    assert spec.type_pattern == "orders.#"


def test_type_patterns_list_every_registration_once() -> None:
    registry = registry_with("orders.created", "#", "orders.*")

    assert sorted(registry.type_patterns) == ["#", "orders.*", "orders.created"]
    assert len(registry.specs) == 3


@pytest.mark.parametrize(
    ("first", "second"),
    [("orders.created", "orders.created"), ("orders.*", "orders.*"), ("#", "#")],
)
def test_registering_a_type_twice_is_an_error(first: str, second: str) -> None:
    registry = registry_with(first)

    with pytest.raises(ConfigurationError, match="already has a handler"):
        registry.handler(second)(noop)


@pytest.mark.parametrize(
    "pattern",
    ["", "Orders", "orders.", ".orders", "orders..created", "orders.*x", "orders.#x", "a b"],
)
def test_an_invalid_type_pattern_is_refused_when_registered(pattern: str) -> None:
    registry = Registry("orders")

    with pytest.raises(ConfigurationError, match="dotted lowercase words"):
        registry.handler(pattern)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_an_invalid_policy_is_refused(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        Registry("orders").handler("orders.created", **options)


@pytest.mark.parametrize("service", ["", "Orders", "orders.eu", "orders eu", "-x"])
def test_a_service_name_must_be_one_lowercase_word(service: str) -> None:
    with pytest.raises(ConfigurationError, match="one lowercase word"):
        Registry(service)


def test_the_spec_records_the_policy() -> None:
    class Order(BaseModel):
        order_id: str

    registry = Registry("orders")

    @registry.handler("orders.created", max_attempts=3, timeout=2, model=Order, retry=(1.0, 2.0))
    async def created(payload: Order) -> None: ...

    spec = registry.find("orders.created")
    assert spec is not None
    assert spec.func is created
    assert spec.max_attempts == 3
    assert spec.timeout_s == 2.0
    assert isinstance(spec.timeout_s, float)
    assert spec.model is Order
    assert spec.retry == Delays((1.0, 2.0))
    assert spec.name.endswith("created")


def test_the_decorator_returns_the_function_unchanged() -> None:
    registry = Registry("orders")

    decorated = registry.handler("orders.created")(noop)

    assert decorated is noop


async def _one(payload: Any) -> None: ...
async def _two(payload: Any, envelope: Envelope) -> None: ...
async def _default(payload: Any, envelope: Envelope | None = None) -> None: ...
async def _keyword(payload: Any, *, envelope: Envelope) -> None: ...
def _sync_two(payload: Any, envelope: Envelope) -> None: ...


@pytest.mark.parametrize(
    ("func", "wants"),
    [(_one, False), (_two, True), (_default, False), (_keyword, False), (_sync_two, True)],
)
def test_wants_envelope_counts_required_positional_parameters(func: Any, wants: bool) -> None:
    registry = Registry("orders")
    registry.handler("orders.created")(func)

    spec = registry.find("orders.created")

    assert spec is not None
    assert spec.wants_envelope is wants


async def test_a_blocking_handler_runs_in_a_thread_not_on_the_loop() -> None:
    # Given a plain (blocking) function registered as a handler
    seen: dict[str, Any] = {}

    def blocking(payload: Any) -> str:
        seen["thread"] = threading.get_ident()
        seen["payload"] = payload
        return "done"

    registry = Registry("orders")
    registry.handler("orders.created")(blocking)
    spec = registry.find("orders.created")
    assert spec is not None

    # When it is awaited
    result = await spec.func({"a": 1})

    # Then it ran off the event loop's thread, with its name kept
    assert result == "done"
    assert seen == {"thread": seen["thread"], "payload": {"a": 1}}
    assert seen["thread"] != threading.get_ident()
    assert spec.name.endswith("blocking")


def test_a_fallback_takes_what_no_handler_matches_and_binds_nothing() -> None:
    registry = Registry("billing")

    @registry.handler("invoices.*")
    async def invoices(payload: Any) -> None: ...

    @registry.fallback(max_attempts=2)
    async def anything(payload: Any, envelope: Any) -> None: ...

    # The queues are bound for the handler's pattern only: no `#`, no other service's types
    assert registry.type_patterns == ("invoices.*",)
    assert registry.find("invoices.paid").func is invoices  # type: ignore[union-attr]
    fallback = registry.find("orders.created")
    assert fallback is not None and fallback.type_pattern == FALLBACK
    assert fallback.max_attempts == 2 and fallback.wants_envelope


def test_a_service_has_one_fallback_at_most() -> None:
    registry = Registry("billing")

    @registry.fallback()
    async def first(payload: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="already has a fallback"):

        @registry.fallback()
        async def second(payload: Any) -> None: ...


def test_a_handler_takes_a_backoff_or_a_list_and_refuses_a_bad_one() -> None:
    registry = Registry("orders")

    @registry.handler("orders.created", retry=Backoff(first=2, factor=3, max=60))
    async def created(payload: Any) -> None: ...

    @registry.fallback(retry=[5])
    async def other(payload: Any) -> None: ...

    assert registry.specs[0].retry == Backoff(first=2, factor=3, max=60)
    assert registry.specs[-1].retry == Delays((5.0,))
    with pytest.raises(ConfigurationError, match=r"orders.paid: retry=\[-1\]: retry delay -1"):
        registry.handler("orders.paid", retry=[-1])
