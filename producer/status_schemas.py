"""Response bodies of `GET /v1/messages/{id}`: where a message is, per consuming service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, JsonValue

from common.status.store import MessageStatus, TimelineEntry

__all__ = ["AttemptOut", "MessageStatusOut", "ServiceStatusOut", "TimelineEntryOut", "Unknown"]

State = Literal[
    "accepted", "processing", "retrying", "succeeded", "quarantined", "discarded", "unroutable"
]


class TimelineEntryOut(BaseModel):
    event: str = Field(description="accepted, started, succeeded, retry_scheduled, ...")
    service: str = Field(description="The consuming service, or `producer` for `accepted`.")
    attempt: int
    replay: int = Field(description="How many times the message had been replayed then.")
    at: str = Field(description="UTC, RFC 3339.")
    error_type: str | None = None
    error_message: str | None = None
    delay_s: float | None = None
    reason: str | None = None
    result: JsonValue = None
    copy_of: str | None = None


class AttemptOut(BaseModel):
    replay: int
    attempt: int
    started_at: str | None
    finished_at: str | None
    outcome: Literal["running", "succeeded", "retry_scheduled", "quarantined"]
    error_type: str | None = None
    error_message: str | None = None
    retry_delay_s: float | None = None


class ServiceStatusOut(BaseModel):
    state: State
    attempt: int = Field(description="The attempt the state is about (1-based).")
    updated_at: str
    retry_delay_s: float | None = Field(None, description="While retrying: the wait.")
    result: JsonValue = Field(None, description="What the handler returned (when succeeded).")
    error_type: str | None = None
    error_message: str | None = None
    reason: str | None = Field(
        None, description="Why it was quarantined, or why it is unroutable and where it is kept."
    )
    attempts: list[AttemptOut]


class MessageStatusOut(BaseModel):
    message_id: str
    type: str | None
    routing_key: str | None
    accepted_at: str | None = Field(
        description="When the producer accepted it (None if it came from another publisher)."
    )
    copy_of: str | None = Field(description="The original this is an edited copy of.")
    copies: list[str] = Field(description="Edited copies made of this message.")
    services: dict[str, ServiceStatusOut] = Field(
        description="Per consuming service that has seen it; empty while it waits for its "
        "first delivery. `producer` in state `unroutable`: no binding matched its routing key, "
        "so no service will see it (it is kept in the unroutable queue)."
    )
    timeline: list[TimelineEntryOut]


class Unknown(BaseModel):
    status: Literal["unknown"] = "unknown"
    detail: str


def status_out(status: MessageStatus) -> MessageStatusOut:
    return MessageStatusOut(
        message_id=status.message_id,
        type=status.type,
        routing_key=status.routing_key,
        accepted_at=status.accepted_at,
        copy_of=status.copy_of,
        copies=status.copies,
        services={
            service.service: ServiceStatusOut(
                state=service.state,
                attempt=service.attempt,
                updated_at=service.at,
                retry_delay_s=service.retry_delay_s,
                result=service.result,
                error_type=service.error_type,
                error_message=service.error_message,
                reason=service.reason,
                attempts=attempts_of(
                    [entry for entry in status.timeline if entry.service == service.service]
                ),
            )
            for service in status.services
        },
        timeline=[
            TimelineEntryOut.model_validate(entry, from_attributes=True)
            for entry in status.timeline
        ],
    )


_FINISHING = {"succeeded", "retry_scheduled", "quarantined"}


def attempts_of(entries: list[TimelineEntry]) -> list[AttemptOut]:
    """One row per (replay, attempt) a service ran: when it started, how it ended."""
    runs: dict[tuple[int, int], AttemptOut] = {}
    for entry in entries:
        if entry.event != "started" and entry.event not in _FINISHING:
            continue
        key = (entry.replay, entry.attempt)
        run = runs.setdefault(
            key,
            AttemptOut(
                replay=entry.replay,
                attempt=entry.attempt,
                started_at=None,
                finished_at=None,
                outcome="running",
            ),
        )
        if entry.event == "started":
            run.started_at = run.started_at or entry.at
        else:
            run.finished_at = entry.at
            run.outcome = entry.event  # type: ignore[assignment]
            run.error_type = entry.error_type
            run.error_message = entry.error_message
            run.retry_delay_s = entry.delay_s
    return [runs[key] for key in sorted(runs)]
