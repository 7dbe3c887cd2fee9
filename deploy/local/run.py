"""`make run`: a broker, the producer on :8000 and one consumer, until Ctrl-C.

Broker: `HOPLINE_AMQP_URL` when it is set and a broker answers there; otherwise a private
RabbitMQ node (with the management UI) whose state lives in `.hopline/broker`, so nothing
you do here touches a broker someone else uses.

One run at a time per checkout (a lock in `.hopline/run.lock`): a second `make run` says
where the first one is instead of restarting its node. `.hopline/env` holds the `export`
line that points the `hopline` CLI of another terminal at this run's broker.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO

import aio_pika
import httpx

from common.names import Names
from common.redact import redact_url
from deploy.local.broker import (
    LocalBroker,
    LocalBrokerError,
    free_port,
    node_pids,
    rabbitmq_server_available,
    restart_local_broker,
    start_local_broker,
    stop_local_broker,
)

ROOT = Path(__file__).resolve().parents[2]
# Where this run keeps its lock, env file and private node (tests use their own folder).
STATE = Path(os.environ.get("HOPLINE_RUN_DIR", ROOT / ".hopline"))
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


_TTY = sys.stdout.isatty()


def say(text: str) -> None:
    label = "\033[1;36mmake run\033[0m" if _TTY else "make run"
    print(f"{label} | {text}", flush=True)


def take_the_run_lock() -> IO[str]:
    """Hold `.hopline/run.lock` for this run (the kernel drops it when we exit, however we
    exit); a second run gets a one-line refusal naming the first."""
    STATE.mkdir(exist_ok=True)
    lock = (STATE / "run.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        running = lock.read().strip() or "another make run"
        sys.exit(f"make run: hopline is already running here: {running}; stop it with Ctrl-C")
    return lock


def describe_run(lock: IO[str], text: str) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(text)
    lock.flush()


def refuse_a_taken_port(port: int) -> None:
    if not _port_is_free(port):
        sys.exit(
            f"make run: port {port} is taken by another program; free it, or run with "
            f"HOPLINE_PORT={port + 1} make run"
        )


def write_env_file(env: dict[str, str]) -> Path:
    """The `export` line for another terminal: the CLI then talks to this run's broker."""
    names = (
        "HOPLINE_AMQP_URL",
        "HOPLINE_MANAGEMENT_URL",
        "HOPLINE_ADMIN_TOKEN",
        "HOPLINE_STATUS_URL",
    )
    exports = [f"export {name}='{env[name]}'" for name in names if env.get(name)]
    exports.append(f"export HOPLINE_API_URL='http://127.0.0.1:{PRODUCER_PORT}'")
    exports.append(f'export PATH="{ROOT / ".venv" / "bin"}:$PATH"')
    path = STATE / "env"
    path.write_text("# written by make run: `source .hopline/env`\n" + "\n".join(exports) + "\n")
    path.chmod(0o600)  # it holds the broker password and the admin token
    return path


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def prefixed(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output line by line, each line prefixed with the process name."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        print(f"{name:<8} | {line}", flush=True)


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
    return preferred if _port_is_free(preferred) else free_port()


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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


def send_demo_messages(amqp_url: str) -> None:
    """A success, a payment retried once, a report that ends in quarantine, an invalid order;
    the two failing ones only while the demo's quarantine is empty (not again every run)."""
    waiting = demo_quarantine_depth(amqp_url)
    messages = DEMO_MESSAGES
    if waiting:
        messages = DEMO_MESSAGES[:2]
        say(
            f"the demo quarantine holds {waiting} message(s) from earlier runs: sending only the "
            "two that succeed (see them with: hopline quarantine list)"
        )
    else:
        say("sending four demo messages: a success, a flaky payment, a broken report, a bad order")
    for message in messages:
        response = httpx.post(
            f"http://127.0.0.1:{PRODUCER_PORT}/v1/messages", json=message, timeout=10
        )
        say(f"POST {message['type']:<16} -> {response.status_code} {response.text}")
        if message["type"] == "payments.charge" and response.status_code == 202:
            payment = response.json()["message_id"]
            say(f"its timeline (accepted, a retry, succeeded): hopline status {payment[:8]}")


def demo_quarantine_depth(amqp_url: str) -> int:
    async def depth() -> int:
        connection = await aio_pika.connect(amqp_url, timeout=5)
        async with connection:
            channel = await connection.channel()
            name = Names(os.environ.get("HOPLINE_PREFIX", "hopline")).quarantine("demo")
            queue = await channel.declare_queue(name, passive=True)
            return int(queue.declaration_result.message_count or 0)

    try:
        return asyncio.run(depth())
    except Exception:  # not declared yet: nothing from earlier runs
        return 0


def _stop_like_ctrl_c(_signum: int, _frame: object) -> None:
    # `kill`, `timeout` or a supervisor send SIGTERM, whose default ends this process at
    # once and leaves the services and the private node running: stop them as Ctrl-C does.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    lock = take_the_run_lock()
    refuse_a_taken_port(PRODUCER_PORT)
    url, management, broker = choose_broker()
    env = {**os.environ, "HOPLINE_AMQP_URL": url, "HOPLINE_PORT": str(PRODUCER_PORT)}
    if management:
        env["HOPLINE_MANAGEMENT_URL"] = management
    env.setdefault("HOPLINE_ADMIN_TOKEN", secrets.token_urlsafe(12))
    env.setdefault("HOPLINE_LOG_FORMAT", "console")
    env.setdefault("HOPLINE_HANDLERS", "consumer.examples:registry")
    env.setdefault("HOPLINE_INGESTION_OPEN", "true")  # a local demo: keys are for deployments
    env.setdefault("HOPLINE_METRICS_PORT", str(_port_or_free(9100)))
    # The status store: a SQLite file of this run's (the producer records into it).
    env.setdefault("HOPLINE_STATUS_URL", f"sqlite:///{STATE / 'status.sqlite3'}")
    where = f"producer :{PRODUCER_PORT}, pid {os.getpid()}"
    if broker is not None:
        pids = ",".join(str(pid) for pid in node_pids(broker)) or "?"
        where += f", node {broker.node_name} (pid {pids}, AMQP :{broker.amqp_port})"
        say(f"broker: private node {broker.node_name}, pid {pids}, AMQP port {broker.amqp_port}")
    describe_run(lock, where)
    python = sys.executable
    children = {
        name: subprocess.Popen(
            [python, "-m", name],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in ("consumer", "producer")
    }
    for name, child in children.items():
        assert child.stdout is not None
        threading.Thread(target=prefixed, args=(name, child.stdout), daemon=True).start()
    try:
        wait_ready()
        env_file = write_env_file(env)
        say(f"API docs:      http://127.0.0.1:{PRODUCER_PORT}/docs")
        if management:
            say(f"management UI: {management}  (guest / guest)")
        say(
            f"admin page:    http://127.0.0.1:{PRODUCER_PORT}/admin#token="
            f"{env['HOPLINE_ADMIN_TOKEN']}  (the token is also in {_shown(env_file)})"
        )
        metrics = [
            f"producer http://127.0.0.1:{PRODUCER_PORT}/metrics",
            f"consumer http://127.0.0.1:{env['HOPLINE_METRICS_PORT']}/metrics (+ /readyz)",
        ]
        if broker is not None and broker.prometheus_url:
            metrics.append(f"broker {broker.prometheus_url}")
        say(f"metrics:       {', '.join(metrics)}")
        say(f"CLI:           in another terminal: source {_shown(env_file)}")
        say("               then e.g.: hopline quarantine groups")
        example = '{"type":"orders.created","payload":{"order_id":"A-1","amount_cents":100}}'
        say(
            f"try:           curl -s -XPOST localhost:{PRODUCER_PORT}/v1/messages "
            f"-H 'content-type: application/json' -d '{example}'"
        )
        send_demo_messages(url)
        say("Ctrl-C stops everything")
        while all(child.poll() is None for child in children.values()):
            if broker is not None and not node_pids(broker):
                say(f"the private RabbitMQ node {broker.node_name} stopped; stopping the rest")
                break
            time.sleep(0.5)
        else:
            say("a service exited; stopping the rest")
    except KeyboardInterrupt:
        say("stopping ...")
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short (and leave a node running).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=35)
            except subprocess.TimeoutExpired:
                child.kill()
        if broker is not None:
            stop_local_broker(broker)
            say("private RabbitMQ node stopped (its data stays in .hopline/broker)")
        (STATE / "env").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
