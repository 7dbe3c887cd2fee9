"""What ships: the wheel holds the three runtime packages and nothing of the local tooling.

The private-node starter (`deploy/local`), the tests and the benchmarks stay in the
repository: an image built from the wheel carries none of them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
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


def test_every_dependency_is_pinned_by_the_constraints_make_and_the_image_use() -> None:
    # Given the runtime dependencies pyproject.toml names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(requirement) for requirement in project["dependencies"]}
    pinned = {
        _name(line.split("==")[0]): line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    # Then each has an exact version there, and make and the Dockerfile install with it
    assert wanted <= set(pinned), sorted(wanted - set(pinned))
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in (ROOT / "deploy" / "Dockerfile").read_text()


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")
