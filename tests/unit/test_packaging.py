"""What ships: the wheel holds the three runtime packages and nothing of the local tooling.

The private-node starter (`deploy/local`), the tests and the benchmarks stay in the
repository: an image built from the wheel carries none of them.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_runtime_packages_and_no_local_tooling(tmp_path: Path) -> None:
    # Given the project built as a wheel (offline: the venv's setuptools, no dependencies)
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*build, "--quiet", "--wheel-dir", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("hopline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if "/" in name}

    # Then it holds common, producer and consumer (with the admin page) ...
    assert {"common", "producer", "consumer"} <= tops
    assert "producer/static/admin.html" in names
    assert "consumer/cli.py" in names
    # ... and nothing that starts private nodes, nor tests or benchmarks
    assert not tops & {"deploy", "tests", "bench"}, sorted(tops)
    assert not [name for name in names if "local_broker" in name or "rabbitmq-server" in name]
