"""Fault scenarios: a numbered stream through the real producer and consumers, and its tally.

`HttpStream` posts uniquely numbered messages to a producer process at a steady rate and
remembers every answer. `Pipeline` runs the producer and consumer processes. `tally()`
accounts for every message at the end: every answer (sent = 202 + 503 + other statuses + no
answer), handled (from the consumers' record file), duplicated, quarantined, lost (accepted
but neither handled nor quarantined, which must be 0), wrong outcomes (quarantined though
expected to be handled, or the reverse, or quarantined with another reason than expected:
must be 0 too) and status disagreements (an accepted message whose state in the producer's
status store is not what the handlers saw: succeeded, or quarantined; reported).
Results are kept in `RESULTS` for the table `tests/chaos/conftest.py` prints, and appended
as JSON lines to `$HOPLINE_CHAOS_REPORT` when that is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aio_pika
import httpx
import orjson

from common.names import Names
from common.quarantine.failed import failed_from_delivery
from deploy.local.broker import free_port
from tests.support.pipeline import drain
from tests.support.processes import read_records, service_process
from tests.support.wait import wait_until, wait_until_sync

__all__ = [
    "EXIT",
    "FAIL_FIRST",
    "RESULTS",
    "HttpStream",
    "Pipeline",
    "Supervisor",
    "Tally",
    "consumer_count",
    "format_table",
    "tally",
    "through_fault",
]

NAMES = Names()
SERVICE = "chaos"
HANDLERS = "tests.chaos.handlers:registry"
MESSAGE_TYPE = "chaos.work"
RESULTS: list[Tally] = []


@dataclass(slots=True)
class Answer:
    sent_at: float
    answered_at: float
    status: int | None  # None: no HTTP answer at all (connection refused, timeout)
    message_id: str | None = None  # from a 202


# What the chaos handler (tests/chaos/handlers.py) does with a payload besides its number.
FAIL_FIRST = "fail_first"  # a RetryableError on attempt 1: it waits in the delay levels
EXIT = "exit"  # the process exits on every attempt: a poison message


class HttpStream:
    """Posts messages 0..count-1 to the producer at `rate_per_s`, one request each.

    `flags(n)` adds the handler's instructions (FAIL_FIRST, EXIT) to message n's payload.
    """

    def __init__(
        self,
        port: int,
        count: int,
        rate_per_s: float,
        *,
        concurrency: int = 16,
        sleep_s: float = 0,
        flags: Callable[[int], Mapping[str, bool]] = lambda _n: {},
    ) -> None:
        self.port = port
        self.count = count
        self.rate_per_s = rate_per_s
        self.concurrency = concurrency
        self.sleep_s = sleep_s
        self.flags = flags
        self.answers: dict[int, Answer] = {}
        self.started = 0

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency)
        slots = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", timeout=15, limits=limits
        ) as client:
            start = time.monotonic()
            tasks = []
            for n in range(self.count):
                delay = start + n / self.rate_per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                self.started = n + 1
                tasks.append(asyncio.create_task(self._post(client, n, slots)))
            await asyncio.gather(*tasks)

    async def _post(self, client: httpx.AsyncClient, n: int, slots: asyncio.Semaphore) -> None:
        sent_at = time.time()
        status: int | None
        try:
            response = await client.post(
                "/v1/messages",
                json={
                    "type": MESSAGE_TYPE,
                    "payload": {"n": n, "sleep_s": self.sleep_s, **self.flags(n)},
                },
            )
            status = response.status_code
            message_id = response.json().get("message_id") if status == 202 else None
        except httpx.HTTPError:
            status, message_id = None, None
        finally:
            slots.release()
        self.answers[n] = Answer(sent_at, time.time(), status, message_id)

    async def wait_sent(self, count: int) -> None:
        """Until `count` messages have been started (the moment to inject a fault)."""
        await wait_until(lambda: self.started >= count, timeout_s=300, interval_s=0.02)

    def accepted(self) -> set[int]:
        return {n for n, answer in self.answers.items() if answer.status == 202}


@dataclass
class Tally:
    scenario: str
    sent: int
    accepted: int
    refused_503: int
    other_status: int  # answers that are neither 202 nor 503 (any 5xx here is a defect)
    no_answer: int
    processed: int  # accepted messages handled at least once
    duplicates: int  # extra handlings, of any message
    quarantined: int
    lost: int  # accepted, never handled, not in quarantine: must be 0
    wrong_outcome: int  # quarantined but not expected there, or the reverse, or wrong reason
    handled_not_accepted: int  # a 503 whose publish the broker kept after all: allowed
    recovery_s: float | None
    status_disagreements: int | None  # None: the producer kept no status store here
    notes: dict[str, object] = field(default_factory=dict)


def tally(
    scenario: str,
    stream: HttpStream,
    records: list[dict[str, object]],
    quarantine: Mapping[int, str],
    *,
    fault_at: float | None,
    expected_quarantine: Mapping[int, str] | None = None,
    notes: dict[str, object] | None = None,
) -> Tally:
    """`quarantine`: message number -> reason found there; `expected_quarantine`: the numbers
    that must end there, each with the start of its reason (none by default)."""
    expected = expected_quarantine or {}
    quarantined = set(quarantine)
    handled = Counter(int(record["n"]) for record in records)  # type: ignore[call-overload]
    wrong = quarantined ^ set(expected)
    wrong |= {n for n in quarantined & set(expected) if not quarantine[n].startswith(expected[n])}
    wrong |= set(expected) & set(handled)  # a poison message cannot have been handled
    accepted = stream.accepted()
    statuses = Counter(answer.status for answer in stream.answers.values())
    result = Tally(
        scenario=scenario,
        sent=len(stream.answers),
        accepted=len(accepted),
        refused_503=statuses[503],
        other_status=sum(n for status, n in statuses.items() if status not in (202, 503, None)),
        no_answer=statuses[None],
        processed=len(accepted & set(handled)),
        duplicates=sum(count - 1 for count in handled.values()),
        quarantined=len(quarantined),
        lost=len(accepted - set(handled) - quarantined),
        wrong_outcome=len(wrong),
        handled_not_accepted=len(set(handled) - accepted),
        recovery_s=_recovery_s(stream, records, fault_at),
        status_disagreements=_status_disagreements(stream, set(handled), quarantined),
        notes=notes or {},
    )
    others = Counter(a.status for a in stream.answers.values() if a.status not in (202, 503))
    if others:
        result.notes["answers"] = dict(sorted(others.items(), key=str))
    RESULTS.append(result)
    report = os.environ.get("HOPLINE_CHAOS_REPORT")
    if report:
        with open(report, "ab") as out:
            out.write(orjson.dumps(asdict(result)) + b"\n")
    # A fault is a 503 (try again) for a client, never another server error.
    assert not [s for s in others if s is not None and s >= 500], result
    # What the status says of every accepted message agrees with what its handlers saw
    # (tests/chaos/README.md, "The status under faults").
    assert result.status_disagreements in (None, 0), result
    return result


# Where each producer process keeps its status store (tests.support.processes puts it in
# the directory of the producer's log), by the producer's port.
STATUS_STORES: dict[int, Path] = {}


def _status_disagreements(
    stream: HttpStream, handled: set[int], quarantined: set[int], timeout_s: float = 30
) -> int | None:
    """Accepted messages whose recorded state is not what the handlers saw, once the
    recorder has had `timeout_s` to catch up; None without a status store."""
    path = STATUS_STORES.get(stream.port)
    if path is None or not path.exists():
        return None
    expected = {
        answer.message_id: "succeeded" if n in handled else "quarantined"
        for n, answer in stream.answers.items()
        if answer.message_id is not None and (n in handled or n in quarantined)
    }

    def disagreeing() -> int:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            states = dict(
                db.execute(
                    "SELECT message_id, state FROM hopline_services WHERE service = ?",
                    (SERVICE,),
                ).fetchall()
            )
        return sum(1 for message_id, state in expected.items() if states.get(message_id) != state)

    with contextlib.suppress(AssertionError):
        wait_until_sync(lambda: disagreeing() == 0, timeout_s, interval_s=0.5)
    return disagreeing()


def _recovery_s(
    stream: HttpStream, records: list[dict[str, object]], fault_at: float | None
) -> float | None:
    """From the fault until the pipeline works for good: the first message posted after the
    last refusal (or after the fault, when nothing was refused) is accepted and handled."""
    if fault_at is None:
        return None
    refused = [
        a.answered_at for a in stream.answers.values() if a.sent_at >= fault_at and a.status != 202
    ]
    since = max(refused, default=fault_at)
    after = {n: a for n, a in stream.answers.items() if a.sent_at >= since and a.status == 202}
    handled_at = {int(r["n"]): float(r["t"]) for r in records if int(r["n"]) in after}  # type: ignore[call-overload]
    if not handled_at:
        return None
    first = min(handled_at, key=lambda n: after[n].sent_at)
    return round(max(after[first].answered_at, handled_at[first]) - fault_at, 2)


async def settle(
    stream: HttpStream,
    records_path: Path,
    timeout_s: float = 120,
    *,
    never_handled: frozenset[int] = frozenset(),
) -> list[dict[str, object]]:
    """Wait (with a deadline) until every accepted message but `never_handled` has been
    handled; the records."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_records(records_path)
        missing = stream.accepted() - never_handled - {int(r["n"]) for r in records}
        if not missing or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.5)


