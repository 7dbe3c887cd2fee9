"""hopline consumer services: a handler registry and the runtime that drives it.

A handler is `async def f(payload)` or `async def f(payload, envelope: Envelope)`, registered
with `@registry.handler(type, ...)`. What it may do:

- return (any value, ignored): the message is acked;
- raise `RetryableError` or any other exception: retried after a delay while attempts are
  left (`max_attempts`), then quarantined; raise `PermanentError`: quarantined at once;
- take at most `timeout` seconds (default 30): past it, it is cancelled and the run counts
  as a retryable failure. A blocking (non-async) handler runs in a thread: at its limit the
  consumer stops waiting for it, but the thread cannot be stopped and runs on.

Delivery is at-least-once: a handler must tolerate the same `message_id` twice.
`consumer.testing.Harness` runs handlers without a broker; `consumer.pytest_plugin` gives
pytest fixtures for tests on a real one (docs/writing-a-service.md).
"""

from common.envelope import Envelope
from consumer.errors import PermanentError, RetryableError
from consumer.policy import Backoff
from consumer.registry import HandlerSpec, Middleware, Registry

__all__ = [
    "Backoff",
    "Envelope",
    "HandlerSpec",
    "Middleware",
    "PermanentError",
    "Registry",
    "RetryableError",
]
