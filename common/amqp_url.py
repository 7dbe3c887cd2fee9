"""What an AMQP URL says: user, password, host, vhost, and whether it is TLS (pure).

`HOPLINE_AMQP_URL` may list a cluster's nodes separated by commas (common.failover); the
parts read here come from the first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["AmqpUrl", "parse_amqp_url", "split_urls"]


def split_urls(text: str) -> list[str]:
    """`amqp://a/,amqp://b/` -> both URLs, in order; one URL stays one."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True, slots=True)
class AmqpUrl:
    host: str
    user: str
    password: str
    vhost: str
    tls: bool


def parse_amqp_url(text: str) -> AmqpUrl:
    """The first URL of `text`, with RabbitMQ's defaults (guest/guest, vhost `/`)."""
    urls = split_urls(text)
    parts = urlsplit(urls[0] if urls else "")
    return AmqpUrl(
        host=parts.hostname or "localhost",
        user=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        vhost=unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
        tls=parts.scheme.lower() == "amqps",
    )
