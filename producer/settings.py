"""The producer's settings: the HTTP ingestion service (`HOPLINE_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from common.apikeys import ApiKeySpec
from common.settings import HoplineSettings

__all__ = ["MIN_ADMIN_TOKEN_CHARS", "ProducerSettings"]

# A token anyone can guess in a few tries protects nothing: `make run` makes 16 characters.
MIN_ADMIN_TOKEN_CHARS = 16


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
    # What a client may hold or send before the app sees its request (producer/http_limits.py)
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a request's headers may take to arrive (then 408)."
    )
    http_max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Bytes of one request's headers together (then 431)."
    )
    http_max_headers: int = Field(100, ge=10, description="Headers per request (then 431).")
    http_keep_alive_s: float = Field(
        5.0, gt=0, description="Seconds an idle kept-alive connection stays open."
    )
    http_max_connections: int = Field(
        1000, ge=1, description="Open connections and running requests at once (then 503)."
    )
    serve: Literal["all", "ingestion", "admin"] = Field(
        "all",
        description="What this process serves: `ingestion` for the internet-facing API, "
        "`admin` for the admin API and page (run it as the operator's broker user, on its own "
        "port), `all` for both (development).",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token of the admin API and page (at least 16 characters, e.g. "
        "`openssl rand -hex 24`); unset disables both.",
    )
    archive_dir: str = Field(
        ".hopline/archive", description="Where the admin API archives discarded messages."
    )
    ingestion_open: bool = Field(
        False,
        description="Accept messages without an API key (for development: `make run` sets "
        "it). Without it and without HOPLINE_API_KEYS the producer refuses to start.",
    )
    status_recorder: bool = Field(
        True,
        description="Run the status recorder in this process (events queue -> status store); "
        "turn off where `hopline recorder` runs on its own.",
    )
    asyncapi_file: str | None = Field(
        None,
        description="The AsyncAPI document served at /asyncapi.json (written by `hopline "
        "asyncapi --handlers ... --out FILE`); unset: the ingress contract without services.",
    )
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list,
        description="Ingestion API keys as JSON (`hopline apikey` makes one); "
        "empty: the ingestion API is open.",
    )

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"the admin token must be at least {MIN_ADMIN_TOKEN_CHARS} characters "
                "(e.g. openssl rand -hex 24)"
            )
        return value
