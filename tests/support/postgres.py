"""A PostgreSQL database of the test's own: created fresh, dropped afterwards.

`HOPLINE_TEST_POSTGRES_URL` points at a server where the user may create databases
(default `postgresql://postgres@127.0.0.1:5432/postgres`, the server of this machine).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from yarl import URL

from tests.support.needs import missing

__all__ = ["fresh_database"]

_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database `hopline_test_<uuid>`, dropped on exit."""
    import asyncpg

    admin_url = os.environ.get("HOPLINE_TEST_POSTGRES_URL", _DEFAULT)
    try:
        admin = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        missing(f"no PostgreSQL at {admin_url} ({exc}); set HOPLINE_TEST_POSTGRES_URL")
    name = f"hopline_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield str(URL(admin_url).with_path(f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
