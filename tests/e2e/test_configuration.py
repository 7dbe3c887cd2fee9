"""A bad configuration stops a service at start with one line per bad setting."""

from __future__ import annotations

import os
import subprocess
import sys

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
