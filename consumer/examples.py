"""The example service `make run` starts, so a newcomer sees every path a message can take.

- `orders.created` always succeeds;
- `payments.charge` fails transiently on its first attempt (a gateway timeout) and succeeds
  on the retry, every time: `envelope.attempt` says which attempt is running;
- `reports.render` always fails, is retried through the delay levels and ends in quarantine;
- a fallback logs whatever else reaches the service (a replayed message whose type was
  edited, say); it binds nothing, so types no service handles go to `hopline.unroutable`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from common.envelope import Envelope
from common.logging import get_logger
from consumer import Registry, RetryableError

__all__ = ["OrderCreated", "registry"]

registry = Registry("demo")
_log = get_logger("hopline.examples")


class OrderCreated(BaseModel):
    order_id: str = Field(min_length=1)
    amount_cents: int = Field(ge=0)


@registry.handler("orders.created", max_attempts=5, timeout=10, model=OrderCreated)
async def order_created(order: OrderCreated) -> None:
    _log.info("order.created", order_id=order.order_id, amount_cents=order.amount_cents)


@registry.handler("payments.charge", max_attempts=5, timeout=10)
async def charge(payload: dict[str, Any], envelope: Envelope) -> dict[str, Any]:
    if envelope.attempt == 1:  # a flaky payment gateway, flaky in the same way every run
        raise RetryableError("payment gateway timed out")
    _log.info("payment.charged", payload=payload)  # the line carries the attempt: 2
    # What a handler returns is its result: `hopline status ID` and GET /v1/messages/ID show it.
    return {"charged_cents": payload.get("amount_cents"), "order_id": payload.get("order_id")}


@registry.handler("reports.render", max_attempts=3, timeout=10)
async def render_report(payload: dict[str, Any]) -> None:
    raise RuntimeError(f"template {payload.get('template', '?')!r} is missing")


@registry.fallback(max_attempts=3, timeout=10)
async def anything_else(payload: Any, envelope: Envelope) -> None:
    _log.info("message.received", payload=payload)
