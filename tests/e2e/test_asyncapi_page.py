"""The producer's /asyncapi page in headless Chromium: it renders the document that
`hopline asyncapi` wrote, with nothing from the network and nothing the page's
Content-Security-Policy blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.asyncapi import asyncapi_document
from common.settings import HoplineSettings
from consumer.examples import registry
from tests.support.broker import Vhost
from tests.support.browser import chromium, running_producer
from tests.support.browser import chromium_path as chromium_path_or_skip


@pytest.fixture
def chromium_path() -> str:
    return chromium_path_or_skip("AsyncAPI")


async def test_the_page_shows_each_channel_its_payload_schema_and_the_headers(
    vhost: Vhost, tmp_path: Path, chromium_path: str
) -> None:
    contract = tmp_path / "asyncapi.json"
    contract.write_text(json.dumps(asyncapi_document(HoplineSettings(), [registry])))
    async with (
        running_producer(
            vhost.amqp_url, tmp_path / "producer.log", HOPLINE_ASYNCAPI_FILE=str(contract)
        ) as base,
        chromium(chromium_path) as browser,
    ):
        page = await browser.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        failed: list[str] = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

        await page.goto(base + "/asyncapi")
        await page.wait_for_selector("h3:has-text('orders.created to service demo')")

        text = await page.inner_text("body")
        assert "normal.orders.created" in text  # the routing keys per priority
        assert '"amount_cents"' in text  # OrderCreated's JSON Schema
        assert "x-hopline-attempt" in await page.inner_text("#headers")
        assert "message_id" in await page.inner_text("#properties")
        # No script error and nothing the CSP refused; the browser's own favicon request is
        # the one answer that may fail
        assert [p for p in problems if not p.startswith("Failed to load resource")] == []
        assert set(failed) <= {base + "/favicon.ico"}
        assert all(url.startswith(base) for url in requested)
