"""Configuration read once from `HOPLINE_*` variables (pydantic-settings) and passed down."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from common.errors import ConfigurationError
from common.names import Names, format_delay, is_valid_message_type

__all__ = [
    "ApiKeySpec",
    "ConsumerSettings",
    "HoplineSettings",
    "ProducerSettings",
    "load_settings",
]

_WORD = r"^[a-z][a-z0-9_-]*$"


def _split_commas(value: object) -> object:
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
        "(default: http://<broker host>:15672 with the broker URL's credentials).",
    )
    prefix: str = Field("hopline", pattern=_WORD, description="Prefix of every broker object.")
    priorities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["high", "normal", "low"],
        description="Priorities, highest first (comma-separated).",
    )
    retry_delays_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0],
        description="Retry tier delays in seconds, shortest first (comma-separated).",
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
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("priorities", "retry_delays_s", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _split_commas(value)

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
        if any(delay <= 0 for delay in value):
            raise ValueError("retry delays must be positive")
        if sorted(value) != value:
            raise ValueError("retry delays must be listed shortest first")
        if len({format_delay(delay) for delay in value}) != len(value):
            raise ValueError("two retry delays map to the same tier name")
        return value

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @property
    def priority_order(self) -> tuple[str, ...]:
        return tuple(self.priorities)


class ApiKeySpec(BaseModel):
    """One ingestion API key, stored as the SHA-256 of the key, never the key itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="Shown in logs instead of the key.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")
    types: list[str] = Field(
        default_factory=lambda: ["#"], description="Message type patterns (`*`, `#`) allowed."
    )
    priorities: list[str] | None = Field(None, description="Allowed priorities (default: all).")
    rate_per_s: float = Field(100.0, gt=0, description="Sustained messages per second.")
    burst: int = Field(200, ge=1, description="Messages allowed at once above the rate.")


class ProducerSettings(HoplineSettings):
    """The HTTP ingestion service."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_payload_bytes: int = Field(256 * 1024, ge=1, description="Largest payload, as JSON.")
    max_request_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="Largest request body, checked before parsing."
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with a 503.")
    max_batch_size: int = Field(1000, ge=1, le=10_000)
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the admin API and page; unset disables both."
    )
    archive_dir: str = Field(
        ".hopline/archive", description="Where the admin API archives discarded messages."
    )
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list,
        description="Ingestion API keys as JSON (`hopline apikey` makes one); "
        "empty: the ingestion API is open.",
    )


class ConsumerSettings(HoplineSettings):
    """A consumer service."""

    handlers: str | None = Field(
        None,
        description="Import path `module:attribute` of the service's handler registry "
        "(required; `consumer.examples:registry` is the demo service of `make run`).",
    )
    concurrency: int = Field(16, ge=1, le=10_000, description="Handlers running at once.")
    prefetch: int | None = Field(
        None, ge=1, description="Unacked deliveries per priority queue (default: concurrency)."
    )
    consume_priorities: Annotated[list[str], NoDecode] | None = Field(
        None, description="Serve only these priorities (default: all)."
    )
    shutdown_grace_s: float = Field(30.0, ge=0)
    # Outage protection (consumer/breaker.py): off unless a failure ratio is set.
    breaker_failure_ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Pause consuming when this share of recent outcomes are transient failures.",
    )
    breaker_window_s: float = Field(
        30.0, gt=0, description="Outcomes older than this are forgotten."
    )
    breaker_min_outcomes: int = Field(20, ge=1, description="Fewer outcomes never pause.")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="Pause length before probing.")
    breaker_probes: int = Field(5, ge=1, description="Successful probes that resume consuming.")

    @field_validator("consume_priorities", mode="before")
    @classmethod
    def _split_consumed(cls, value: object) -> object:
        return _split_commas(value)

    @model_validator(mode="after")
    def _consumed_are_known(self) -> ConsumerSettings:
        unknown = set(self.consume_priorities or ()) - set(self.priorities)
        if unknown:
            raise ValueError(
                f"consume_priorities {sorted(unknown)} are not in priorities {self.priorities}"
            )
        return self

    @property
    def served_priorities(self) -> tuple[str, ...]:
        """Priorities this process consumes, highest first."""
        wanted = set(self.consume_priorities or self.priorities)
        return tuple(p for p in self.priorities if p in wanted)

    @property
    def effective_prefetch(self) -> int:
        return self.prefetch or self.concurrency


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
