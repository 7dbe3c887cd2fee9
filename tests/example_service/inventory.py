"""A new service as docs/writing-a-service.md writes it: stock reservations."""

from __future__ import annotations

from pydantic import BaseModel, Field

from consumer import Envelope, PermanentError, Registry, RetryableError

registry = Registry("inventory")  # queues hopline.inventory.<priority>, .quarantine

KNOWN_SKUS = {"apple", "pear"}


class Reservation(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(gt=0)


@registry.handler("stock.reserve", model=Reservation, max_attempts=3, timeout=5)
async def reserve(reservation: Reservation, envelope: Envelope) -> None:
    if reservation.sku not in KNOWN_SKUS:
        raise PermanentError(f"unknown sku {reservation.sku!r}")  # quarantined at once
    if reservation.quantity > 100:  # the warehouse confirms large orders later
        raise RetryableError(f"no confirmation yet on attempt {envelope.attempt}")
