"""Find a service's handler registry from an import path such as `consumer.examples:registry`."""

from __future__ import annotations

import importlib
import os
import sys

from common.errors import ConfigurationError
from consumer.registry import Registry

__all__ = ["load_registry"]


def load_registry(path: str) -> Registry:
    """Import `module:attribute`; the current folder is importable, as for uvicorn or celery
    (`HOPLINE_HANDLERS=billing:registry` finds `./billing.py`)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"HOPLINE_HANDLERS={path!r} must look like 'package.module:registry'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"HOPLINE_HANDLERS: cannot import {module_name!r}: {exc} (looked in the current "
            f"folder {os.getcwd()} and the installed packages; set PYTHONPATH to add others)"
        ) from exc
    registry = getattr(module, attribute, None)
    if not isinstance(registry, Registry):
        raise ConfigurationError(
            f"HOPLINE_HANDLERS: {path!r} is {type(registry).__name__}, not a consumer.Registry"
        )
    return registry
