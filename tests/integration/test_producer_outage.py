"""The producer without a broker: 503 with Retry-After, never a 202, and recovery by itself."""

from __future__ import annotations

import httpx
from structlog.testing import capture_logs

from deploy.local.broker import LocalBroker, restart_local_broker, stop_local_broker
from producer.settings import ProducerSettings
from tests.support.pipeline import producer_client, producer_settings
from tests.support.wait import wait_until

MESSAGE = {"type": "orders.created", "payload": {"order_id": "A-1"}}


async def _post(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/v1/messages", json=MESSAGE)


async def test_producer_answers_503_while_the_broker_is_gone_and_recovers(
    private_broker: LocalBroker,
) -> None:
    url = private_broker.amqp_url + "?reconnect_interval=0.5"
    settings = producer_settings(url, publish_timeout_s=2.0, retry_after_s=3)
    with capture_logs() as logs:
        await _outage_and_recovery(private_broker, settings)
    # And the outage is two lines per connection in the log (the publisher's, and those of
    # the status recorder and the lifecycle events), however many reconnect attempts it took
    states: dict[str, list[str]] = {}
    for e in logs:
        if e["event"].startswith("broker.connection_"):
            states.setdefault(e["connection"], []).append(e["event"])
    assert "hopline-producer" in states, states
    for connection, connection_states in states.items():
        assert connection_states == [
            "broker.connection_lost",
            "broker.connection_restored",
        ], f"{connection}: {connection_states}"
    lost = next(e for e in logs if e["event"] == "broker.connection_lost")
    assert lost["action"] == "reconnecting every 0.5 s"


async def _outage_and_recovery(private_broker: LocalBroker, settings: ProducerSettings) -> None:
    async with producer_client(settings) as client:
        # Given a working producer
        assert (await _post(client)).status_code == 202

        # When the broker goes away
        stop_local_broker(private_broker)

        # Then posts get 503 with Retry-After (never 202) and readiness says so
        refused = await _post(client)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "3"
        assert "RabbitMQ" in refused.json()["detail"] or "broker" in refused.json()["detail"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "Retry-After" in ready.headers

        # When the broker is back, the producer reconnects by itself
        restart_local_broker(private_broker)

        async def accepted() -> bool:
            return (await _post(client)).status_code == 202

        await wait_until(accepted, timeout_s=30, interval_s=0.5, message="producer never recovered")
        assert (await client.get("/readyz")).status_code == 200


async def test_producer_starts_without_a_broker_and_answers_503(unused_amqp_url: str) -> None:
    settings = producer_settings(unused_amqp_url)  # its password is "secret-pw"
    with capture_logs() as logs:
        async with producer_client(settings, wait_ready=False) as client:
            response = await _post(client)
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) >= 1
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            await wait_until(
                lambda: any(e["event"] == "broker.unavailable" for e in logs), timeout_s=10
            )
    # The password is in neither the answers nor the logs (which do name the URL)
    assert "secret-pw" not in response.text + ready.text
    assert "secret-pw" not in repr(logs)
    assert "guest:***@127.0.0.1" in repr(logs)
