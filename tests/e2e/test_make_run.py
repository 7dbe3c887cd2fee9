"""`make run` (deploy/local/run.py) as a new user meets it: one run at a time, an env file
that points the CLI at its broker, a clean stop. Pointed at the test broker through
HOPLINE_AMQP_URL, so no private node is started, and at a folder of its own."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deploy.local.broker import free_port
from tests.support.processes import ROOT
from tests.support.wait import wait_until_sync


@contextmanager
def make_run(amqp_url: str, run_dir: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPLINE_")}
    env.update(
        HOPLINE_AMQP_URL=amqp_url,
        HOPLINE_RUN_DIR=str(run_dir),
        HOPLINE_PORT=str(port),
        HOPLINE_ARCHIVE_DIR=str(run_dir / "archive"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.local.run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _read_until(process: subprocess.Popen[str], text: str, timeout_s: float = 60) -> list[str]:
    """Lines of output up to and including the first that contains `text`."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines
    raise AssertionError(f"{text!r} not seen; output:\n" + "\n".join(lines))


def test_a_second_make_run_refuses_and_the_first_stops_cleanly(
    amqp_url: str, tmp_path: Path
) -> None:
    port = free_port()
    with make_run(amqp_url, tmp_path, port) as first:
        lines = _read_until(first, "Ctrl-C stops everything")
        # The env file points the CLI at this run's broker, readable by its owner only
        env_file = tmp_path / "env"
        assert f"source {env_file}" in "\n".join(lines)
        assert f"export HOPLINE_AMQP_URL='{amqp_url}'" in env_file.read_text()
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        # When a second run starts in the same place
        second = subprocess.run(
            [sys.executable, "-m", "deploy.local.run"],
            env={**os.environ, "HOPLINE_RUN_DIR": str(tmp_path), "HOPLINE_AMQP_URL": amqp_url},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        # Then it refuses in one line that says where the first one is, and changes nothing
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"make run: hopline is already running here: producer :{port}, pid {first.pid}; "
            "stop it with Ctrl-C"
        )
        assert first.poll() is None
        # And the first stops on SIGTERM as on Ctrl-C, twice in a row without a traceback
        first.send_signal(signal.SIGTERM)
        first.send_signal(signal.SIGTERM)
        rest, _ = first.communicate(timeout=60)
    assert first.returncode == 0
    assert "Traceback" not in rest
    assert not env_file.exists()


def test_the_demo_payment_s_timeline_runs_from_accepted_through_a_retry_to_succeeded(
    amqp_url: str, tmp_path: Path
) -> None:
    with make_run(amqp_url, tmp_path, free_port()) as run:
        lines = _read_until(run, "hopline status ")
        prefix = lines[-1].rsplit(" ", 1)[-1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOPLINE_")}
        env["HOPLINE_STATUS_URL"] = f"sqlite:///{tmp_path / 'status.sqlite3'}"

        def succeeded() -> str | None:  # the README's command, until the retry succeeded
            shown = subprocess.run(
                [sys.executable, "-m", "consumer.cli", "status", prefix],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            return shown if "demo: succeeded" in shown else None

        shown = wait_until_sync(succeeded, timeout_s=60, interval_s=0.5, message="no success")
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=60)

    assert "demo: succeeded (attempt 2" in shown
    assert '"charged_cents": 2599' in shown
    events = [line.split()[2] for line in shown.splitlines() if line.startswith("  20")]
    assert events == ["accepted", "started", "retry_scheduled", "started", "succeeded"]
