"""The pure parts of deploy.local.broker: what a private node is told, and by which means."""

from __future__ import annotations

from pathlib import Path

from deploy.local.broker import (
    LocalBroker,
    _node_environment,
    _parse_epmd_names,
    _render_config,
    _render_env_file,
)

BROKER = LocalBroker(
    node_name="hopline-test@localhost",
    amqp_port=41001,
    management_port=41002,
    dist_port=41003,
    base_dir=Path("/tmp/hopline-node"),
)


def test_urls_point_at_loopback_and_the_nodes_own_ports() -> None:
    assert BROKER.amqp_url == "amqp://guest:guest@127.0.0.1:41001/"
    assert BROKER.management_url == "http://127.0.0.1:41002"


def test_config_listens_on_loopback_only_and_lets_guest_in() -> None:
    lines = _render_config(41001, 41002).splitlines()

    assert "listeners.tcp.default = 127.0.0.1:41001" in lines
    assert "management.tcp.port = 41002" in lines
    assert "management.tcp.ip = 127.0.0.1" in lines
    assert "loopback_users = none" in lines


def test_extra_config_comes_last_so_it_can_add_to_the_defaults() -> None:
    text = _render_config(41001, 41002, "\ncollect_statistics_interval = 1000\n\n")

    assert text.endswith("collect_statistics_interval = 1000\n")


def test_env_file_reuses_loopback_epmd_and_names_no_node() -> None:
    text = _render_env_file()

    assert "ERL_EPMD_ADDRESS=127.0.0.1" in text
    assert "inet_dist_use_interface {127,0,0,1}" in text
    assert "NODENAME" not in text


def test_environment_points_every_path_and_port_at_the_nodes_own_directory() -> None:
    # Given an environment that names the shared node, as /etc/rabbitmq/rabbitmq-env.conf does
    inherited = {"PATH": "/usr/bin", "RABBITMQ_NODENAME": "rabbit@localhost"}

    # When the private node's environment is built from it
    env = _node_environment(BROKER, inherited)

    # Then our node name wins, the system env file is replaced, and all paths are ours
    assert env["RABBITMQ_NODENAME"] == "hopline-test@localhost"
    assert env["RABBITMQ_CONF_ENV_FILE"] == "/tmp/hopline-node/rabbitmq-env.conf"
    assert env["RABBITMQ_CONFIG_FILE"] == "/tmp/hopline-node/rabbitmq"  # no .conf: RabbitMQ adds it
    assert env["RABBITMQ_DIST_PORT"] == "41003"
    assert env["PATH"] == "/usr/bin"
    for key in (
        "RABBITMQ_BASE",
        "RABBITMQ_ADVANCED_CONFIG_FILE",
        "RABBITMQ_ENABLED_PLUGINS_FILE",
        "RABBITMQ_MNESIA_BASE",
        "RABBITMQ_LOG_BASE",
        "RABBITMQ_PID_FILE",
        "ERL_CRASH_DUMP",
    ):
        assert env[key].startswith("/tmp/hopline-node"), key


def test_epmd_reply_lists_the_registered_short_names() -> None:
    reply = b"\x00\x00\x11\x11name rabbit at port 25672\nname hopline-ab12 at port 41003\n"

    assert _parse_epmd_names(reply) == {"rabbit", "hopline-ab12"}


def test_empty_epmd_reply_means_no_names() -> None:
    assert _parse_epmd_names(b"\x00\x00\x11\x11") == set()
