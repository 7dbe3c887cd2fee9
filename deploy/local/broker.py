"""A private RabbitMQ node started from the `rabbitmq-server` on PATH.

Development (`make run`) and tests need a broker they can own: create vhosts on, fill with
queues, stop and kill on purpose. Machines that have RabbitMQ installed but no Docker get one
here without touching the broker that already runs (on Debian: `rabbit@localhost`, port 5672).

Everything a node needs lives under one `base_dir` (config, enabled plugins, Mnesia data, logs,
pid file), so a node can be stopped, killed or restarted by a process other than the one that
started it: `LocalBroker` is plain data, and the OS process is found again by its node name.

Isolation from the shared node rests on three things: our own `RABBITMQ_CONF_ENV_FILE` (so
`/etc/rabbitmq/rabbitmq-env.conf`, which names the shared node, is never read), our own config
file with our own ports, and a refusal to start a node whose name epmd already knows. The
shared epmd (127.0.0.1:4369) is reused, as Erlang intends.

Debian's `rabbitmq-server` and `rabbitmqctl` wrappers switch from root to the `rabbitmq` user
with `su`, which keeps our environment but sets HOME to `/var/lib/rabbitmq`: node and CLI then
share that user's Erlang cookie, and `base_dir` must be owned by, and reachable for, that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "LocalBroker",
    "LocalBrokerError",
    "discard_local_broker",
    "free_port",
    "kill_local_broker",
    "node_pids",
    "rabbitmq_server_available",
    "restart_local_broker",
    "start_local_broker",
    "stop_local_broker",
]

_HOST = "127.0.0.1"
_SERVICE_ACCOUNT = "rabbitmq"
_LOG_FIRST_ERRORS = 10
_LOG_TAIL_LINES = 30
# Ports a private node must never take: epmd, the usual AMQP/management/dist ports of the
# shared node, and the range rabbitmqctl uses for its own distribution listener.
_RESERVED_PORTS = frozenset({4369, 5672, 15672, 25672, *range(35672, 35683)})
# The AMQP 0-9-1 protocol header; a broker answers it with a Connection.Start method frame.
_AMQP_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
_AMQP_METHOD_FRAME = 1

# Popen handles of nodes this process launched, so their wrapper processes get reaped
# (an unreaped Popen warns when garbage collected). Nodes started elsewhere are not here.
_LAUNCHED: dict[str, subprocess.Popen[bytes]] = {}


class LocalBrokerError(Exception):
    """A private node could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class LocalBroker:
    """Where a private node lives and how to reach it; plain data, valid across processes."""

    node_name: str
    amqp_port: int
    management_port: int
    dist_port: int
    base_dir: Path
    # RabbitMQ's own Prometheus endpoint (queue depths and ages); 0: not enabled (a node
    # started by an older layout)
    prometheus_port: int = 0

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{_HOST}:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://{_HOST}:{self.management_port}"

    @property
    def prometheus_url(self) -> str | None:
        return f"http://{_HOST}:{self.prometheus_port}/metrics" if self.prometheus_port else None

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        """Run `rabbitmqctl -n <node> ARGS`; return stdout, raise with stderr on failure."""
        command = ["rabbitmqctl", "-n", self.node_name, *args]
        env = _node_environment(self)
        del env["RABBITMQ_NODENAME"]  # `-n` names the node; the CLI's VM must not look like it
        try:
            result = subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalBrokerError(
                f"{' '.join(command)} did not finish within {timeout_s:g}s"
            ) from exc
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise LocalBrokerError(
                f"{' '.join(command)} failed with exit code {result.returncode}: {detail}"
            )
        return result.stdout


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and no RabbitMQ default),
    other than the ports in `avoid`: a port just probed and released may come back at once."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((_HOST, 0))
            port: int = probe.getsockname()[1]
        if port not in _RESERVED_PORTS and port not in avoid:
            return port
    raise LocalBrokerError("no free TCP port found on 127.0.0.1")


def rabbitmq_server_available() -> bool:
    """Whether this machine can start a private node (`rabbitmq-server` and `rabbitmqctl`)."""
    return shutil.which("rabbitmq-server") is not None and shutil.which("rabbitmqctl") is not None