async def through_fault(
    stream: HttpStream,
    records_path: Path,
    *,
    after: int,
    fault: Callable[[], Awaitable[object]],
) -> tuple[float, list[dict[str, object]]]:
    """Send the stream, inject `fault` once `after` messages went out, wait until all settles.

    Returns when the fault began (wall clock) and the handlers' records.
    """
    sending = asyncio.create_task(stream.run())
    await stream.wait_sent(after)
    fault_at = time.time()
    await fault()
    await sending
    return fault_at, await settle(stream, records_path)


async def quarantined_numbers(amqp_url: str) -> dict[int, str]:
    """Take everything out of the service's quarantine: message number -> reason, as an
    operator reads it (`hopline quarantine list`)."""
    try:
        messages = await drain(amqp_url, NAMES.quarantine(SERVICE))
    except aio_pika.exceptions.AMQPException:
        return {}
    numbers = {}
    for message in messages:
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
            numbers[int(orjson.loads(message.body)["n"])] = failed_from_delivery(message).reason
    return numbers


async def consumer_count(amqp_url: str, priority: str = "normal") -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(NAMES.work_queue(SERVICE, priority), passive=True)
        return int(queue.declaration_result.consumer_count or 0)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return 0
    finally:
        await connection.close()


class Supervisor:
    """Restarts the pipeline's consumer whenever it exits, as systemd or Kubernetes would."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.exits: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Supervisor:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        process = self.pipeline.start_consumer()
        while True:
            await asyncio.sleep(0.05)
            if process.poll() is not None:
                self.exits.append(process.returncode)
                process = self.pipeline.start_consumer()


class Pipeline:
    """A producer process and consumer processes, all pointed at `services_url`."""

    def __init__(
        self,
        services_url: str,
        tmp_path: Path,
        *,
        consumer_env: dict[str, str] | None = None,
        producer_env: dict[str, str] | None = None,
    ) -> None:
        self.services_url = services_url
        self.tmp_path = tmp_path
        self.records = tmp_path / "records.jsonl"
        self.port = free_port()
        self.consumers: list[subprocess.Popen[bytes]] = []
        self._consumer_env = {
            "HOPLINE_HANDLERS": HANDLERS,
            "HOPLINE_TEST_RECORD_FILE": str(self.records),
            "HOPLINE_LOG_LEVEL": "warning",
            "HOPLINE_CONCURRENCY": "16",
            "HOPLINE_SHUTDOWN_GRACE_S": "20",
            **(consumer_env or {}),
        }
        self._producer_env = {
            "HOPLINE_PORT": str(self.port),
            "HOPLINE_LOG_LEVEL": "warning",
            "HOPLINE_PUBLISH_TIMEOUT_S": "2",
            "HOPLINE_RETRY_AFTER_S": "1",
            **(producer_env or {}),
        }
        self._stack = ExitStack()

    def __enter__(self) -> Pipeline:
        self._stack.__enter__()
        STATUS_STORES[self.port] = self.tmp_path / "status.sqlite3"  # see processes.py
        self._stack.enter_context(
            service_process(
                "producer", self.services_url, self.tmp_path / "producer.log", **self._producer_env
            )
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)

    def start_consumer(self, **env: str) -> subprocess.Popen[bytes]:
        index = len(self.consumers)
        process = self._stack.enter_context(
            service_process(
                "consumer",
                self.services_url,
                self.tmp_path / f"consumer-{index}.log",
                **{**self._consumer_env, **env},
            )
        )
        self.consumers.append(process)
        return process

    async def wait_ready(self, amqp_url: str, consumers: int, timeout_s: float = 30) -> None:
        """Until the producer answers /readyz and `consumers` consume the normal queue."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    ready = (await client.get("/readyz")).status_code == 200
                    if ready and await consumer_count(amqp_url) >= consumers:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"pipeline not ready within {timeout_s:g}s; logs in {self.tmp_path}"
                    )
                await asyncio.sleep(0.2)


_COLUMNS = (
    ("scenario", "scenario"),
    ("sent", "sent"),
    ("accepted", "accepted"),
    ("refused_503", "503"),
    ("other_status", "other"),
    ("no_answer", "no answer"),
    ("processed", "processed"),
    ("duplicates", "duplicates"),
    ("quarantined", "quarantined"),
    ("lost", "lost"),
    ("wrong_outcome", "wrong outcome"),
    ("handled_not_accepted", "handled w/o 202"),
    ("recovery_s", "recovery s"),
    ("status_disagreements", "status disagreements"),
    ("notes", "notes"),
)


def format_table(results: list[Tally]) -> str:
    """A Markdown table, one row per scenario."""
    header = "| " + " | ".join(title for _, title in _COLUMNS) + " |"
    rule = "|" + "|".join("---" if key == "scenario" else "---:" for key, _ in _COLUMNS) + "|"
    rows = []
    for result in results:
        values = asdict(result)
        values["notes"] = ", ".join(f"{k}={v}" for k, v in result.notes.items())
        cells = ["—" if values[key] is None else str(values[key]) for key, _ in _COLUMNS]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *rows])
