"""Run one handler on one envelope and say how it went, as an `Outcome`."""

from __future__ import annotations

import asyncio
import traceback

from pydantic import ValidationError

from common.envelope import Envelope
from consumer.errors import PermanentError
from consumer.policy import Outcome, OutcomeKind
from consumer.registry import HandlerSpec

__all__ = ["run_handler"]


async def run_handler(spec: HandlerSpec, envelope: Envelope) -> Outcome:
    """Call the handler with its timeout; never raises except on cancellation (shutdown)."""
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
    deadline = asyncio.timeout(spec.timeout_s)
    try:
        async with deadline:
            await spec.func(*args)
    except TimeoutError as exc:
        if deadline.expired():
            return Outcome(
                OutcomeKind.TIMEOUT,
                "HandlerTimeout",
                f"{spec.name} did not finish within {spec.timeout_s:g} s",
                _format(exc),
            )
        return _failure(OutcomeKind.RETRYABLE, exc)
    except PermanentError as exc:
        return _failure(OutcomeKind.PERMANENT, exc)
    except Exception as exc:  # every other failure is retryable by definition
        return _failure(OutcomeKind.RETRYABLE, exc)
    return Outcome.success()


def _failure(kind: OutcomeKind, exc: BaseException) -> Outcome:
    return Outcome(kind, type(exc).__qualname__, str(exc) or repr(exc), _format(exc))


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
        for error in exc.errors(include_url=False)[:10]
    )
