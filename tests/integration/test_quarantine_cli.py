"""`hopline quarantine` and `hopline unroutable` as an operator runs them: a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika

from common.names import Names
from tests.support.broker import BrokerEndpoint, Vhost
from tests.support.pipeline import drain, publish_raw, queue_depth
from tests.support.processes import ROOT
from tests.support.quarantine import seed_quarantine
from tests.support.wait import wait_until_sync

NAMES = Names()
QUARANTINE = NAMES.quarantine("orders")


def hopline(vhost: Vhost, broker: BrokerEndpoint, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        env=_env(vhost, broker),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _env(vhost: Vhost, broker: BrokerEndpoint) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPLINE_")}
    env.update(
        HOPLINE_AMQP_URL=vhost.amqp_url,
        HOPLINE_MANAGEMENT_URL=broker.management_url,
        PYTHONPATH=str(ROOT),
        COLUMNS="200",
    )
    return env


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _seed(vhost: Vhost, count: int, **extra: Any) -> list[str]:
    failures = [{"id": f"m-{n}", "payload": {"n": n}, **extra} for n in range(count)]
    return asyncio.run(seed_quarantine(vhost.amqp_url, "orders", failures))


def test_list_groups_and_show(vhost: Vhost, broker: BrokerEndpoint) -> None:
    _seed(vhost, 3, type="orders.created", error_type="KeyError", error="'sku'\nmore lines")
    listed = _json(hopline(vhost, broker, "quarantine", "list", "--service", "orders", "--json"))
    assert [row["id"] for row in listed] == ["m-0", "m-1", "m-2"]
    assert listed[0]["error"] == "'sku'" and listed[0]["origin_queue"] == "hopline.orders.normal"

    # Without --service every quarantine is found through the management API
    groups = _json(hopline(vhost, broker, "quarantine", "groups", "--json"))
    assert [(g["error_type"], g["message_type"], g["count"]) for g in groups] == [
        ("KeyError", "orders.created", 3)
    ]

    table = hopline(vhost, broker, "quarantine", "list", "--service", "orders")
    assert "m-1" in table.stdout and "KeyError" in table.stdout

    # A unique prefix of an id is enough, as in git; an ambiguous one says so
    shown = hopline(vhost, broker, "quarantine", "show", "m-1", "--service", "orders")
    assert shown.returncode == 0, shown.stderr
    ambiguous = hopline(vhost, broker, "quarantine", "show", "m-", "--service", "orders")
    assert ambiguous.returncode == 2
    assert "'m-' starts 3 message ids: give more of the id" in ambiguous.stderr
    assert '"n": 1' in shown.stdout
    assert "Traceback" in shown.stdout
    assert "x-hopline-queue" in shown.stdout


def test_replay_by_group_and_discard_with_archive_then_import(
    vhost: Vhost, broker: BrokerEndpoint, tmp_path: Path
) -> None:
    _seed(vhost, 4)
    [group] = _json(hopline(vhost, broker, "quarantine", "groups", "-s", "orders", "--json"))

    dry = _json(
        hopline(
            vhost,
            broker,
            "quarantine",
            "replay",
            "--group",
            group["id"],
            "-s",
            "orders",
            "--dry-run",
            "--json",
        )
    )
    assert dry["matched"] == 4 and dry["moved"] == 0
    replayed = _json(
        hopline(vhost, broker, "quarantine", "replay", "m-0", "m-2", "-s", "orders", "--json")
    )
    assert sorted(replayed["ids"]) == ["m-0", "m-2"]
    assert asyncio.run(queue_depth(vhost.amqp_url, "hopline.orders.normal")) == 2

    archive = tmp_path / "archive.jsonl"
    discarded = _json(
        hopline(
            vhost,
            broker,
            "quarantine",
            "discard",
            "--all",
            "-s",
            "orders",
            "--archive",
            str(archive),
            "--json",
        )
    )
    assert discarded["moved"] == 2
    assert len(archive.read_text().splitlines()) == 2
    assert asyncio.run(queue_depth(vhost.amqp_url, QUARANTINE)) == 0

    imported = _json(hopline(vhost, broker, "quarantine", "import", str(archive), "--json"))
    assert imported["moved"] == 2
    assert asyncio.run(queue_depth(vhost.amqp_url, QUARANTINE)) == 2


def test_edit_from_a_file(vhost: Vhost, broker: BrokerEndpoint, tmp_path: Path) -> None:
    _seed(vhost, 1)
    fix = tmp_path / "fix.json"
    fix.write_text('{"payload": {"n": 42}, "headers": {"ticket": "OPS-7"}}')
    result = _json(
        hopline(
            vhost,
            broker,
            "quarantine",
            "replay",
            "m-0",
            "-s",
            "orders",
            "--edit-file",
            str(fix),
            "--json",
        )
    )
    assert result["moved"] == 1
    [copy] = asyncio.run(drain(vhost.amqp_url, "hopline.orders.normal"))
    assert copy.body == b'{"n":42}'
    assert copy.headers["x-hopline-edited-from"] == "m-0"
    # The operator learns the copy's new id, to follow it
    assert result["edited_copies"] == {"m-0": copy.message_id}


def test_errors_are_one_line_for_a_person(
    vhost: Vhost, broker: BrokerEndpoint, tmp_path: Path, unused_amqp_url: str
) -> None:
    _seed(vhost, 1)
    cases = {
        "unknown id": (["quarantine", "show", "nope", "-s", "orders"], "no message 'nope'"),
        "discard without archive": (
            ["quarantine", "discard", "--all", "-s", "orders"],
            "--archive",
        ),
        "nothing chosen": (
            ["quarantine", "replay", "-s", "orders"],
            "give ids, --group G, or --all",
        ),
        "bad duration": (["quarantine", "list", "-s", "orders", "--since", "soon"], "--since"),
    }
    bad_edit = tmp_path / "bad.json"
    bad_edit.write_text("{not json")
    cases["bad edit"] = (
        ["quarantine", "replay", "m-0", "-s", "orders", "--edit-file", str(bad_edit)],
        "not valid JSON",
    )
    for name, (args, expected) in cases.items():
        result = hopline(vhost, broker, *args)
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (name, result.stderr)
        assert "Traceback" not in result.stderr
    # The broker is unreachable
    env = _env(vhost, broker) | {"HOPLINE_AMQP_URL": unused_amqp_url}
    result = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "quarantine", "list", "-s", "orders"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("hopline: error: cannot connect to RabbitMQ")
    assert "secret-pw" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unroutable_list_and_replay_with_a_new_key(vhost: Vhost, broker: BrokerEndpoint) -> None:
    async def setup() -> None:
        await seed_quarantine(vhost.amqp_url, "orders", [])  # declares topology
        await publish_raw(
            vhost.amqp_url,
            NAMES.ingress,
            "urgent.orders.created",
            aio_pika.Message(b'{"n": 1}', message_id="u-1"),
        )

    asyncio.run(setup())
    listed = _json(hopline(vhost, broker, "unroutable", "list", "--json"))
    assert [(m["id"], m["routing_key"]) for m in listed] == [("u-1", "urgent.orders.created")]
    replayed = _json(
        hopline(
            vhost,
            broker,
            "unroutable",
            "replay",
            "u-1",
            "--routing-key",
            "high.orders.created",
            "--json",
        )
    )
    assert replayed["moved"] == 1
    [arrived] = asyncio.run(drain(vhost.amqp_url, "hopline.orders.high"))
    assert arrived.message_id == "u-1"


def test_a_replay_killed_half_way_loses_nothing(vhost: Vhost, broker: BrokerEndpoint) -> None:
    # Given a large quarantine
    count = 3000
    ids = set(_seed(vhost, count))
    origin = "hopline.orders.normal"
    # When `replay --all` is SIGKILLed while it moves messages
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "quarantine", "replay", "--all", "-s", "orders"],
        env=_env(vhost, broker),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while asyncio.run(queue_depth(vhost.amqp_url, origin)) < 200:
        assert time.monotonic() < deadline, "the replay never started moving"
        assert process.poll() is None, "the replay finished before we could kill it"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    # Then every message is in quarantine or in its origin queue (some possibly in both);
    # the broker returns the dead connection's unacked messages to quarantine a moment
    # later, so both queues are drained until every id has turned up (or the deadline)
    in_quarantine: set[str | None] = set()
    in_origin: set[str | None] = set()

    def every_id_found() -> bool:
        in_quarantine.update(m.message_id for m in asyncio.run(drain(vhost.amqp_url, QUARANTINE)))
        in_origin.update(m.message_id for m in asyncio.run(drain(vhost.amqp_url, origin)))
        return ids <= in_quarantine | in_origin

    wait_until_sync(
        every_id_found, timeout_s=30, interval_s=0.1, message="messages lost by the replay"
    )
    assert in_quarantine | in_origin == ids
    assert in_origin and in_quarantine, "killed mid-way: both hold some"


def test_export_copies_and_leaves_the_queue_alone(
    vhost: Vhost, broker: BrokerEndpoint, tmp_path: Path
) -> None:
    _seed(vhost, 5, error_type="KeyError")
    out = tmp_path / "export.jsonl"
    result = hopline(
        vhost,
        broker,
        "quarantine",
        "export",
        "--out",
        str(out),
        "-s",
        "orders",
        "--error",
        "keyerror",
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"m-{n}" for n in range(5)]
    assert asyncio.run(queue_depth(vhost.amqp_url, QUARANTINE)) == 5


def test_publishing_many_copies_sums_up_in_one_line(vhost: Vhost, broker: BrokerEndpoint) -> None:
    # When 25 copies are published (no service bound yet: they are kept as unroutable)
    result = hopline(vhost, broker, "publish", "orders.created", '{"n": 1}', "--count", "25")
    # Then one line says so, with the first and last id, instead of 25 lines
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("confirmed 25 messages -> normal.orders.created (ids ")
    assert asyncio.run(queue_depth(vhost.amqp_url, NAMES.unroutable)) == 25


def test_publish_with_a_delay_waits_in_the_delay_levels(
    vhost: Vhost, broker: BrokerEndpoint
) -> None:
    # When a message is published for delivery in 300 s (256 + 32 + 8 + 4)
    result = hopline(vhost, broker, "publish", "orders.created", '{"n": 1}', "--delay", "300")
    # Then it was confirmed, waits in level 8 (256 s), and nothing has reached a queue yet
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("confirmed ")
    assert "(due in 300 s)" in result.stdout
    assert asyncio.run(queue_depth(vhost.amqp_url, NAMES.delay_level(8))) == 1
    assert asyncio.run(queue_depth(vhost.amqp_url, NAMES.unroutable)) == 0


def test_publish_refuses_a_delay_beyond_the_longest_in_one_line(
    vhost: Vhost, broker: BrokerEndpoint
) -> None:
    result = hopline(vhost, broker, "publish", "orders.created", "{}", "--delay", "1e12")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--delay" in result.stderr


def test_message_content_is_shown_as_data_never_as_markup_or_escapes(
    vhost: Vhost, broker: BrokerEndpoint
) -> None:
    # Given a foreign publisher's error text full of rich markup and terminal escapes
    hostile = "[link=https://evil.example/]harmless[/link] [/bogus] \x1b]8;;https://x\x07hi\x1b[2J"
    _seed(vhost, 1, type="orders.created", error_type="[bold]Evil[/bold]", error=hostile)
    for command in (["list"], ["groups"], ["show", "m-0"]):
        # When an operator looks at it
        shown = hopline(vhost, broker, "quarantine", *command, "--service", "orders")
        # Then the command works and prints the text literally, without control characters
        assert shown.returncode == 0, shown.stderr
        assert "[bold]Evil[/bold]" in shown.stdout
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    listed = hopline(vhost, broker, "quarantine", "show", "m-0", "--service", "orders")
    assert "[link=https://evil.example/]harmless[/link] [/bogus]" in listed.stdout
