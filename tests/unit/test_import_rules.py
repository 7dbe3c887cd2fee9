"""The layout's import rules, read from the source (every import, also inside functions):

- `common` imports neither service: it is what both share;
- `producer` and `consumer` never import each other: they are independent services;
- no runtime package imports `tests`, `bench` or `deploy` (the local tooling never ships).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLING = {"tests", "bench", "deploy"}
FORBIDDEN = {
    "common": {"producer", "consumer"} | TOOLING,
    "producer": {"consumer"} | TOOLING,
    "consumer": {"producer"} | TOOLING,
}


def imported_packages(source: str) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in `source`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".", 1)[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".", 1)[0]


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, imported in imported_packages(path.read_text()):
            if imported in FORBIDDEN[package]:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_runtime_package_imports_only_what_the_layout_allows(package: str) -> None:
    assert violations(package) == [], f"{package} must not import {sorted(FORBIDDEN[package])}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import consumer.worker", ["consumer"]),
        ("from producer.app import create_app", ["producer"]),
        ("def lazy():\n    from consumer.loader import load_registry\n", ["consumer"]),
        ("from . import sibling\nfrom .names import Names", []),
    ],
)
def test_the_rule_sees_every_kind_of_import(source: str, expected: list[str]) -> None:
    assert [package for _, package in imported_packages(source)] == expected
