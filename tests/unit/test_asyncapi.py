"""The AMQP contract as AsyncAPI 3.0.0: generated from registries by `hopline asyncapi`,
served by the producer, valid against the official schema (tests/support/asyncapi)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from common.asyncapi import asyncapi_document
from common.errors import ConfigurationError
from common.settings import HoplineSettings
from consumer import Registry
from consumer.cli import app as cli
from consumer.examples import registry as demo
from producer.app import create_app
from producer.settings import ProducerSettings
from tests.fakes import FakePublisher

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "support/asyncapi/asyncapi-3.0.0.schema.json").read_text()
)


def errors_of(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


class Line(BaseModel):
    sku: str
    quantity: int


class Invoice(BaseModel):
    invoice_id: str
    lines: list[Line]


def billing() -> Registry:
    registry = Registry("billing")

    @registry.handler("invoices.*", model=Invoice, max_attempts=3, timeout=5)
    async def invoice(payload: Invoice) -> None: ...

    @registry.handler("#")
    async def everything(payload: Any) -> None: ...

    @registry.fallback()
    async def rest(payload: Any) -> None: ...

    return registry


SETTINGS = HoplineSettings(amqp_url="amqp://app:s3cret-pw@rabbit.example:5673/shop")


def test_the_document_of_two_services_is_valid_asyncapi_3() -> None:
    assert errors_of(asyncapi_document(SETTINGS, [demo, billing()])) == []


def test_the_check_catches_an_invalid_document() -> None:
    document = asyncapi_document(SETTINGS, [demo])
    document["channels"]["demo.orders.created"]["address"] = 42
    assert errors_of(document) != []


def test_each_binding_is_a_channel_on_the_ingress_with_its_routing_key_per_priority() -> None:
    document = asyncapi_document(SETTINGS, [billing()])
    channel = document["channels"]["billing.invoices._one_"]

    assert channel["address"] == "{priority}.invoices.*"
    assert channel["parameters"]["priority"]["enum"] == ["high", "normal", "low"]
    assert channel["x-hopline-routing-keys"] == [
        "high.invoices.*",
        "normal.invoices.*",
        "low.invoices.*",
    ]
    assert channel["bindings"]["amqp"]["exchange"] == {
        "name": "hopline.ingress",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "shop",
    }
    # The fallback binds nothing, so it is no channel
    assert sorted(document["channels"]) == ["billing._all_", "billing.invoices._one_", "ingress"]


def test_a_typed_payload_is_its_models_json_schema_and_an_untyped_one_any_json() -> None:
    document = asyncapi_document(SETTINGS, [billing()])
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]

    assert messages["billing.invoices._one_"]["payload"] == {"$ref": "#/components/schemas/Invoice"}
    assert schemas["Invoice"]["required"] == ["invoice_id", "lines"]
    assert schemas["Invoice"]["properties"]["lines"]["items"] == {
        "$ref": "#/components/schemas/Line"
    }
    assert messages["billing._all_"]["payload"] == {"description": "any JSON value"}


def test_headers_say_what_a_publisher_sets_and_what_the_pipeline_adds() -> None:
    document = asyncapi_document(SETTINGS, [demo])
    headers = document["components"]["schemas"]["hoplineHeaders"]["properties"]

    assert "traceparent" in headers
    assert headers["x-hopline-attempt"]["description"].startswith("Added by the pipeline")
    assert "x-hopline-reason" in headers
    message = document["components"]["messages"]["demo.orders.created"]
    assert set(message["x-hopline-properties"]) >= {"message_id", "type", "content_type"}


def test_the_server_is_named_without_its_credentials() -> None:
    document = asyncapi_document(SETTINGS, [demo])

    assert document["servers"] == {
        "rabbitmq": {"host": "rabbit.example:5673", "protocol": "amqp", "protocolVersion": "0.9.1"}
    }
    assert "s3cret-pw" not in json.dumps(document)


@pytest.fixture
def contract_file(tmp_path: Path) -> Path:
    out = tmp_path / "asyncapi.json"
    result = CliRunner().invoke(
        cli, ["asyncapi", "--handlers", "consumer.examples:registry", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


@asynccontextmanager
async def producer(settings: ProducerSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, publisher=FakePublisher())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_the_producer_serves_the_document_hopline_asyncapi_wrote(
    contract_file: Path,
) -> None:
    settings = ProducerSettings(ingestion_open=True, asyncapi_file=str(contract_file))
    async with producer(settings) as client:
        response = await client.get("/asyncapi.json")

        assert response.status_code == 200
        assert response.json() == json.loads(contract_file.read_text())
        assert errors_of(response.json()) == []
        assert "demo.payments.charge" in response.json()["channels"]


async def test_without_a_document_the_producer_serves_the_ingress_contract() -> None:
    async with producer(ProducerSettings(ingestion_open=True)) as client:
        document = (await client.get("/asyncapi.json")).json()

        assert list(document["channels"]) == ["ingress"]
        assert errors_of(document) == []


async def test_the_rendered_page_loads_nothing_from_elsewhere() -> None:
    async with producer(ProducerSettings(ingestion_open=True)) as client:
        response = await client.get("/asyncapi")

        assert response.status_code == 200
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert 'fetch("/asyncapi.json")' in response.text
        assert "src=" not in response.text  # no script, style or font from a CDN


def test_a_missing_document_stops_the_producer_with_one_line(tmp_path: Path) -> None:
    settings = ProducerSettings(ingestion_open=True, asyncapi_file=str(tmp_path / "nope.json"))

    with pytest.raises(ConfigurationError, match="hopline asyncapi --handlers"):
        create_app(settings, publisher=FakePublisher())
