"""Fault scenarios: every test here is marked `chaos` (`make chaos` selects them), and the
session ends with the table of what each scenario sent, lost and recovered."""

from __future__ import annotations

import pytest

from tests.support.chaos import RESULTS, format_table


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.path.as_posix():
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("fault scenarios: every message accounted for")
        terminalreporter.write_line(format_table(RESULTS))
