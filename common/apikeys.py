"""Ingestion API keys: their configuration entry, making and hashing them (the producer
checks them; the CLI makes them)."""

from __future__ import annotations

import hashlib
import secrets

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ApiKeySpec", "hash_key", "new_key"]


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


def hash_key(key: str) -> str:
    """What the configuration stores: the hex SHA-256 of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: 32 random bytes, URL-safe, with a prefix that secret scanners can spot."""
    return "hpl_" + secrets.token_urlsafe(32)
