"""The shared backend: PostgreSQL through asyncpg, for several producers or recorders.

Connections are made when first needed (a server that is down at start is used once it is
back); statements written with `?N` parameters run as PostgreSQL's `$N`. A server that is
down, unreachable or too slow (`timeout_s`) is StatusUnavailableError.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from common.errors import StatusUnavailableError
from common.redact import redact_url
from common.status.store import Statement

__all__ = ["PostgresDatabase"]

_PARAMETER = re.compile(r"\?(\d+)")


def postgres_sql(sql: str) -> str:
    """`?1` -> `$1`."""
    return _PARAMETER.sub(r"$\1", sql)


class PostgresDatabase:
    sortable_text = 'TEXT COLLATE "C"'  # the database's collation may ignore punctuation
    # Two processes creating the tables at once would collide in PostgreSQL's catalog.
    schema_lock = "SELECT pg_advisory_xact_lock(7341100)"

    def __init__(self, url: str, *, timeout_s: float = 5.0, max_connections: int = 10) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._pool: Any = None

    async def _acquire_pool(self) -> Any:
        import asyncpg

        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=0,
                max_size=self._max_connections,
                timeout=self._timeout_s,
                command_timeout=self._timeout_s,
            )
        return self._pool

    def _unavailable(self, exc: BaseException) -> StatusUnavailableError:
        return StatusUnavailableError(
            f"the status store at {redact_url(self._url)} cannot be used: "
            f"{type(exc).__name__}: {redact_url(str(exc))}"
        )

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            pool = await self._acquire_pool()
            status: str = await pool.execute(postgres_sql(sql), *args, timeout=self._timeout_s)
        except Exception as exc:
            raise self._unavailable(exc) from exc
        tail = status.rsplit(" ", 1)[-1]  # "INSERT 0 1", "UPDATE 1", "DELETE 0"
        return int(tail) if tail.isdigit() else 0

    async def transaction(self, statements: Sequence[Statement]) -> None:
        try:
            pool = await self._acquire_pool()
            async with (
                pool.acquire(timeout=self._timeout_s) as connection,
                connection.transaction(),
            ):
                for sql, rows in statements:
                    if rows and not any(rows):  # a statement without parameters
                        await connection.execute(postgres_sql(sql), timeout=self._timeout_s)
                    elif rows:
                        await connection.executemany(
                            postgres_sql(sql), rows, timeout=self._timeout_s
                        )
        except Exception as exc:
            raise self._unavailable(exc) from exc

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            pool = await self._acquire_pool()
            records = await pool.fetch(postgres_sql(sql), *args, timeout=self._timeout_s)
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return [tuple(record) for record in records]

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await pool.close()
            except Exception:
                pool.terminate()
