"""`hopline`: the operator's command line (topology, publishing, quarantine).

It lives with the consumer runtime because `--handlers` loads consumer registries; the
producer never imports it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common import headers as h
from common.apikeys import ApiKeySpec, hash_key, new_key
from common.asyncapi import asyncapi_document
from common.connection import broker_version, connect
from common.declare import declare_topology
from common.definitions import (
    BrokerUser,
    password_hash,
    role_permissions,
    to_definitions,
    to_mermaid,
)
from common.delays import MAX_DELAY_S, DelayError, publish_route
from common.envelope import new_envelope, to_message
from common.errors import ConfigurationError, HoplineError
from common.legacy_tiers import LegacyTier, retire_legacy_tiers
from common.settings import HoplineSettings, load_settings
from common.topology import (
    CURRENT_RELEASE,
    BrokerVersion,
    Topology,
    core_topology,
    service_topology,
)
from consumer.loader import load_registry
from consumer.quarantine_cli import quarantine_app, unroutable_app
from consumer.status_cli import recorder, status

__all__ = ["app", "main"]

app = typer.Typer(
    name="hopline",
    help="Operate a hopline pipeline on RabbitMQ. Every command reads the broker from "
    "HOPLINE_AMQP_URL (default amqp://guest:guest@localhost:5672/; `make run` prints an "
    "`export` line for its own node) and HOPLINE_PREFIX; commands that look at every "
    "quarantine also use HOPLINE_MANAGEMENT_URL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
topology_app = typer.Typer(help="Declare or export the broker topology.", no_args_is_help=True)
app.add_typer(topology_app, name="topology")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(unroutable_app, name="unroutable")
app.command("status")(status)
app.command("recorder")(recorder)


class ExportFormat(StrEnum):
    definitions = "definitions"
    mermaid = "mermaid"


HandlersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--handlers",
        help="Registry import path (module:attribute) of a service to include; repeatable.",
    ),
]


def _settings() -> HoplineSettings:
    return load_settings(HoplineSettings)


def _topology(
    settings: HoplineSettings, handlers: list[str] | None, version: BrokerVersion
) -> Topology:
    topology = core_topology(settings, version)
    for path in handlers or ():
        registry = load_registry(path)
        topology = topology + service_topology(
            settings, registry.service, registry.type_patterns, version
        )
    return topology


@topology_app.command("declare")
def topology_declare(handlers: HandlersOption = None) -> None:
    """Declare the core topology (and the queues of the given services) idempotently."""
    settings = _settings()

    async def declare() -> int:
        connection = await connect(settings, name="hopline-cli")
        try:
            topology = _topology(settings, handlers, broker_version(connection))
            await declare_topology(connection, topology)
            return len(topology.queues)
        finally:
            await connection.close()

    count = asyncio.run(declare())
    typer.echo(f"declared {count} queues under prefix {settings.prefix!r}")


@topology_app.command("retire-tiers")
def topology_retire_tiers() -> None:
    """Delete the empty retry tiers of a version before the delay levels (hopline.retry.*)."""
    settings = _settings()

    async def retire() -> tuple[list[str], list[LegacyTier]]:
        connection = await connect(settings, name="hopline-cli")
        try:
            return await retire_legacy_tiers(connection, settings)
        finally:
            await connection.close()

    deleted, kept = asyncio.run(retire())
    for name in deleted:
        typer.echo(f"deleted {name}")
    for tier in kept:
        typer.echo(
            f"kept {tier.queue}: {tier.messages} messages still wait there; they return to "
            "their queues when their TTL expires, then run this again"
        )
    if not deleted and not kept:
        typer.echo("no retry tiers of an earlier version: nothing to do")


@topology_app.command("export")
def topology_export(
    handlers: HandlersOption = None,
    fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.definitions,
    vhost: Annotated[str, typer.Option(help="vhost named in the definitions")] = "/",
    broker_version_text: Annotated[
        str, typer.Option("--broker-version", help="Target RabbitMQ version, e.g. 3.13 or 4.1")
    ] = f"{CURRENT_RELEASE.major}.{CURRENT_RELEASE.minor}",
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout")] = None,
    users: Annotated[
        bool,
        typer.Option(
            "--users",
            help="Add one least-privilege user per role (producer, consumer-<service>, "
            "operator), named <prefix>-<role>, password from HOPLINE_<ROLE>_PASSWORD "
            "(stored as a salted hash).",
        ),
    ] = False,
) -> None:
    """Print the topology as RabbitMQ definitions JSON or as a Mermaid diagram (offline)."""
    settings = _settings()
    version = BrokerVersion.parse(broker_version_text)
    topology = _topology(settings, handlers, version)
    if fmt is ExportFormat.definitions:
        broker_users = _broker_users(settings, handlers, version) if users else []
        document = to_definitions(topology, vhost=vhost, users=broker_users)
        text = json.dumps(document, indent=2) + "\n"
    else:
        text = to_mermaid(topology)
    _emit(text, out)


@app.command("asyncapi")
def asyncapi(
    handlers: HandlersOption = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout")] = None,
    version: Annotated[str, typer.Option(help="The document's info.version")] = "1.0.0",
) -> None:
    """Print the AMQP contract of the given services as an AsyncAPI 3.0.0 document (offline):
    routing keys, payload schemas, properties and headers. The producer serves the file
    named by HOPLINE_ASYNCAPI_FILE at /asyncapi.json and renders it at /asyncapi."""
    registries = [load_registry(path) for path in handlers or ()]
    document = asyncapi_document(_settings(), registries, version=version)
    _emit(json.dumps(document, indent=2) + "\n", out)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)


def _password_variable(role: str) -> str:
    """`consumer-demo` -> `HOPLINE_CONSUMER_DEMO_PASSWORD`."""
    return f"HOPLINE_{role.upper().replace('-', '_').replace('.', '_')}_PASSWORD"


def _broker_users(
    settings: HoplineSettings, handlers: list[str] | None, version: BrokerVersion
) -> list[BrokerUser]:

    services = []
    for path in handlers or ():
        registry = load_registry(path)
        topology = service_topology(settings, registry.service, registry.type_patterns, version)
        services.append((registry.service, topology))
    roles = role_permissions(
        settings.names,
        priorities=settings.priorities,
        core=core_topology(settings, version),
        services=services,
    )
    missing = [
        _password_variable(role) for role in roles if not os.environ.get(_password_variable(role))
    ]
    if missing:
        raise ConfigurationError(
            "--users needs a password for every role; set " + ", ".join(missing)
        )
    return [
        BrokerUser(
            name=f"{settings.prefix}-{role}",
            password_hash=password_hash(os.environ[_password_variable(role)]),
            rights=rights,
            tags=("management",) if role == "operator" else (),
        )
        for role, rights in roles.items()
    ]


@app.command("publish")
def publish(
    message_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. orders.created")],
    payload: Annotated[str, typer.Argument(help="JSON payload, or @file.json")],
    priority: Annotated[str, typer.Option(help="One of the configured priorities")] = "normal",
    correlation_id: Annotated[str | None, typer.Option()] = None,
    count: Annotated[int, typer.Option(min=1, help="Publish this many copies")] = 1,
    delay: Annotated[
        float,
        typer.Option(
            min=0,
            max=MAX_DELAY_S,
            help="Deliver no earlier than this many seconds from now (held in the broker).",
        ),
    ] = 0,
) -> None:
    """Publish a message to the ingress exchange with publisher confirms."""
    settings = _settings()
    if priority not in settings.priorities:
        raise ConfigurationError(
            f"priority {priority!r} is not one of {', '.join(settings.priorities)}"
        )
    value = _read_payload(payload)
    key = f"{priority}.{message_type}"
    try:
        exchange_name, publish_key = publish_route(settings.names, key, delay)
    except DelayError as exc:
        raise ConfigurationError(str(exc)) from None

    async def send(progress: Callable[[int], None]) -> list[str]:
        connection = await connect(settings, name="hopline-cli")
        try:
            await declare_topology(connection, core_topology(settings, broker_version(connection)))
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(exchange_name, ensure=False)
            ids = []
            for _ in range(count):
                envelope = new_envelope(
                    message_type,
                    value,
                    priority,
                    app_id="hopline-cli",
                    correlation_id=correlation_id,
                )
                message = to_message(envelope)
                if delay:
                    due = datetime.now(UTC) + timedelta(seconds=delay)
                    message.headers[h.DELIVER_AT] = due.isoformat()
                await exchange.publish(message, publish_key, timeout=settings.publish_timeout_s)
                ids.append(envelope.message_id)
                progress(len(ids))
            return ids
        finally:
            await connection.close()

    if delay:
        key += f" (due in {delay:g} s)"
    if count <= _LISTED_AT_MOST:
        for message_id in asyncio.run(send(lambda _done: None)):
            typer.echo(f"confirmed {message_id} -> {key}")
        return
    with Progress(
        TextColumn("publishing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("publishing", total=count)
        ids = asyncio.run(send(lambda done: bar.update(task, completed=done)))
    typer.echo(f"confirmed {len(ids)} messages -> {key} (ids {ids[0]} … {ids[-1]})")


# More copies than this are summed up in one line (with a progress bar on a terminal).
_LISTED_AT_MOST = 10


def _read_payload(text: str) -> Any:
    source = text
    if text.startswith("@"):
        try:
            source = Path(text[1:]).read_text()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read payload file {text[1:]!r}: {exc.strerror}"
            ) from exc
    try:
        return orjson.loads(source)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"payload is not valid JSON: {exc}") from exc


@app.command("apikey")
def apikey(
    name: Annotated[str, typer.Option(help="Shown in logs instead of the key.")],
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Allowed type pattern; repeatable.")
    ] = None,
    priorities: Annotated[
        list[str] | None, typer.Option("--priority", help="Allowed priority; repeatable.")
    ] = None,
    rate_per_s: Annotated[float, typer.Option("--rate", help="Messages per second.")] = 100.0,
    burst: Annotated[int, typer.Option(help="Messages at once above the rate.")] = 200,
) -> None:
    """Make an ingestion API key: the key (give it to the client, once) and its entry for
    HOPLINE_API_KEYS (only its hash)."""
    key = new_key()
    entry = ApiKeySpec(
        name=name,
        sha256=hash_key(key),
        types=types or ["#"],
        priorities=priorities,
        rate_per_s=rate_per_s,
        burst=burst,
    )
    typer.echo(f"key (shown once): {key}", err=True)
    typer.echo(entry.model_dump_json())


def main() -> None:
    """Entry point: known errors become one line on stderr and exit code 2."""
    # The client libraries' own warnings (a failed connect) would repeat our error line.
    for library in ("aio_pika", "aiormq"):
        logging.getLogger(library).setLevel(logging.CRITICAL)
    try:
        app()
    except HoplineError as exc:
        typer.echo(f"hopline: error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
