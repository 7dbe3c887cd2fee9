"""The admin API's request and response bodies (`producer/admin.py` has the routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, JsonValue

__all__ = [
    "DiscardIn",
    "EditIn",
    "GroupOut",
    "MessageDetail",
    "MessageSummary",
    "MoveIn",
    "MoveOut",
    "ReplayIn",
    "UnroutableReplayIn",
]


class MessageSummary(BaseModel):
    id: str
    queue: str
    type: str | None
    origin_queue: str | None
    routing_key: str
    attempts: int | None
    error_type: str
    error: str
    reason: str
    failed_at: datetime | None
    replay_count: int
    failed_again_after_replay: bool


class MessageDetail(MessageSummary):
    properties: dict[str, Any]
    headers: dict[str, Any]
    payload: str
    traceback: str


class GroupOut(BaseModel):
    id: str
    queue: str
    error_type: str
    message_type: str | None
    count: int
    oldest: datetime | None
    newest: datetime | None
    failed_again: int
    example_error: str


class EditIn(BaseModel):
    payload: JsonValue = None
    headers: dict[str, str] = Field(default_factory=dict)
    replace_payload: bool = Field(True, description="False keeps the original payload.")


class MoveIn(BaseModel):
    ids: list[str] = Field(default_factory=list)
    group: str | None = None
    all: bool = Field(False, description="Every message matching the filters.")
    service: list[str] = Field(default_factory=list, description="Default: every quarantine.")
    type: str | None = None
    error: str | None = None
    since: str | None = Field(None, description="e.g. 15m, 2h, 7d")
    dry_run: bool = False


class ReplayIn(MoveIn):
    edit: EditIn | None = None


class DiscardIn(MoveIn):
    archive: bool = Field(True, description="False deletes for good, without an archive line.")


class UnroutableReplayIn(BaseModel):
    ids: list[str] = Field(default_factory=list)
    all: bool = False
    type: str | None = None
    routing_key: str | None = Field(None, description="Publish under this key instead.")
    dry_run: bool = False


class MoveOut(BaseModel):
    examined: int
    matched: int
    moved: int
    dry_run: bool
    ids: list[str]
    failures: list[dict[str, str]]
    edited_copies: dict[str, str] = Field(
        default_factory=dict, description="Original id -> id of its edited copy."
    )
    archive: str | None = None
