"""Handlers as data: which function handles which message type, with which retry policy."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from common.envelope import Envelope
from common.errors import ConfigurationError
from common.names import is_valid_message_type, topic_matches
from consumer.policy import (
    DEFAULT_MAX_ATTEMPTS,
    Backoff,
    Delays,
    RetrySchedule,
    retry_schedule,
)

__all__ = ["FALLBACK", "HandlerFunc", "HandlerSpec", "Middleware", "Registry"]

HandlerFunc = Callable[..., Awaitable[Any]]
# Runs around every handler of a registry: called with the envelope, it gives an async
# context manager entered before the handler and left after it (with its exception, if any).
Middleware = Callable[[Envelope], AbstractAsyncContextManager[object]]
# The fallback's name where a handler's type pattern is shown (it is not a pattern).
FALLBACK = "(fallback)"
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One registered handler and its policy."""

    type_pattern: str
    func: HandlerFunc
    max_attempts: int
    timeout_s: float
    model: type[BaseModel] | None
    retry: RetrySchedule | None  # None: the service's HOPLINE_RETRY_DELAYS_S
    wants_envelope: bool
    # Per consumer process: handler runs at once, handler starts per second (None: no limit).
    concurrency: int | None = None
    rate: float | None = None
    idempotent: bool = False  # skip a message_id that already succeeded here (consumer.dedupe)

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


class Registry:
    """The handlers of one consumer service.

    >>> registry = Registry("orders")
    >>> @registry.handler("orders.created", max_attempts=5, timeout=30, retry=Backoff(first=2))
    ... async def created(payload): ...
    """

    def __init__(self, service: str) -> None:
        if not service or "." in service or not is_valid_message_type(service):
            raise ConfigurationError(f"service name {service!r} must be one lowercase word")
        self.service = service
        self._exact: dict[str, HandlerSpec] = {}
        self._patterns: list[HandlerSpec] = []
        self._fallback: HandlerSpec | None = None
        self._middleware: list[Middleware] = []

    def middleware(self, hook: Middleware) -> Middleware:
        """Run `hook(envelope)` around every handler of this service; usable as a decorator
        on an `@asynccontextmanager` function. Hooks nest in the order they are registered
        (the first is outermost) and run within the handler's time limit; an exception one
        raises is the handler's outcome (retryable unless `PermanentError`)."""
        self._middleware.append(hook)
        return hook

    @property
    def hooks(self) -> tuple[Middleware, ...]:
        """The middleware, outermost first."""
        return tuple(self._middleware)

    def handler(
        self,
        message_type: str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float = 30.0,
        model: type[BaseModel] | None = None,
        retry: Backoff | Delays | Sequence[float] | None = None,
        concurrency: int | None = None,
        rate: float | None = None,
        idempotent: bool = False,
    ) -> Callable[[_F], _F]:
        """Register a handler for a type or a topic pattern (`orders.*`, `orders.#`).

        The pattern is also what the service's queues are bound with: `#` subscribes the
        service to every message published to the exchange, other services' types included
        (and nothing unhandled then reaches `hopline.unroutable`). For "whatever this service
        receives that no other handler takes", use `fallback()`, which binds nothing.

        The function takes `(payload)` or `(payload, envelope)`; with `model`, the payload
        arrives validated as that pydantic model. `timeout` is in seconds. `retry` is the
        wait before each retry: a `Backoff`, or a list of delays in seconds (the n-th for the
        n-th retry, the last repeating); without it, the service's `HOPLINE_RETRY_DELAYS_S`.

        `concurrency` (runs at once) and `rate` (starts per second) limit this handler in each
        consumer process; a delivery over its limit does not hold up the service's other
        types (see consumer.limits).

        `idempotent=True`: a delivery whose message_id already succeeded for this service
        (per the status store) is acked without running the handler again (consumer.dedupe).
        """
        _check_pattern(message_type)
        _check_limits(message_type, max_attempts, timeout)
        _check_throttle(message_type, concurrency, rate)
        schedule = _schedule(message_type, retry)

        def register(func: _F) -> _F:
            if message_type in self._exact or any(
                spec.type_pattern == message_type for spec in self._patterns
            ):
                raise ConfigurationError(f"{message_type!r} already has a handler")
            spec = _spec(message_type, func, max_attempts, timeout, model, schedule)
            spec = dataclasses.replace(
                spec, concurrency=concurrency, rate=rate, idempotent=idempotent
            )
            if "*" in message_type or "#" in message_type:
                self._patterns.append(spec)
                # Specific patterns first; the catch-all `#` only when nothing else matches.
                self._patterns.sort(key=_specificity)
            else:
                self._exact[message_type] = spec
            return func

        return register

    def fallback(
        self,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float = 30.0,
        retry: Backoff | Delays | Sequence[float] | None = None,
    ) -> Callable[[_F], _F]:
        """Register the handler for a message this service received but no handler's
        type matches (a replayed or re-typed message, a foreign publisher's `type` property
        that differs from its routing key). It adds no binding: the service still receives
        only the types its other handlers are bound to."""
        _check_limits("fallback", max_attempts, timeout)
        schedule = _schedule("fallback", retry)

        def register(func: _F) -> _F:
            if self._fallback is not None:
                raise ConfigurationError(f"service {self.service!r} already has a fallback")
            self._fallback = _spec(FALLBACK, func, max_attempts, timeout, None, schedule)
            return func

        return register

    def find(self, message_type: str) -> HandlerSpec | None:
        spec = self._exact.get(message_type)
        if spec is not None:
            return spec
        for candidate in self._patterns:
            if topic_matches(candidate.type_pattern, message_type):
                return candidate
        return self._fallback

    @property
    def type_patterns(self) -> tuple[str, ...]:
        """Binding patterns for the service's queues (the fallback binds nothing)."""
        return (*self._exact, *(spec.type_pattern for spec in self._patterns))

    @property
    def specs(self) -> tuple[HandlerSpec, ...]:
        fallback = (self._fallback,) if self._fallback is not None else ()
        return (*self._exact.values(), *self._patterns, *fallback)


