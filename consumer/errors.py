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
    """A transient failure (a timeout, a dependency down): retry after a delay."""


class PermanentError(HandlerError):
    """A failure no retry can fix (invalid data, a business rule): quarantine at once."""