def start_local_broker(
    base_dir: Path,
    *,
    node_name: str | None = None,
    amqp_port: int | None = None,
    management_port: int | None = None,
    extra_config: str = "",
    avoid_ports: Collection[int] = (),
    timeout_s: float = 90,
) -> LocalBroker:
    """Start a fresh private node with the management plugin and wait until it serves.
    `avoid_ports`: ports `extra_config` gives the node (a TLS listener), left to them.

    Ready means: the AMQP port answers the protocol header, `rabbitmqctl await_startup`
    succeeds for our node name, and the management API answers. On failure the node is
    killed and the error carries the tail of its logs.
    """
    if not rabbitmq_server_available():
        raise LocalBrokerError("rabbitmq-server and rabbitmqctl must both be on PATH")
    taken: list[int] = [*avoid_ports, *(port for port in (amqp_port, management_port) if port)]

    def another_port() -> int:
        taken.append(free_port(avoid=taken))
        return taken[-1]

    broker = LocalBroker(
        node_name=node_name or f"hopline-{secrets.token_hex(4)}@localhost",
        amqp_port=amqp_port or another_port(),
        management_port=management_port or another_port(),
        dist_port=another_port(),
        base_dir=base_dir.resolve(),
        prometheus_port=another_port(),
    )
    ports = {broker.amqp_port, broker.management_port, broker.dist_port, broker.prometheus_port}
    if len(ports) != 4:
        raise LocalBrokerError(f"the node's four ports must differ: {broker}")
    _refuse_taken_name_or_ports(broker, grace_s=0)
    _prepare_base_dir(broker, extra_config)
    _launch_and_wait(broker, timeout_s)
    return broker


def restart_local_broker(broker: LocalBroker, timeout_s: float = 90) -> LocalBroker:
    """Start a stopped or killed node again with the same name, ports and data."""
    if not _config_file(broker).is_file():
        raise LocalBrokerError(f"{broker.base_dir} holds no node; start_local_broker creates one")
    _reap(broker)
    # A node killed a moment ago may still be registered with epmd: allow it time to go.
    _refuse_taken_name_or_ports(broker, grace_s=10)
    _launch_and_wait(broker, timeout_s)
    return broker


def stop_local_broker(broker: LocalBroker, *, timeout_s: float = 60) -> None:
    """Stop the node gracefully, then make sure its VM is gone; a stopped node is fine.

    `rabbitmqctl stop` lets queues flush to disk. If the node does not answer it, or its VM
    outlives the deadline, the VM is terminated and finally killed.
    """
    deadline = time.monotonic() + timeout_s
    if node_pids(broker):
        try:
            broker.ctl("stop", timeout_s=timeout_s)
            stopped = _wait_for_exit(broker, deadline)
        except LocalBrokerError:  # not answering: no point waiting for a graceful stop
            stopped = False
        if not stopped:
            _signal_node(broker, signal.SIGTERM)
            if not _wait_for_exit(broker, time.monotonic() + 10):
                _sigkill(broker)
        _wait_for_epmd_to_forget(broker, time.monotonic() + 10)
    _reap(broker)


def discard_local_broker(broker: LocalBroker) -> None:
    """End a node whose data nobody needs any more (a test's, at its end); a stopped node
    is fine. SIGKILL, not `rabbitmqctl stop`: a graceful stop spends about 6 s flushing
    queues into a directory that is deleted next, and the node's name is never used again."""
    if node_pids(broker):
        _sigkill(broker)
    _reap(broker)


def kill_local_broker(broker: LocalBroker) -> None:
    """SIGKILL the node's VM, as a crash or power loss would; for fault-injection tests."""
    if not node_pids(broker):
        raise LocalBrokerError(f"node {broker.node_name} is not running")
    _sigkill(broker)
    _wait_for_epmd_to_forget(broker, time.monotonic() + 10)
    _reap(broker)


def _sigkill(broker: LocalBroker) -> None:
    _signal_node(broker, signal.SIGKILL)
    if not _wait_for_exit(broker, time.monotonic() + 10):
        raise LocalBrokerError(f"node {broker.node_name} survived SIGKILL")


# --- files -------------------------------------------------------------------------------


def _render_config(
    amqp_port: int, management_port: int, extra_config: str = "", prometheus_port: int = 0
) -> str:
    """rabbitmq.conf for a private node: loopback listeners only, guest allowed over TCP."""
    lines = [
        "# Written by deploy.local.broker: a private node for development and tests.",
        f"listeners.tcp.default = {_HOST}:{amqp_port}",
        f"management.tcp.port = {management_port}",
        f"management.tcp.ip = {_HOST}",
        "loopback_users = none",
    ]
    if prometheus_port:
        lines += [f"prometheus.tcp.port = {prometheus_port}", f"prometheus.tcp.ip = {_HOST}"]
    if extra_config.strip():
        lines += ["", "# extra_config", extra_config.strip()]
    return "\n".join(lines) + "\n"


def _render_env_file() -> str:
    """rabbitmq-env.conf read instead of the system one, which names the shared node."""
    return (
        "# Written by deploy.local.broker; replaces /etc/rabbitmq/rabbitmq-env.conf.\n"
        "# Reuse the shared epmd on loopback and keep distribution on loopback too.\n"
        f"ERL_EPMD_ADDRESS={_HOST}\n"
        "SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'\n"
    )