def _check_limits(name: str, max_attempts: int, timeout: float) -> None:
    if max_attempts < 1:
        raise ConfigurationError(f"{name}: max_attempts must be at least 1")
    if timeout <= 0:
        raise ConfigurationError(f"{name}: timeout must be positive")


def _check_throttle(name: str, concurrency: int | None, rate: float | None) -> None:
    if concurrency is not None and concurrency < 1:
        raise ConfigurationError(f"{name}: concurrency must be at least 1")
    if rate is not None and not rate > 0:
        raise ConfigurationError(f"{name}: rate must be positive (handler starts per second)")


def _schedule(name: str, retry: Backoff | Delays | Sequence[float] | None) -> RetrySchedule | None:
    if retry is None:
        return None
    try:
        return retry_schedule(retry)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{name}: retry={retry!r}: {exc}") from None


def _spec(
    type_pattern: str,
    func: Callable[..., Any],
    max_attempts: int,
    timeout: float,
    model: type[BaseModel] | None,
    retry: RetrySchedule | None,
) -> HandlerSpec:
    return HandlerSpec(
        type_pattern=type_pattern,
        func=_as_coroutine(func),
        max_attempts=max_attempts,
        timeout_s=float(timeout),
        model=model,
        retry=retry,
        wants_envelope=_positional_count(func) >= 2,
    )


def _specificity(spec: HandlerSpec) -> tuple[bool, int, int]:
    """Sort key: the catch-all last, then fewer `#`, then more literal words first."""
    words = spec.type_pattern.split(".")
    literal = sum(1 for word in words if word not in ("*", "#"))
    return (spec.type_pattern == "#", words.count("#"), -literal)


def _check_pattern(pattern: str) -> None:
    words = pattern.split(".")
    if all(word in ("*", "#") or is_valid_message_type(word) for word in words) and all(words):
        return
    raise ConfigurationError(f"handler type {pattern!r} must be dotted lowercase words, `*` or `#`")


def _positional_count(func: Callable[..., Any]) -> int:
    parameters = inspect.signature(func).parameters.values()
    return sum(
        1
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


def _as_coroutine(func: Callable[..., Any]) -> HandlerFunc:
    """Blocking handlers run in a thread so they cannot stall the event loop."""
    if inspect.iscoroutinefunction(func):
        return func

    @functools.wraps(func)
    async def in_thread(*args: Any) -> Any:
        return await asyncio.to_thread(func, *args)

    return in_thread
