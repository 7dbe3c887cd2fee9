"""Who may publish what, how fast: ingestion API keys and their per-key rate limit.

Keys are configured as SHA-256 hashes (`HOPLINE_API_KEYS`), so a leaked configuration does
not leak a key. Each key may be limited to message type patterns and priorities. The rate
limit is a token bucket per key and per producer process: with N replicas a key may send up
to N times its rate (say so to whoever sets the numbers).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.apikeys import ApiKeySpec, hash_key
from common.names import topic_matches

__all__ = [
    "ApiKey",
    "Forbidden",
    "KeyRing",
    "RateLimited",
    "TokenBucket",
    "Unauthenticated",
]


class Unauthenticated(Exception):
    """401: no key, or not one we know."""


class Forbidden(Exception):
    """403: a known key, outside its rights."""


class RateLimited(Exception):
    """429: the key's bucket is empty; `retry_after_s` until enough tokens are back."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _updated: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._updated = self.clock()

    def take(self, count: int) -> float:
        """Take `count` tokens; 0.0 if granted, else the seconds until they would be."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        if count <= self._tokens:
            self._tokens -= count
            return 0.0
        return (count - self._tokens) / self.rate_per_s


@dataclass(slots=True)
class ApiKey:
    spec: ApiKeySpec
    bucket: TokenBucket

    @property
    def name(self) -> str:
        return self.spec.name

    def check_message(self, message_type: str, priority: str) -> None:
        if not any(topic_matches(pattern, message_type) for pattern in self.spec.types):
            raise Forbidden(
                f"API key {self.name!r} may not publish type {message_type!r} "
                f"(allowed: {', '.join(self.spec.types)})"
            )
        if self.spec.priorities is not None and priority not in self.spec.priorities:
            raise Forbidden(
                f"API key {self.name!r} may not publish with priority {priority!r} "
                f"(allowed: {', '.join(self.spec.priorities)})"
            )

    def spend(self, messages: int) -> None:
        if messages > self.spec.burst:
            raise Forbidden(
                f"API key {self.name!r} may send at most {self.spec.burst} messages at once; "
                "split the batch"
            )
        wait_s = self.bucket.take(messages)
        if wait_s > 0:
            raise RateLimited(
                f"API key {self.name!r} is over its rate of {self.spec.rate_per_s:g} messages/s",
                retry_after_s=max(1, math.ceil(wait_s)),
            )


class KeyRing:
    """The configured keys; `open` when there are none."""

    def __init__(self, specs: list[ApiKeySpec], clock: Callable[[], float] = time.monotonic):
        self._keys = [
            ApiKey(spec, TokenBucket(spec.rate_per_s, spec.burst, clock)) for spec in specs
        ]

    @property
    def open(self) -> bool:
        return not self._keys

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        """The key behind an `Authorization: Bearer <key>` header (None when open)."""
        if self.open:
            return None
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
        digest = hash_key(presented.strip())
        found = None
        for key in self._keys:  # compare with every key: the time does not tell which matched
            if hmac.compare_digest(digest, key.spec.sha256):
                found = key
        if found is None:
            raise Unauthenticated("unknown API key")
        return found
