#!/usr/bin/env python3
"""Container health check (the image's HEALTHCHECK); standard library only.

producer: `GET /healthz` on HOPLINE_PORT answers 200 (the process serves HTTP; readiness,
i.e. the broker being reachable, is `/readyz` and belongs to the orchestrator's readiness
probe, not to a restart-worthy health check).
consumer / cli: the process in PID 1 is alive (the consumer has no HTTP port).
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
    return "producer" if b"hopline-producer" in cmdline else "other"


def main() -> int:
    if _role() != "producer":
        return 0 if Path("/proc/1").exists() else 1
    port = os.environ.get("HOPLINE_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthz failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
