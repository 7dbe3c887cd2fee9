"""A bad configuration stops a service at start with one line per bad setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT


def _start(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOPLINE_")}
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("module", "env", "expected"),
    [
        (
            "producer",
            {"HOPLINE_PORT": "99999", "HOPLINE_MAX_PAYLOAD_BYTES": "-1"},
            [
                "HOPLINE_PORT: Input should be less than or equal to 65535",
                "HOPLINE_MAX_PAYLOAD_BYTES: Input should be greater than or equal to 1",
            ],
        ),
        ("producer", {"HOPLINE_API_KEYS": "{not json"}, ["HOPLINE_API_KEYS: not valid JSON"]),
        (
            "consumer",
            {"HOPLINE_PRIORITIES": "High,low", "HOPLINE_CONCURRENCY": "0"},
            [
                "HOPLINE_PRIORITIES: Value error, priority 'High' must be one lowercase word",
                "HOPLINE_CONCURRENCY: Input should be greater than or equal to 1",
            ],
        ),
        (
            "consumer",
            {"HOPLINE_HANDLERS": "nowhere.to.be:found"},
            ["HOPLINE_HANDLERS: cannot import 'nowhere.to.be'"],
        ),
        # No handlers is an error, not the demo service with its random failures
        ("consumer", {}, ["HOPLINE_HANDLERS is not set: give the service's registry"]),
        # No keys is an error, unless open ingestion is chosen explicitly
        ("producer", {}, ["HOPLINE_API_KEYS is empty: make a key with `hopline apikey"]),
    ],
)
def test_bad_settings_are_named_one_per_line(
    module: str, env: dict[str, str], expected: list[str]
) -> None:
    result = _start(module, **env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for line in expected:
        assert line in result.stderr, result.stderr
    # A heading line at most, then one line per bad setting
    assert len(result.stderr.strip().splitlines()) <= len(expected) + 1


@pytest.mark.parametrize(
    ("module", "mentions"),
    [
        ("consumer", ["usage: hopline-consumer", "HOPLINE_HANDLERS", "HOPLINE_CONCURRENCY"]),
        ("producer", ["usage: hopline-producer", "HOPLINE_PORT", "HOPLINE_API_KEYS"]),
        ("consumer.cli", ["Usage:", "quarantine", "HOPLINE_AMQP_URL"]),
    ],
)
def test_every_entry_point_answers_help_without_touching_a_broker(
    module: str, mentions: list[str], unused_amqp_url: str
) -> None:
    # Given a broker URL where nothing listens: connecting would fail, not exit 0
    result = _start_with_args(module, "--help", HOPLINE_AMQP_URL=unused_amqp_url)
    assert result.returncode == 0, result.stderr
    for text in mentions:
        assert text in result.stdout
    assert "secret-pw" not in result.stdout


@pytest.mark.parametrize("module", ["consumer", "producer"])
def test_services_print_their_version_and_refuse_unknown_arguments(module: str) -> None:
    assert _start_with_args(module, "--version").stdout.startswith(f"hopline-{module} ")
    refused = _start_with_args(module, "--port=1")
    assert refused.returncode == 2
    assert "unrecognized arguments: --port=1" in refused.stderr


def test_handlers_in_the_current_folder_are_found_as_uvicorn_finds_apps(
    tmp_path: Path, unused_amqp_url: str
) -> None:
    # Given billing.py in the folder the consumer starts in (not on PYTHONPATH)
    (tmp_path / "billing.py").write_text(
        "from consumer import Registry\nregistry = Registry('billing')\n"
        "@registry.handler('invoices.paid')\nasync def paid(payload):\n    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "consumer"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("HOPLINE_")},
            "PYTHONPATH": str(ROOT),
            "HOPLINE_HANDLERS": "billing:registry",
            "HOPLINE_AMQP_URL": unused_amqp_url,
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then the registry is imported, and what stops it is the missing broker, in one line
    assert "cannot import" not in result.stderr
    assert result.returncode == 2
    assert "cannot connect to RabbitMQ" in result.stderr
    assert "Traceback" not in result.stderr


def _start_with_args(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOPLINE_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