def _config_file(broker: LocalBroker) -> Path:
    return broker.base_dir / "rabbitmq.conf"


def _pid_file(broker: LocalBroker) -> Path:
    return broker.base_dir / "node.pid"


def _console_log(broker: LocalBroker) -> Path:
    return broker.base_dir / "server.log"


def _node_log(broker: LocalBroker) -> Path:
    return broker.base_dir / "log" / f"{broker.node_name}.log"


def _node_environment(
    broker: LocalBroker, base_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for `rabbitmq-server`: every path and port points at `base_dir`, so
    nothing from the shared node's configuration applies. `RABBITMQ_NODENAME` in it is
    also how `node_pids` recognises the node's VM later, from any process."""
    env = dict(os.environ if base_env is None else base_env)
    base = broker.base_dir
    env.update(
        {
            "RABBITMQ_NODENAME": broker.node_name,
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_BASE": str(base),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(_pid_file(broker)),
            "RABBITMQ_DIST_PORT": str(broker.dist_port),
            # Debian's wrapper runs the node in /var/lib/rabbitmq, the shared node's home.
            "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),
        }
    )
    return env


def _prepare_base_dir(broker: LocalBroker, extra_config: str) -> None:
    base = broker.base_dir
    if (base / "mnesia").exists():
        raise LocalBrokerError(f"{base} already holds a node; use restart_local_broker")
    for sub in (base, base / "mnesia", base / "log"):
        sub.mkdir(parents=True, exist_ok=True)
    _config_file(broker).write_text(
        _render_config(
            broker.amqp_port, broker.management_port, extra_config, broker.prometheus_port
        )
    )
    (base / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_prometheus].\n")
    (base / "rabbitmq-env.conf").write_text(_render_env_file())
    account = _service_account()
    if account is not None:
        _hand_over(base, account)


def _service_account() -> pwd.struct_passwd | None:
    """The user the packaged wrappers switch to when run as root (Debian: `rabbitmq`)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_SERVICE_ACCOUNT)
    except KeyError:
        return None


def _hand_over(base: Path, account: pwd.struct_passwd) -> None:
    """Give `base` to the service account and check that account can reach it at all."""
    for path in (base, *base.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid)
    base.chmod(0o755)
    for ancestor in base.parents:
        mode = ancestor.stat()
        reachable = (
            mode.st_mode & stat.S_IXOTH
            or (mode.st_uid == account.pw_uid and mode.st_mode & stat.S_IXUSR)
            or (mode.st_gid == account.pw_gid and mode.st_mode & stat.S_IXGRP)
        )
        if not reachable:
            raise LocalBrokerError(
                f"user {account.pw_name!r} cannot enter {ancestor} (mode "
                f"{stat.filemode(mode.st_mode)}), so the node cannot use {base}; "
                "choose a base_dir under a world-traversable directory such as /tmp"
            )


# --- running -----------------------------------------------------------------------------


def _launch_and_wait(broker: LocalBroker, timeout_s: float) -> None:
    with _console_log(broker).open("ab") as console:
        process = subprocess.Popen(
            ["rabbitmq-server"],
            env=_node_environment(broker),
            cwd=broker.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: Ctrl-C in the caller's terminal spares it
        )
    _LAUNCHED[broker.node_name] = process
    try:
        _wait_until_ready(broker, process, time.monotonic() + timeout_s, timeout_s)
    except BaseException:
        with contextlib.suppress(LocalBrokerError):
            _signal_node(broker, signal.SIGKILL)
            _wait_for_exit(broker, time.monotonic() + 10)
        _reap(broker)
        raise


def _refuse_taken_name_or_ports(broker: LocalBroker, *, grace_s: float) -> None:
    """Never start a second node under a taken name or port (e.g. the shared rabbit@localhost)."""
    if node_pids(broker) or not _wait_for_epmd_to_forget(broker, time.monotonic() + grace_s):
        raise LocalBrokerError(f"a node named {broker.node_name} is already running")
    for port in (broker.amqp_port, broker.management_port, broker.dist_port):
        if not _port_is_free(port):
            raise LocalBrokerError(f"port {port} on {_HOST} is taken; pick another")


def _wait_until_ready(
    broker: LocalBroker, process: subprocess.Popen[bytes], deadline: float, timeout_s: float
) -> None:
    stages: tuple[tuple[str, Callable[[], bool]], ...] = (
        ("answer AMQP", lambda: _amqp_answers(broker.amqp_port)),
        ("finish booting", lambda: _booted(broker, deadline)),
        ("serve the management API", lambda: _management_answers(broker)),
    )
    for what, ready in stages:
        while not ready():
            if process.poll() is not None:
                raise LocalBrokerError(
                    f"node {broker.node_name} exited (code {process.returncode}) before it "
                    f"would {what}\n{_log_tail(broker)}"
                )
            if time.monotonic() > deadline:
                raise LocalBrokerError(
                    f"node {broker.node_name} did not {what} within {timeout_s:g}s\n"
                    f"{_log_tail(broker)}"
                )
            time.sleep(0.1)


def _amqp_answers(port: int) -> bool:
    """Whether the port speaks AMQP: the broker answers our protocol header with a frame."""
    try:
        with socket.create_connection((_HOST, port), timeout=1) as conn:
            conn.sendall(_AMQP_PROTOCOL_HEADER)
            return conn.recv(1)[:1] == bytes([_AMQP_METHOD_FRAME])
    except OSError:
        return False


def _booted(broker: LocalBroker, deadline: float) -> bool:
    remaining_s = max(1, int(deadline - time.monotonic()))
    try:
        broker.ctl("await_startup", "--timeout", str(remaining_s), timeout_s=remaining_s + 30)
    except LocalBrokerError:
        return False
    return True


def _management_answers(broker: LocalBroker) -> bool:
    try:
        response = httpx.get(
            f"{broker.management_url}/api/overview", auth=("guest", "guest"), timeout=2
        )
    except httpx.HTTPError:
        return False
    return response.status_code == httpx.codes.OK


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the broker's own listeners: lingering TIME_WAIT connections do not block us.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((_HOST, port))
        except OSError:
            return False
    return True


def _epmd_names() -> set[str]:
    """Short names registered with the local epmd (empty when no epmd runs)."""
    port = int(os.environ.get("ERL_EPMD_PORT", "4369"))
    try:
        with socket.create_connection((_HOST, port), timeout=2) as conn:
            conn.sendall(b"\x00\x01n")  # NAMES_REQ
            chunks = []
            while chunk := conn.recv(4096):
                chunks.append(chunk)
    except OSError:
        return set()
    return _parse_epmd_names(b"".join(chunks))


def _parse_epmd_names(reply: bytes) -> set[str]:
    """Names from an epmd NAMES reply: 4 bytes of epmd's port, then `name X at port N` lines."""
    text = reply[4:].decode("utf-8", "replace")
    return {line.split()[1] for line in text.splitlines() if line.startswith("name ")}


def _log_tail(broker: LocalBroker) -> str:
    """What a person needs from the node's logs: the first errors (the cause, e.g. an unknown
    config key, comes long before the crash report) and the last lines."""
    parts = []
    for path in (_console_log(broker), _node_log(broker)):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        first_errors = [line for line in lines if "[error]" in line][:_LOG_FIRST_ERRORS]
        if first_errors:
            parts.append(f"--- first errors in {path} ---\n" + "\n".join(first_errors))
        parts.append(f"--- last lines of {path} ---\n" + "\n".join(lines[-_LOG_TAIL_LINES:]))
    return "\n".join(parts) or f"(no logs in {broker.base_dir})"


# --- processes ---------------------------------------------------------------------------


def node_pids(broker: LocalBroker) -> list[int]:
    """Live Erlang VMs running this node, found by the node name in their environment.

    The VM's command line does not carry the node name (RabbitMQ sets it after boot), but
    `RABBITMQ_NODENAME` is in its environment. Without /proc, the pid file is the fallback.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return _pid_from_pid_file(broker)
    marker = f"RABBITMQ_NODENAME={broker.node_name}".encode()
    return [pid for pid in _server_vm_pids(proc) if marker in _environ_entries(pid)]


def _server_vm_pids(proc: Path) -> Iterator[int]:
    """Live Erlang VMs that are not CLI tools (rabbitmqctl and friends run as escripts)."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if comm.startswith("beam") and b"-escript" not in cmdline and _is_alive(int(entry.name)):
            yield int(entry.name)


def _environ_entries(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _pid_from_pid_file(broker: LocalBroker) -> list[int]:
    try:
        pid = int(_pid_file(broker).read_text().strip())
    except (OSError, ValueError):
        return []
    return [pid] if _is_alive(pid) else []


def _is_alive(pid: int) -> bool:
    """Running and not a zombie (an exited VM whose parent has not reaped it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in {"Z", "X"}


def _signal_node(broker: LocalBroker, signum: signal.Signals) -> None:
    for pid in node_pids(broker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _wait_for_exit(broker: LocalBroker, deadline: float) -> bool:
    while node_pids(broker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _wait_for_epmd_to_forget(broker: LocalBroker, deadline: float) -> bool:
    short_name = broker.node_name.partition("@")[0]
    while short_name in _epmd_names():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _reap(broker: LocalBroker) -> None:
    """Collect the wrapper processes this process launched for the node, if any."""
    process = _LAUNCHED.pop(broker.node_name, None)
    if process is None:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        # The VM is gone; only the shell/su wrappers are left. End our own session of them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
