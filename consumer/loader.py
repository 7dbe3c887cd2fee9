"""Find a service's handler registry from an import path such as `consumer.examples:registry`."""

from __future__ import annotations

import importlib

from common.errors import ConfigurationError
from consumer.registry import Registry

__all__ = ["load_registry"]


def load_registry(path: str) -> Registry:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"HOPLINE_HANDLERS={path!r} must look like 'package.module:registry'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"HOPLINE_HANDLERS: cannot import {module_name!r}: {exc}") from exc
    registry = getattr(module, attribute, None)
    if not isinstance(registry, Registry):
        raise ConfigurationError(
            f"HOPLINE_HANDLERS: {path!r} is {type(registry).__name__}, not a consumer.Registry"
        )
    return registry
