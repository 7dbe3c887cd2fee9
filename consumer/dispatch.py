"""Run one handler on one envelope and say how it went, as an `Outcome`."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from common.envelope import Envelope
from common.redact import redact_text
from consumer.deadlines import Deadlines
from consumer.errors import PermanentError, RetryableError
from consumer.policy import Outcome, OutcomeKind
from consumer.registry import HandlerSpec, Middleware

__all__ = ["run_handler", "undecodable", "unknown_type"]


def undecodable(reason: str) -> Outcome:
    """What a delivery that is no envelope comes to (quarantined with `reason`)."""
    return Outcome(OutcomeKind.UNDECODABLE, "UndecodableMessage", reason)


def unknown_type(service: str, message_type: str) -> Outcome:
    """What a message that no handler of `service` takes comes to."""
    return Outcome(
        OutcomeKind.UNKNOWN_TYPE,
        "UnknownMessageType",
        f"service {service!r} has no handler for type {message_type!r}",
    )


async def run_handler(
    spec: HandlerSpec,
    envelope: Envelope,
    deadlines: Deadlines,
    hooks: Sequence[Middleware] = (),
) -> Outcome:
    """Call the handler inside its registry's middleware `hooks`, within its time limit;
    never raises except on cancellation from elsewhere (shutdown)."""
    payload = envelope.payload
    if spec.model is not None:
        try:
            payload = spec.model.model_validate(payload)
        except ValidationError as exc:
            return Outcome(
                OutcomeKind.INVALID_PAYLOAD,
                "ValidationError",
                f"payload does not match {spec.model.__name__}: {_summary(exc)}",
            )
    args = (payload, envelope) if spec.wants_envelope else (payload,)
    task = deadlines.start(spec.timeout_s)
    try:
        if hooks:
            result = await _call_within(hooks, envelope, spec, args)
        else:
            result = await spec.func(*args)
    except BaseException as exc:
        if deadlines.finish(task):  # cut off at its limit, whatever it raised then
            return _timed_out(spec, exc)
        if isinstance(exc, PermanentError):
            return _failure(OutcomeKind.PERMANENT, exc)
        if isinstance(exc, Exception):  # every other failure is retryable by definition
            return _failure(OutcomeKind.RETRYABLE, exc)
        raise  # cancelled from elsewhere (shutdown), or the interpreter is exiting
    if deadlines.finish(task):  # it swallowed the cancellation and finished late
        return _timed_out(spec, None)
    return Outcome.success(result)


async def _call_within(
    hooks: Sequence[Middleware], envelope: Envelope, spec: HandlerSpec, args: tuple[Any, ...]
) -> Any:
    async with contextlib.AsyncExitStack() as stack:
        for hook in hooks:
            await stack.enter_async_context(hook(envelope))
        return await spec.func(*args)


def _timed_out(spec: HandlerSpec, exc: BaseException | None) -> Outcome:
    return Outcome(
        OutcomeKind.TIMEOUT,
        "HandlerTimeout",
        f"{spec.name} did not finish within {spec.timeout_s:g} s",
        _format(exc) if exc is not None else "",
    )


def _failure(kind: OutcomeKind, exc: BaseException) -> Outcome:
    # Error texts go into quarantine headers, the admin page and archives: no secrets there.
    return Outcome(
        kind,
        type(exc).__qualname__,
        redact_text(str(exc) or repr(exc)),
        _format(exc),
        exc.delay if isinstance(exc, RetryableError) else None,
    )


def _format(exc: BaseException) -> str:
    return redact_text("".join(traceback.format_exception(exc)))


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
        for error in exc.errors(include_url=False)[:10]
    )
