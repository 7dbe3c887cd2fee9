"""The little we ask of RabbitMQ's management API: which quarantine queues exist.

AMQP cannot list queues, so finding every service's quarantine needs the HTTP API. Every
other operation works over AMQP alone, given `--service`.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from common.amqp_url import parse_amqp_url
from common.errors import BrokerUnavailableError, ConfigurationError
from common.redact import redact_url
from common.settings import HoplineSettings

__all__ = ["find_quarantine_queues", "management_endpoint"]


def management_endpoint(settings: HoplineSettings) -> tuple[str, str, str, str]:
    """(base URL, vhost, user, password) derived from the AMQP URL unless configured.

    A broker reached over TLS (`amqps://`) is asked over HTTPS too: the management API takes
    the same user and password, which must not cross the network in clear text.
    """
    amqp = parse_amqp_url(settings.amqp_url.get_secret_value())
    scheme = "https" if amqp.tls else "http"
    base = settings.management_url or f"{scheme}://{amqp.host}:{15671 if amqp.tls else 15672}"
    if amqp.tls and base.lower().startswith("http://") and not settings.management_allow_http:
        raise ConfigurationError(
            f"HOPLINE_MANAGEMENT_URL {redact_url(base)} is plain HTTP while the broker is "
            "reached over TLS: the password would cross the network in clear text; use "
            "https://, or set HOPLINE_MANAGEMENT_ALLOW_HTTP=true if the path is trusted"
        )
    return base.rstrip("/"), amqp.vhost, amqp.user, amqp.password


async def find_quarantine_queues(settings: HoplineSettings) -> list[str]:
    base, vhost, user, password = management_endpoint(settings)
    pattern = re.compile(rf"^{re.escape(settings.prefix)}\.[^.]+\.quarantine$")
    url = f"{base}/api/queues/{quote(vhost, safe='')}?columns=name"
    try:
        async with httpx.AsyncClient(auth=(user, password), timeout=10) as client:
            response = await client.get(url)
            response.raise_for_status()
    except httpx.HTTPError as exc:
        raise BrokerUnavailableError(
            f"cannot list queues through the management API at {redact_url(base)} ({exc}); "
            "name the service with --service, or set HOPLINE_MANAGEMENT_URL"
        ) from None
    names = [entry["name"] for entry in response.json()]
    return sorted(name for name in names if pattern.match(name))
