"""What to do when a test's real component is missing: skip on a laptop, fail in CI.

A CI run that skipped its broker or browser tests would be green and worthless, so under
`CI=true` a missing component is a failure with the same message.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["missing"]


def missing(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
