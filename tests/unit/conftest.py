"""Unit tests see only the settings they set: a developer's HOPLINE_* variables stay out."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_hopline_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("HOPLINE_"):
            monkeypatch.delenv(name)
