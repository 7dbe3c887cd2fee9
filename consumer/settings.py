"""A consumer service's settings (`HOPLINE_*`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from common.settings import HoplineSettings, split_commas

__all__ = ["ConsumerSettings"]


_AWAITING_CONFIRMS = 4


class ConsumerSettings(HoplineSettings):
    """A consumer service."""

    handlers: str | None = Field(
        None,
        description="Import path `module:attribute` of the service's handler registry "
        "(required; `consumer.examples:registry` is the demo service of `make run`).",
    )
    concurrency: int = Field(16, ge=1, le=10_000, description="Handlers running at once.")
    prefetch: int | None = Field(
        None,
        ge=1,
        description="Unacked deliveries per priority queue (default: concurrency, times 4 "
        "while lifecycle events are on: handled deliveries wait there for their events' "
        "confirms before they are acked).",
    )
    consume_priorities: Annotated[list[str], NoDecode] | None = Field(
        None, description="Serve only these priorities (default: all)."
    )
    shutdown_grace_s: float = Field(30.0, ge=0)
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve /metrics, /healthz and /readyz on this port (unset: no endpoint).",
    )
    metrics_host: str = Field("0.0.0.0", description="Where the metrics endpoint listens.")
    stuck_after_s: float = Field(
        120.0,
        gt=0,
        description="/readyz fails when a queue has ready messages, a free handler slot, and "
        "no delivery for this long.",
    )
    # Outage protection (consumer/breaker.py): off unless a failure ratio is set.
    breaker_failure_ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Pause consuming when this share of recent outcomes are transient failures.",
    )
    breaker_window_s: float = Field(
        30.0, gt=0, description="Outcomes older than this are forgotten."
    )
    breaker_min_outcomes: int = Field(20, ge=1, description="Fewer outcomes never pause.")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="Pause length before probing.")
    breaker_probes: int = Field(5, ge=1, description="Successful probes that resume consuming.")

    @field_validator("consume_priorities", mode="before")
    @classmethod
    def _split_consumed(cls, value: object) -> object:
        return split_commas(value)

    @model_validator(mode="after")
    def _consumed_are_known(self) -> ConsumerSettings:
        unknown = set(self.consume_priorities or ()) - set(self.priorities)
        if unknown:
            raise ValueError(
                f"consume_priorities {sorted(unknown)} are not in priorities {self.priorities}"
            )
        return self

    @property
    def served_priorities(self) -> tuple[str, ...]:
        """Priorities this process consumes, highest first."""
        wanted = set(self.consume_priorities or self.priorities)
        return tuple(p for p in self.priorities if p in wanted)

    @property
    def effective_prefetch(self) -> int:
        """With events on, a handled delivery stays unacked until its events are confirmed
        (consumer.acks): room for those, or the window fills with them and the consumer
        idles (a no-op drain ran at 0.42x of events off with the window at concurrency,
        0.67x with four times that; bench/README.md)."""
        if self.prefetch:
            return self.prefetch
        return self.concurrency * (_AWAITING_CONFIRMS if self.events_enabled else 1)
