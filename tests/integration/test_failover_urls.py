"""Several broker URLs: a connection opens to the first node that answers."""

from __future__ import annotations

from pydantic import SecretStr

from common.connection import connect
from common.settings import HoplineSettings


async def test_a_dead_first_url_is_skipped(amqp_url: str, unused_amqp_url: str) -> None:
    settings = HoplineSettings(amqp_url=SecretStr(f"{unused_amqp_url}, {amqp_url}"))
    for robust in (True, False):
        connection = await connect(settings, name="failover-test", robust=robust)
        try:
            channel = await connection.channel()
            await channel.close()
            assert str(connection.url).split("?")[0] == amqp_url
        finally:
            await connection.close()
