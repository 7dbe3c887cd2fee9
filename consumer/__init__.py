"""hopline consumer services: a handler registry and the runtime that drives it."""

from consumer.errors import PermanentError, RetryableError
from consumer.policy import Backoff
from consumer.registry import HandlerSpec, Registry

__all__ = ["Backoff", "HandlerSpec", "PermanentError", "Registry", "RetryableError"]
