"""What a handler raises to say how its failure should be treated.

HoplineError (common.errors)
└── HandlerError
    ├── RetryableError   transient: try again after a delay (so does any other exception)
    └── PermanentError   will never succeed: quarantine now, no retries
"""

from __future__ import annotations

from common.errors import HoplineError

__all__ = ["HandlerError", "PermanentError", "RetryableError"]


class HandlerError(HoplineError):
    """Base of the outcomes a handler can raise on purpose."""


class RetryableError(HandlerError):
    """A transient failure (a timeout, a dependency down): retry after a delay.

    `delay` (seconds) overrides the handler's backoff for this retry, e.g. the
    `Retry-After` a rate-limited API answered: `raise RetryableError("429", delay=30)`.
    """

    def __init__(self, *args: object, delay: float | None = None) -> None:
        super().__init__(*args)
        if delay is not None and not delay >= 0:
            raise ValueError(f"RetryableError delay must be >= 0 seconds, got {delay}")
        self.delay = delay


class PermanentError(HandlerError):
    """A failure no retry can fix (invalid data, a business rule): quarantine at once."""
