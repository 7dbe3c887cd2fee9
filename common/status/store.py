"""The status store: one small interface, one SQL implementation over two databases.

    StatusStore.record(events)     the recorder writes a batch, in one transaction, idempotently
    StatusStore.lookup(id)         a message's status, or None: never seen, or past retention
    StatusStore.ids_starting_with  unique-prefix lookup for the CLI
    StatusStore.claim / confirm / release   idempotency keys of the ingestion API
    StatusStore.claim_many / confirm_many / release_many   a batch's keys: one statement
                                   each (with a chunk per 1000 keys), not a round trip per key
    StatusStore.prune(now)         forget what is older than the retention

`Database` is the port each backend implements (common.status.sqlite, common.status.postgres):
statements use numbered parameters `?1`, `?2` (SQLite's syntax; PostgreSQL's adapter turns
them into `$1`). Every failure of the database becomes `StatusUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

import orjson

from common.errors import ConfigurationError
from common.events import Event
from common.status.states import ServiceState, format_at, is_service_event, rank, state_of

__all__ = [
    "Claim",
    "ClaimRequest",
    "Database",
    "MessageStatus",
    "ServiceStatus",
    "SqlStatusStore",
    "StatusStore",
    "TimelineEntry",
    "open_store",
]

Statement = tuple[str, Sequence[Sequence[Any]]]  # SQL and the rows of parameters it runs for

# `{sortable}`: text that compares byte by byte (times and ranks are fixed-width text).
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hopline_messages (
        message_id TEXT PRIMARY KEY, type TEXT, routing_key TEXT, accepted_at {sortable},
        copy_of TEXT, first_at {sortable} NOT NULL, last_at {sortable} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hopline_messages_copy_of ON hopline_messages (copy_of)",
    "CREATE INDEX IF NOT EXISTS hopline_messages_last_at ON hopline_messages (last_at)",
    """CREATE TABLE IF NOT EXISTS hopline_services (
        message_id TEXT NOT NULL, service TEXT NOT NULL, state TEXT NOT NULL,
        rank {sortable} NOT NULL, attempt INTEGER NOT NULL, at {sortable} NOT NULL,
        delay_s DOUBLE PRECISION, result TEXT, error_type TEXT, error_message TEXT,
        reason TEXT, PRIMARY KEY (message_id, service))""",
    """CREATE TABLE IF NOT EXISTS hopline_events (
        message_id TEXT NOT NULL, service TEXT NOT NULL, event TEXT NOT NULL,
        replay INTEGER NOT NULL, attempt INTEGER NOT NULL, at {sortable} NOT NULL,
        error_type TEXT, error_message TEXT, delay_s DOUBLE PRECISION, reason TEXT,
        result TEXT, copy_of TEXT,
        PRIMARY KEY (message_id, service, event, replay, attempt, at))""",
    """CREATE TABLE IF NOT EXISTS hopline_idempotency (
        scope_key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, message_id TEXT NOT NULL,
        routing_key TEXT NOT NULL, state TEXT NOT NULL, created_at {sortable} NOT NULL)""",
)

_UPSERT_MESSAGE = """
INSERT INTO hopline_messages (message_id, type, routing_key, accepted_at, copy_of, first_at,
                              last_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
ON CONFLICT (message_id) DO UPDATE SET
    type = COALESCE(hopline_messages.type, excluded.type),
    routing_key = COALESCE(hopline_messages.routing_key, excluded.routing_key),
    accepted_at = COALESCE(hopline_messages.accepted_at, excluded.accepted_at),
    copy_of = COALESCE(hopline_messages.copy_of, excluded.copy_of),
    first_at = CASE WHEN excluded.first_at < hopline_messages.first_at
                    THEN excluded.first_at ELSE hopline_messages.first_at END,
    last_at = CASE WHEN excluded.last_at > hopline_messages.last_at
                   THEN excluded.last_at ELSE hopline_messages.last_at END
"""
# The monotone rule itself: a row changes only for a more advanced event.
_UPSERT_SERVICE = """
INSERT INTO hopline_services (message_id, service, state, rank, attempt, at, delay_s, result,
                              error_type, error_message, reason)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (message_id, service) DO UPDATE SET
    state = excluded.state, rank = excluded.rank, attempt = excluded.attempt,
    at = excluded.at, delay_s = excluded.delay_s, result = excluded.result,
    error_type = excluded.error_type, error_message = excluded.error_message,
    reason = excluded.reason
WHERE excluded.rank > hopline_services.rank
"""
_INSERT_EVENT = """
INSERT INTO hopline_events (message_id, service, event, replay, attempt, at, error_type,
                            error_message, delay_s, reason, result, copy_of)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
ON CONFLICT DO NOTHING
"""
# A batch's keys in one statement; RETURNING names the rows inserted, so those are ours
# (SQLite 3.35+ and PostgreSQL both return only inserted rows for DO NOTHING).
_CLAIM_MANY = """
INSERT INTO hopline_idempotency (scope_key, fingerprint, message_id, routing_key, state,
                                 created_at)
VALUES {rows}
ON CONFLICT DO NOTHING
RETURNING scope_key
"""
# Keys per statement: 4 parameters each stay far below SQLite's and PostgreSQL's 32 766.
_KEYS_PER_STATEMENT = 1000
_TAKE_OVER = """
UPDATE hopline_idempotency SET fingerprint = ?2, message_id = ?3, routing_key = ?4,
    state = 'pending', created_at = ?5
WHERE scope_key = ?1 AND created_at = ?6
"""


class Database(Protocol):
    """What a backend provides; every method raises StatusUnavailableError on failure."""

    sortable_text: str  # the column type of text compared byte by byte
    schema_lock: str  # a statement that serialises schema creation between processes, or ""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    async def transaction(self, statements: Sequence[Statement]) -> None:
        """Run every statement for each of its rows, all in one transaction."""

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    event: str
    service: str
    attempt: int
    replay: int
    at: str
    error_type: str | None = None
    error_message: str | None = None
    delay_s: float | None = None
    reason: str | None = None
    result: Any = None
    copy_of: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    service: str
    state: ServiceState
    attempt: int
    at: str
    retry_delay_s: float | None
    result: Any
    error_type: str | None
    error_message: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class MessageStatus:
    message_id: str
    type: str | None
    routing_key: str | None
    accepted_at: str | None
    copy_of: str | None
    copies: list[str]
    services: list[ServiceStatus]
    timeline: list[TimelineEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming an idempotency key.

    `claimed`: this request owns the key and publishes; `accepted`: answered before (the
    first answer's id and routing key); `in_flight`: another request is publishing it;
    `mismatch`: the key was used for a different request."""

    outcome: Literal["claimed", "accepted", "in_flight", "mismatch"]
    message_id: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One key to claim, with the answer it stands for if this request publishes."""

    key: str
    fingerprint: str
    message_id: str
    routing_key: str


class StatusStore(Protocol):
    async def record(self, events: Sequence[Event]) -> None: ...

    async def lookup(self, message_id: str, now: datetime) -> MessageStatus | None: ...

    async def ids_starting_with(self, prefix: str, now: datetime, limit: int) -> list[str]: ...

    async def succeeded(self, message_id: str, service: str) -> bool: ...

    async def succeeded_among(self, service: str, message_ids: Sequence[str]) -> set[str]: ...

    async def claim(
        self, key: str, fingerprint: str, message_id: str, routing_key: str, now: datetime
    ) -> Claim: ...

    async def confirm(self, key: str) -> None: ...

    async def release(self, key: str) -> None: ...

    async def claim_many(self, requests: Sequence[ClaimRequest], now: datetime) -> list[Claim]: ...

    async def confirm_many(self, keys: Sequence[str]) -> None: ...

    async def release_many(self, keys: Sequence[str]) -> None: ...

    async def prune(self, now: datetime) -> int: ...

    async def close(self) -> None: ...


class SqlStatusStore:
    """The status store on any `Database`; `retention_s` bounds what is known.

    A pending idempotency claim older than `stale_claim_s` (its producer died while
    publishing) may be taken over by a new request with the same key."""

    def __init__(self, db: Database, *, retention_s: float, stale_claim_s: float = 30.0) -> None:
        self._db = db
        self._retention = timedelta(seconds=retention_s)
        self._stale_claim = timedelta(seconds=stale_claim_s)
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    async def _ready(self) -> Database:
        """The database, its tables created on first use (so a store that is down at start
        is used as soon as it is back)."""
        if not self._schema_ready:
            async with self._schema_lock:
                if not self._schema_ready:
                    sortable = self._db.sortable_text
                    lock = [(self._db.schema_lock, [()])] if self._db.schema_lock else []
                    await self._db.transaction(
                        lock + [(sql.format(sortable=sortable), [()]) for sql in SCHEMA]
                    )
                    self._schema_ready = True
        return self._db

    async def close(self) -> None:
        self._schema_ready = False  # a database opened again is looked at again
        await self._db.close()

    async def record(self, events: Sequence[Event]) -> None:
        # A start carried in `started_at` is recorded as the `started` it stands for.
        starts = [started for e in events if (started := e.started_event()) is not None]
        # Each time formatted once (it was a tenth of the recorder's time, several per event)
        timed = [(e, format_at(e.at)) for e in map(_storable, (*events, *starts))]
        ranked = [(e, at, rank(e, at)) for e, at in timed]
        # A carried start changes no state (it is never ahead of the event carrying it) and
        # no message row (its message is that event's): it only adds its line to the timeline
        implied = {id(started) for started in starts}
        # Sorted, so two recorders writing overlapping batches take row locks in one order.
        ranked.sort(key=lambda item: (item[0].message_id, item[0].service, item[2]))
        messages = [
            (
                e.message_id,
                e.type,
                e.routing_key,
                at if e.event == "accepted" else None,
                e.copy_of if e.event == "copied" else None,
                at,
            )
            for e, at, _ in ranked
            if id(e) not in implied
        ]
        services = [
            (
                e.message_id,
                e.service,
                state_of(e),
                place,
                e.attempt,
                at,
                e.delay_s,
                _json(e.result),
                e.error_type,
                e.error_message,
                e.reason,
            )
            for e, at, place in ranked
            if is_service_event(e) and id(e) not in implied
        ]
        timeline = [
            (
                e.message_id,
                e.service,
                e.event,
                e.replay,
                e.attempt,
                at,
                e.error_type,
                e.error_message,
                e.delay_s,
                e.reason,
                _json(e.result),
                e.copy_of,
            )
            for e, at, _ in ranked
        ]
        await (await self._ready()).transaction(
            [(_UPSERT_MESSAGE, messages), (_UPSERT_SERVICE, services), (_INSERT_EVENT, timeline)]
        )

    def _cutoff(self, now: datetime) -> str:
        return format_at(now - self._retention)

    async def lookup(self, message_id: str, now: datetime) -> MessageStatus | None:
        db = await self._ready()
        rows = await db.fetch(
            "SELECT type, routing_key, accepted_at, copy_of FROM hopline_messages "
            "WHERE message_id = ?1 AND last_at >= ?2",
            (message_id, self._cutoff(now)),
        )
        if not rows:
            return None
        message_type, routing_key, accepted_at, copy_of = rows[0]
        services = await db.fetch(
            "SELECT service, state, attempt, at, delay_s, result, error_type, error_message, "
            "reason FROM hopline_services WHERE message_id = ?1 ORDER BY service",
            (message_id,),
        )
        events = await db.fetch(
            "SELECT event, service, attempt, replay, at, error_type, error_message, delay_s, "
            "reason, result, copy_of FROM hopline_events WHERE message_id = ?1 "
            "ORDER BY at, replay, attempt",
            (message_id,),
        )
        copies = await db.fetch(
            "SELECT message_id FROM hopline_messages WHERE copy_of = ?1 ORDER BY first_at",
            (message_id,),
        )
        return MessageStatus(
            message_id=message_id,
            type=message_type,
            routing_key=routing_key,
            accepted_at=accepted_at,
            copy_of=copy_of,
            copies=[row[0] for row in copies],
            services=[
                ServiceStatus(
                    service=row[0],
                    state=row[1],
                    attempt=row[2],
                    at=row[3],
                    retry_delay_s=row[4] if row[1] == "retrying" else None,
                    result=_unjson(row[5]),
                    error_type=row[6],
                    error_message=row[7],
                    reason=row[8],
                )
                for row in services
            ],
            timeline=[
                TimelineEntry(
                    event=row[0],
                    service=row[1],
                    attempt=row[2],
                    replay=row[3],
                    at=row[4],
                    error_type=row[5],
                    error_message=row[6],
                    delay_s=row[7],
                    reason=row[8],
                    result=_unjson(row[9]),
                    copy_of=row[10],
                )
                for row in events
            ],
        )

    async def succeeded(self, message_id: str, service: str) -> bool:
        """Whether `service` handled this message successfully (consumer-side dedupe)."""
        return bool(await self.succeeded_among(service, [message_id]))

    async def succeeded_among(self, service: str, message_ids: Sequence[str]) -> set[str]:
        """Which of `message_ids` `service` handled successfully, in one query."""
        if not message_ids:
            return set()
        places = ", ".join(f"?{n}" for n in range(2, len(message_ids) + 2))
        rows = await (await self._ready()).fetch(
            "SELECT message_id FROM hopline_services "
            f"WHERE service = ?1 AND state = 'succeeded' AND message_id IN ({places})",
            (service, *message_ids),
        )
        return {row[0] for row in rows}

    async def ids_starting_with(self, prefix: str, now: datetime, limit: int) -> list[str]:
        rows = await (await self._ready()).fetch(
            "SELECT message_id FROM hopline_messages "
            "WHERE substr(message_id, 1, ?1) = ?2 AND last_at >= ?3 ORDER BY message_id LIMIT ?4",
            (len(prefix), prefix, self._cutoff(now), limit),
        )
        return [row[0] for row in rows]

    async def claim(
        self, key: str, fingerprint: str, message_id: str, routing_key: str, now: datetime
    ) -> Claim:
        """One key's claim: a batch of one (claim_many)."""
        request = ClaimRequest(key, fingerprint, message_id, routing_key)
        [claim] = await self.claim_many([request], now)
        return claim

    async def claim_many(self, requests: Sequence[ClaimRequest], now: datetime) -> list[Claim]:
        """`claim` for each of `requests` (distinct keys), in order: one INSERT for all, and
        one SELECT for those claimed before, so a batch of 100 keys costs two round trips."""
        ours: set[str] = set()
        try:
            return await self._claim_all(requests, now, ours)
        except BaseException:
            # A store that fails halfway must not leave this request's claims pending: a
            # retry would read them as in flight until they went stale.
            with contextlib.suppress(Exception):
                await self.release_many(sorted(ours))
            raise

    async def _claim_all(
        self, requests: Sequence[ClaimRequest], now: datetime, ours: set[str]
    ) -> list[Claim]:
        """claim_many's work; every key it claims goes into `ours` as soon as it has it."""
        created_at = format_at(now)
        db = await self._ready()
        # Inserted in key order: two batches sharing keys in another order would otherwise
        # wait for each other's rows (a deadlock PostgreSQL ends by failing one).
        for chunk in _chunks(sorted(requests, key=lambda request: request.key)):
            rows = ", ".join(
                f"(?{4 * n + 1}, ?{4 * n + 2}, ?{4 * n + 3}, ?{4 * n + 4}, 'pending', "
                f"?{4 * len(chunk) + 1})"
                for n in range(len(chunk))
            )
            args = [value for request in chunk for value in _values(request)]
            inserted = await db.fetch(_CLAIM_MANY.format(rows=rows), (*args, created_at))
            ours.update(row[0] for row in inserted)
        taken = await self._claim_rows([r.key for r in requests if r.key not in ours])
        claims = []
        for request in requests:
            if request.key in ours:
                claim = Claim("claimed", request.message_id, request.routing_key)
            elif request.key in taken:
                claim = await self._claim_taken(request, taken[request.key], now)
            else:  # released between our insert and our look: claimed again
                claim = await self.claim(*_values(request), now)
            if claim.outcome == "claimed":
                ours.add(request.key)
            claims.append(claim)
        return claims

    async def _claim_rows(self, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """The rows of `keys` that exist, by key: (fingerprint, message_id, routing_key,
        state, created_at)."""
        found: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(keys):
            rows = await (await self._ready()).fetch(
                "SELECT scope_key, fingerprint, message_id, routing_key, state, created_at "
                f"FROM hopline_idempotency WHERE scope_key IN ({_places(len(chunk))})",
                chunk,
            )
            found.update((row[0], row[1:]) for row in rows)
        return found

    async def _claim_taken(
        self, request: ClaimRequest, row: tuple[Any, ...], now: datetime
    ) -> Claim:
        """The claim of a key whose row exists: taken over when expired or stale (its
        producer died while publishing), else what the row says."""
        first_fingerprint, first_id, first_key, state, first_at = row
        expired = first_at < self._cutoff(now)
        stale = state == "pending" and first_at < format_at(now - self._stale_claim)
        if expired or stale:
            taken = await (await self._ready()).execute(
                _TAKE_OVER, (*_values(request), format_at(now), first_at)
            )
            if taken:
                return Claim("claimed", request.message_id, request.routing_key)
            return await self.claim(*_values(request), now)
        if first_fingerprint != request.fingerprint:
            return Claim("mismatch", first_id, first_key)
        return Claim("accepted" if state == "accepted" else "in_flight", first_id, first_key)

    async def confirm(self, key: str) -> None:
        await self.confirm_many([key])

    async def release(self, key: str) -> None:
        await self.release_many([key])

    async def confirm_many(self, keys: Sequence[str]) -> None:
        """Mark the claims of `keys` accepted, in one transaction."""
        await self._keys_statement(
            "UPDATE hopline_idempotency SET state = 'accepted' WHERE scope_key IN ({places})",
            keys,
        )

    async def release_many(self, keys: Sequence[str]) -> None:
        """Forget the claims of `keys` still pending (never an accepted one), in one
        transaction, so the same request may be sent again."""
        await self._keys_statement(
            "DELETE FROM hopline_idempotency WHERE state = 'pending' AND scope_key IN ({places})",
            keys,
        )

    async def _keys_statement(self, sql: str, keys: Sequence[str]) -> None:
        """Run `sql` for `keys`: one statement (atomic alone, and one round trip), or a
        transaction of a statement per chunk of keys."""
        statements: list[Statement] = [
            (sql.format(places=_places(len(chunk))), [chunk]) for chunk in _chunks(keys)
        ]
        db = await self._ready()
        if len(statements) == 1:
            [(one, [args])] = statements
            await db.execute(one, args)
        elif statements:
            await db.transaction(statements)

    async def prune(self, now: datetime) -> int:
        """Forget messages and keys older than the retention; the number of messages."""
        cutoff = self._cutoff(now)
        old = "(SELECT message_id FROM hopline_messages WHERE last_at < ?1)"
        count = await (await self._ready()).fetch(
            "SELECT count(*) FROM hopline_messages WHERE last_at < ?1", (cutoff,)
        )
        await (await self._ready()).transaction(
            [
                (f"DELETE FROM hopline_events WHERE message_id IN {old}", [(cutoff,)]),
                (f"DELETE FROM hopline_services WHERE message_id IN {old}", [(cutoff,)]),
                ("DELETE FROM hopline_messages WHERE last_at < ?1", [(cutoff,)]),
                ("DELETE FROM hopline_idempotency WHERE created_at < ?1", [(cutoff,)]),
            ]
        )
        return int(count[0][0])


_Item = TypeVar("_Item")


def _chunks(items: Sequence[_Item]) -> list[Sequence[_Item]]:
    return [
        items[start : start + _KEYS_PER_STATEMENT]
        for start in range(0, len(items), _KEYS_PER_STATEMENT)
    ]


def _values(request: ClaimRequest) -> tuple[str, str, str, str]:
    """A claim's parameters ?1 to ?4, in the order of the INSERT's columns."""
    return request.key, request.fingerprint, request.message_id, request.routing_key


def _places(count: int) -> str:
    """`?1, ?2, ... ?count`: the parameters of an IN list."""
    return ", ".join(f"?{n}" for n in range(1, count + 1))


_TEXT_FIELDS = (
    "message_id",
    "service",
    "type",
    "routing_key",
    "error_type",
    "error_message",
    "reason",
    "copy_of",
)


def _storable(event: Event) -> Event:
    """PostgreSQL text cannot hold NUL: a foreign error message could carry one."""
    changes: dict[str, Any] = {
        name: value.replace("\x00", "\ufffd")
        for name in _TEXT_FIELDS
        if isinstance(value := getattr(event, name), str) and "\x00" in value
    }
    return dataclasses.replace(event, **changes) if changes else event


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _unjson(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def open_store(url: str, *, retention_s: float) -> SqlStatusStore:
    """The store at `url` (`sqlite:///path` or `postgresql://...`); nothing is connected
    until it is used, and each use of a database that is away raises
    StatusUnavailableError (the recorder waits, the API answers 503)."""
    if url.startswith("sqlite:///"):
        from common.status.sqlite import SqliteDatabase

        db: Database = SqliteDatabase(url.removeprefix("sqlite:///"))
    elif url.startswith(("postgresql://", "postgres://")):
        from common.status.postgres import PostgresDatabase

        db = PostgresDatabase(url)
    else:
        raise ConfigurationError(
            "HOPLINE_STATUS_URL must start with sqlite:/// (a file) or postgresql:// "
            f"(got {url.split(':', 1)[0]!r}:...)"
        )
    return SqlStatusStore(db, retention_s=retention_s)
