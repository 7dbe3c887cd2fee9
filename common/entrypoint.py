"""The command line of a service entry point: `--help` and `--version`, nothing else.

A service is configured by `HOPLINE_*` variables only, so its help is the list of variables it
reads, with their defaults, built from its settings class. Parsing happens before anything
connects: `hopline-consumer --help` answers and exits 0 without a broker.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from collections.abc import Sequence

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from common.redact import redact_url
from common.settings import HoplineSettings

__all__ = ["parse_service_arguments", "settings_help", "version"]


def version() -> str:
    try:
        return importlib.metadata.version("hopline")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def settings_help(settings: type[HoplineSettings]) -> str:
    """One line per `HOPLINE_*` variable: name, default, what it does."""
    lines = []
    for name, field in settings.model_fields.items():
        default = field.default
        if field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        if default is PydanticUndefined or default is None:
            shown = "(unset)"
        elif isinstance(default, SecretStr):
            shown = redact_url(default.get_secret_value())
        elif isinstance(default, list):
            shown = ",".join(str(item) for item in default) or "(empty)"
        else:
            shown = json.dumps(default) if isinstance(default, bool) else str(default)
        about = f"  {field.description}" if field.description else ""
        lines.append(f"  HOPLINE_{name.upper():<28} {shown}{about}")
    return "\n".join(lines)


def parse_service_arguments(
    prog: str, description: str, settings: type[HoplineSettings], argv: Sequence[str] | None
) -> None:
    """Answer `--help` / `--version` (exit 0); any other argument is a usage error (exit 2)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="settings (environment variables, default in the second column):\n"
        + settings_help(settings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{prog} {version()}")
    parser.parse_args(argv)
