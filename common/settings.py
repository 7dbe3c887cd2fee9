"""Configuration read once from `HOPLINE_*` variables (pydantic-settings) and passed down."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from common.delays import MAX_DELAY_S
from common.errors import ConfigurationError
from common.names import Names, is_valid_message_type

__all__ = ["HoplineSettings", "load_settings", "split_commas"]

_WORD = r"^[a-z][a-z0-9_-]*$"


def split_commas(value: object) -> object:
    """`HOPLINE_PRIORITIES=high,normal,low` reads better than a JSON list in a shell."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class HoplineSettings(BaseSettings):
    """What every hopline process needs to talk to the broker."""

    model_config = SettingsConfigDict(env_prefix="HOPLINE_", extra="ignore", frozen=True)

    amqp_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@localhost:5672/"),
        description="Broker URL (amqp:// or amqps://); the password is never logged.",
    )
    management_url: str | None = Field(
        None,
        description="RabbitMQ management API, used only to find quarantine queues "
        "(default: http://<broker host>:15672, https://...:15671 for amqps://, with the "
        "broker URL's credentials).",
    )
    management_allow_http: bool = Field(
        False,
        description="Allow an http:// management URL although the broker is reached over "
        "TLS (the user and password then cross the network in clear text).",
    )
    prefix: str = Field("hopline", pattern=_WORD, description="Prefix of every broker object.")
    priorities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["high", "normal", "low"],
        description="Priorities, highest first (comma-separated).",
    )
    retry_delays_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0],
        description="Seconds before each retry of a handler without its own `retry=`: the "
        "n-th for the n-th retry, the last repeating (comma-separated; rounded up to whole "
        "seconds).",
    )
    queue_type: Literal["quorum", "classic"] = "quorum"
    delivery_limit: int = Field(
        5,
        ge=1,
        description="Broker-side redeliveries before a crash-looping message is quarantined.",
    )
    publish_timeout_s: float = Field(5.0, gt=0)
    app_id: str = "hopline"
    tls_ca_file: FilePath | None = Field(
        None, description="PEM CA bundle that signed the broker's certificate (amqps://)."
    )
    tls_cert_file: FilePath | None = Field(
        None, description="PEM client certificate, for brokers that require one (amqps://)."
    )
    tls_key_file: FilePath | None = Field(
        None, description="PEM private key of the client certificate (unencrypted)."
    )
    events_enabled: bool = Field(
        True,
        description="Publish lifecycle events to <prefix>.events (what the status store and "
        "GET /v1/messages/{id} are made of).",
    )
    events_started_after_s: float = Field(
        1.0,
        ge=0,
        description="A consumer publishes `started` once a handler has run this long; a "
        "handler done sooner has its start carried by the event that ends the attempt "
        "(`started_at`), so a fast message costs one event, not two. 0: `started` at once.",
    )
    max_result_bytes: int = Field(
        4096,
        ge=0,
        description="Largest handler result (as JSON) carried in a `succeeded` event; a larger "
        "one is replaced by a note saying its size.",
    )
    status_url: SecretStr = Field(
        SecretStr("sqlite:///.hopline/status.sqlite3"),
        description="The status store: sqlite:///<path> (embedded, one host) or "
        "postgresql://user:pass@host/db (several producers); the password is never logged.",
    )
    status_retention_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="How long a message's status and idempotency keys are kept (then unknown).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("priorities", "retry_delays_s", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("priorities")
    @classmethod
    def _check_priorities(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one priority is needed")
        for priority in value:
            if not is_valid_message_type(priority) or "." in priority:
                raise ValueError(f"priority {priority!r} must be one lowercase word")
        if len(set(value)) != len(value):
            raise ValueError("priorities must be unique")
        return value

    @field_validator("retry_delays_s")
    @classmethod
    def _check_delays(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("at least one retry delay is needed")
        if any(not 0 <= delay <= MAX_DELAY_S for delay in value):
            raise ValueError(f"retry delays must be from 0 to {MAX_DELAY_S} seconds")
        return value

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @property
    def priority_order(self) -> tuple[str, ...]:
        return tuple(self.priorities)


_S = TypeVar("_S", bound=HoplineSettings)


def load_settings(cls: type[_S], **overrides: Any) -> _S:
    """Read settings once; a bad value becomes one line per setting, not a traceback."""
    try:
        return cls(**overrides)
    except SettingsError as exc:  # a value that is not even JSON, before validation
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"HOPLINE_{field[1].upper()}" if field else "a HOPLINE_ variable"
        raise ConfigurationError(
            f"invalid configuration:\n  {name}: not valid JSON ({exc.__cause__ or exc})"
        ) from None
    except ValidationError as exc:
        problems: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False):
            # A list item's location ends in its index; the variable is the first part.
            name = str(error["loc"][0]) if error["loc"] else _whole_model_field(error["msg"])
            problems.setdefault(f"HOPLINE_{name.upper()}", []).append(error["msg"])
        lines = [f"{name}: {'; '.join(dict.fromkeys(msgs))}" for name, msgs in problems.items()]
        raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def _whole_model_field(message: str) -> str:
    """Model-level checks name their field first ("consume_priorities [...] are not ...")."""
    first = message.removeprefix("Value error, ").split(" ", 1)[0]
    return first if first.isidentifier() else "configuration"
