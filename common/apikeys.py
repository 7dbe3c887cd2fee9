"""Making and hashing ingestion API keys (the producer checks them; the CLI makes them)."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["hash_key", "new_key"]


def hash_key(key: str) -> str:
    """What the configuration stores: the hex SHA-256 of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: 32 random bytes, URL-safe, with a prefix that secret scanners can spot."""
    return "hpl_" + secrets.token_urlsafe(32)
