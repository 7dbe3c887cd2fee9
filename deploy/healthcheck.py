#!/usr/bin/env python3
"""Container health check (the image's HEALTHCHECK); standard library only.

producer: `GET /healthz` on HOPLINE_PORT answers 200 (the process serves HTTP).
consumer: `GET /healthz` on HOPLINE_METRICS_PORT (9100 in the image) answers 200: the
consumer's event loop answers; a loop blocked by a handler does not, and the check fails.
Readiness (the broker reachable, every queue consumed, nothing stuck) is `/readyz` and
belongs to the orchestrator's readiness probe, not to a restart-worthy health check.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def _role() -> str:
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return "unknown"
    if b"hopline-producer" in cmdline:
        return "producer"
    if b"hopline-consumer" in cmdline:
        return "consumer"
    return "other"


def _port(role: str) -> str | None:
    if role == "producer":
        return os.environ.get("HOPLINE_PORT", "8000")
    if role == "consumer":
        return os.environ.get("HOPLINE_METRICS_PORT")
    return None


def main() -> int:
    role = _role()
    if role == "other":
        return 0  # the CLI: a one-shot command, nothing to probe
    port = _port(role)
    if not port:
        print("healthz failed: the consumer has no HOPLINE_METRICS_PORT to ask", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthz failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
