"""common.amqp_url and the management endpoint derived from it (pure)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from common.amqp_url import AmqpUrl, parse_amqp_url
from common.errors import ConfigurationError
from common.quarantine.management import management_endpoint
from common.settings import HoplineSettings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://localhost/", AmqpUrl("localhost", "guest", "guest", "/", tls=False)),
        (
            "amqps://ops%40acme:p%2Fw@mq.example:5671/hopline%2Fprod",
            AmqpUrl("mq.example", "ops@acme", "p/w", "hopline/prod", tls=True),
        ),
        ("amqp://a:b@one/x, amqp://c:d@two/y", AmqpUrl("one", "a", "b", "x", tls=False)),
    ],
)
def test_an_amqp_url_says_who_where_and_whether_tls(url: str, expected: AmqpUrl) -> None:
    assert parse_amqp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("amqp://u:p@mq.example/v", "http://mq.example:15672"),
        # The same password over TLS: the management API is asked over HTTPS too
        ("amqps://u:p@mq.example/v", "https://mq.example:15671"),
    ],
)
def test_the_management_api_is_reached_like_the_broker(url: str, base: str) -> None:
    settings = HoplineSettings(amqp_url=SecretStr(url))
    assert management_endpoint(settings) == (base, "v", "u", "p")


def test_a_plain_http_management_url_is_refused_for_a_tls_broker() -> None:
    tls = "amqps://u:p@mq.example/v"
    with pytest.raises(ConfigurationError, match="clear text; use https://"):
        management_endpoint(
            HoplineSettings(amqp_url=SecretStr(tls), management_url="http://mq.example:15672")
        )
    # ... unless that is a deliberate choice
    allowed = HoplineSettings(
        amqp_url=SecretStr(tls),
        management_url="http://mq.example:15672",
        management_allow_http=True,
    )
    assert management_endpoint(allowed)[0] == "http://mq.example:15672"
