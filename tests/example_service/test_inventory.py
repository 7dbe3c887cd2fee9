"""The example service's tests, as a service's own repository would hold them: without a
broker through `consumer.testing.Harness`, on a real one through the `hopline_*` fixtures
of the pytest plugin, and its AsyncAPI contract (docs/writing-a-service.md)."""

from __future__ import annotations

import json

from inventory import registry
from typer.testing import CliRunner

from consumer.cli import app as hopline
from consumer.pytest_plugin import ServiceFactory
from consumer.testing import Harness, Retry

harness = Harness(registry)


# -- without a broker: a few milliseconds each ---------------------------------------------


async def test_a_reservation_is_acked() -> None:
    assert (await harness.send("stock.reserve", {"sku": "apple", "quantity": 2})).acked


async def test_a_reservation_without_a_quantity_is_quarantined() -> None:
    result = await harness.send("stock.reserve", {"sku": "apple"})
    assert result.quarantine is not None
    assert "quantity: Field required" in result.quarantine.reason


async def test_a_large_reservation_is_retried_after_its_first_attempt() -> None:
    result = await harness.send("stock.reserve", {"sku": "apple", "quantity": 500})
    assert result.retry == Retry(delay_s=1.0, next_attempt=2)


async def test_a_large_reservation_is_given_up_on_its_last_attempt() -> None:
    result = await harness.send("stock.reserve", {"sku": "apple", "quantity": 500}, attempt=3)
    assert result.quarantine is not None
    assert result.quarantine.reason.startswith("gave up after 3 attempts: RetryableError")


async def test_an_unknown_sku_is_quarantined_at_once() -> None:
    result = await harness.send("stock.reserve", {"sku": "plum", "quantity": 1})
    assert result.quarantine is not None
    assert result.quarantine.reason == "permanent: PermanentError: unknown sku 'plum'"


# -- on a real RabbitMQ: the plugin's fixtures ----------------------------------------------


async def test_on_the_broker_a_reservation_is_acked(hopline_service: ServiceFactory) -> None:
    service = await hopline_service(registry)
    result = await service.publish("stock.reserve", {"sku": "pear", "quantity": 1})
    assert result.acked


async def test_on_the_broker_a_large_reservation_goes_through_its_retries_to_quarantine(
    hopline_service: ServiceFactory,
) -> None:
    service = await hopline_service(registry, retry_delays_s=[1])
    await service.publish("stock.reserve", {"sku": "pear", "quantity": 500}, message_id="r-1")
    first, second, third = await service.results("r-1", count=3)
    assert first.retry == Retry(delay_s=1.0, next_attempt=2)
    assert second.retry == Retry(delay_s=1.0, next_attempt=3)
    assert third.quarantine is not None
    assert third.quarantine.reason.startswith("gave up after 3 attempts")


# -- the contract other teams publish against ------------------------------------------------


def test_the_asyncapi_document_lists_the_reservation_and_its_schema() -> None:
    result = CliRunner().invoke(hopline, ["asyncapi", "--handlers", "inventory:registry"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    channel = document["channels"]["inventory.stock.reserve"]
    assert channel["x-hopline-routing-keys"] == [
        "high.stock.reserve",
        "normal.stock.reserve",
        "low.stock.reserve",
    ]
    assert document["components"]["schemas"]["Reservation"]["required"] == ["sku", "quantity"]
