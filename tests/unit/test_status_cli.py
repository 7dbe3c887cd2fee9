"""`hopline status ID` reads the status store (a real SQLite file) as a person would."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.status.store import open_store
from tests.support.events import event

# The store keeps a week by default; these events are from a fixed day in 2026.
RETENTION = {"HOPLINE_STATUS_RETENTION_S": str(10 * 365 * 86400)}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'status.sqlite3'}"

    async def fill() -> None:
        store = open_store(url, retention_s=1e9)
        life = [
            event("accepted", message_id="2b0c-one"),
            event("started", message_id="2b0c-one", second=1),
            event(
                "retry_scheduled",
                message_id="2b0c-one",
                second=2,
                delay_s=1.0,
                error_type="RetryableError",
                error_message="gateway timed out",
            ),
            event("started", message_id="2b0c-one", second=3, attempt=2),
            event("succeeded", message_id="2b0c-one", second=4, attempt=2, result={"ok": 1}),
            event("accepted", message_id="2b1d-two"),
        ]
        await store.record(life)
        await store.close()

    asyncio.run(fill())
    return url


def hopline(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOPLINE_")}
    environment.update({"HOPLINE_STATUS_URL": store_url, **RETENTION})
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_a_unique_prefix_shows_the_state_and_the_timeline(store_url: str) -> None:
    result = hopline(store_url, "status", "2b0c")

    assert result.returncode == 0, result.stderr
    assert "demo: succeeded (attempt 2" in result.stdout
    assert "retry_scheduled" in result.stdout and "RetryableError" in result.stdout


def test_json_output_holds_every_event(store_url: str) -> None:
    result = hopline(store_url, "status", "2b0c-one", "--json")

    found = json.loads(result.stdout)
    assert [e["event"] for e in found["timeline"]] == [
        "accepted",
        "started",
        "retry_scheduled",
        "started",
        "succeeded",
    ]
    assert found["services"]["demo"]["result"] == {"ok": 1}


@pytest.mark.parametrize(
    ("given", "says"),
    [("nope", "is unknown"), ("2b", "starts more than one message id")],
)
def test_an_unknown_or_ambiguous_id_is_one_line(store_url: str, given: str, says: str) -> None:
    result = hopline(store_url, "status", given)

    assert result.returncode == 2
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
