"""The embedded backend: one SQLite file, used from one thread of its own.

sqlite3 blocks, so every call runs on a single worker thread (which also serialises them:
SQLite has one writer at a time anyway). WAL journaling lets readers (`hopline status`,
another process) look while the recorder writes. A file that cannot be opened or written,
or a lock held longer than `busy_timeout_s`, is StatusUnavailableError.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from common.errors import StatusUnavailableError
from common.status.store import Statement

__all__ = ["SqliteDatabase"]

_T = TypeVar("_T")


class SqliteDatabase:
    sortable_text = "TEXT"  # SQLite compares text byte by byte (BINARY) by default
    schema_lock = ""  # BEGIN IMMEDIATE already makes one writer at a time

    def __init__(self, path: str, *, busy_timeout_s: float = 2.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._connection: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None  # made on first use, again after close

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_s,
                isolation_level=None,  # transactions are explicit (BEGIN ... COMMIT)
                check_same_thread=False,  # always the one worker thread, never two at once
            )
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        def call() -> _T:
            return work(self._connect())

        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hopline-sqlite")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, call)
        except sqlite3.Error as exc:
            raise StatusUnavailableError(
                f"the status store {self._path!r} cannot be used: {exc}"
            ) from exc

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return await self._run(lambda connection: connection.execute(sql, args).rowcount)

    async def transaction(self, statements: Sequence[Statement]) -> None:
        def work(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    if rows:
                        connection.executemany(sql, rows)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        await self._run(work)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._run(lambda connection: connection.execute(sql, args).fetchall())

    async def close(self) -> None:
        """Close the file; a later use opens it again (an app's lifespan may run twice)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return

        def work() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(thread, work)
        thread.shutdown(wait=False)
