"""`make run`: a broker, the producer on :8000 and one consumer, until Ctrl-C.

Broker: `HOPLINE_AMQP_URL` when it is set and a broker answers there; otherwise a private
RabbitMQ node (with the management UI) whose state lives in `.hopline/broker`, so nothing
you do here touches a broker someone else uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import aio_pika
import httpx

from common.redact import redact_url
from deploy.local.broker import (
    LocalBroker,
    LocalBrokerError,
    free_port,
    rabbitmq_server_available,
    restart_local_broker,
    start_local_broker,
    stop_local_broker,
)

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".hopline"
PRODUCER_PORT = int(os.environ.get("HOPLINE_PORT", "8000"))
DEMO_MESSAGES = [
    {
        "type": "orders.created",
        "payload": {"order_id": "A-1001", "amount_cents": 2599},
        "priority": "high",
    },
    {"type": "payments.charge", "payload": {"order_id": "A-1001", "amount_cents": 2599}},
    {"type": "reports.render", "payload": {"template": "monthly"}, "priority": "low"},
    {"type": "orders.created", "payload": {"order_id": ""}, "priority": "normal"},
]


def say(text: str) -> None:
    print(f"\033[1;36m[make run]\033[0m {text}", flush=True)


def broker_answers(url: str) -> bool:
    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception:
        return False
    return True


def choose_broker() -> tuple[str, str | None, LocalBroker | None]:
    """(amqp url, management url or None, the private node we started or None)."""
    url = os.environ.get("HOPLINE_AMQP_URL")
    if url:
        if broker_answers(url):
            say(f"using the broker at {redact_url(url)} (HOPLINE_AMQP_URL)")
            return url, None, None
        say(f"no broker answers at {redact_url(url)}; starting a private node instead")
    if not rabbitmq_server_available():
        sys.exit(
            "make run: no broker at HOPLINE_AMQP_URL and no `rabbitmq-server` on PATH; "
            "install RabbitMQ or point HOPLINE_AMQP_URL at one"
        )
    try:
        broker = _private_node()
    except LocalBrokerError as exc:
        sys.exit(
            f"make run: the private RabbitMQ node did not start: {exc}\n"
            "(to start over with an empty broker: rm -rf .hopline/broker .hopline/broker.json)"
        )
    return broker.amqp_url, broker.management_url, broker


def _private_node() -> LocalBroker:
    """The node of earlier runs (same name, ports and messages), or a new one."""
    base, saved = STATE / "broker", STATE / "broker.json"
    if saved.is_file() and (base / "mnesia").exists():
        fields = json.loads(saved.read_text())
        broker = LocalBroker(**{**fields, "base_dir": Path(fields["base_dir"])})
        say("restarting the private RabbitMQ node of the last run (state in .hopline/broker) ...")
        return restart_local_broker(broker)
    if base.exists():  # a node from an older layout: keep it aside, start clean
        base.rename(STATE / f"broker.old-{int(time.time())}")
    say("starting a private RabbitMQ node (state in .hopline/broker) ...")
    broker = start_local_broker(
        base,
        node_name="hopline-dev@localhost",
        amqp_port=_port_or_free(5673),
        management_port=_port_or_free(15673),
    )
    saved.write_text(json.dumps({**asdict(broker), "base_dir": str(broker.base_dir)}))
    return broker


def _port_or_free(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def wait_ready(deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{PRODUCER_PORT}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    say("the producer is not ready yet; check the logs above")


def send_demo_messages() -> None:
    for message in DEMO_MESSAGES:
        response = httpx.post(
            f"http://127.0.0.1:{PRODUCER_PORT}/v1/messages", json=message, timeout=10
        )
        say(f"POST {message['type']:<16} -> {response.status_code} {response.text}")


def _stop_like_ctrl_c(_signum: int, _frame: object) -> None:
    # `kill`, `timeout` or a supervisor send SIGTERM, whose default ends this process at
    # once and leaves the services and the private node running: stop them as Ctrl-C does.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    url, management, broker = choose_broker()
    env = {**os.environ, "HOPLINE_AMQP_URL": url, "HOPLINE_PORT": str(PRODUCER_PORT)}
    if management:
        env["HOPLINE_MANAGEMENT_URL"] = management
    env.setdefault("HOPLINE_ADMIN_TOKEN", secrets.token_urlsafe(12))
    env.setdefault("HOPLINE_LOG_FORMAT", "console")
    env.setdefault("HOPLINE_HANDLERS", "consumer.examples:registry")
    python = sys.executable
    children = [
        subprocess.Popen([python, "-m", "consumer"], env=env, cwd=ROOT),
        subprocess.Popen([python, "-m", "producer"], env=env, cwd=ROOT),
    ]
    try:
        wait_ready()
        say(f"API docs:      http://127.0.0.1:{PRODUCER_PORT}/docs")
        if management:
            say(f"management UI: {management}  (guest / guest)")
        say(
            f"admin page:    http://127.0.0.1:{PRODUCER_PORT}/admin  (token: "
            f"{env['HOPLINE_ADMIN_TOKEN']})"
        )
        tools = f"HOPLINE_AMQP_URL={redact_url(url)}"
        if management:
            tools += f" HOPLINE_MANAGEMENT_URL={management}"
        say(f"quarantine:    {tools} .venv/bin/hopline quarantine groups")
        example = '{"type":"orders.created","payload":{"order_id":"A-1","amount_cents":100}}'
        say(
            f"try:           curl -s -XPOST localhost:{PRODUCER_PORT}/v1/messages "
            f"-H 'content-type: application/json' -d '{example}'"
        )
        say("sending four demo messages: a success, a flaky payment, a broken report, a bad order")
        send_demo_messages()
        say("Ctrl-C stops everything")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        say("a service exited; stopping the rest")
    except KeyboardInterrupt:
        say("stopping ...")
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=35)
            except subprocess.TimeoutExpired:
                child.kill()
        if broker is not None:
            stop_local_broker(broker)
            say("private RabbitMQ node stopped (its data stays in .hopline/broker)")


if __name__ == "__main__":
    main()
