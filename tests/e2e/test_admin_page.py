"""The /admin page in headless Chromium: a person signs in, clicks "Replay" and the message
moves, corrects a payload and replays the copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.broker import BrokerEndpoint, Vhost
from tests.support.browser import chromium, running_producer
from tests.support.browser import chromium_path as chromium_path_or_skip
from tests.support.pipeline import drain, queue_depth
from tests.support.quarantine import seed_quarantine

TOKEN = "page-token-of-the-test"


@pytest.fixture
def chromium_path() -> str:
    return chromium_path_or_skip("admin")


async def test_clicking_replay_moves_the_message_back(
    vhost: Vhost, broker: BrokerEndpoint, tmp_path: Path, chromium_path: str
) -> None:
    await seed_quarantine(
        vhost.amqp_url,
        "orders",
        [
            {"id": f"m-{n}", "type": "orders.created", "error_type": "KeyError", "error": "'sku'"}
            for n in range(3)
        ],
    )
    async with (
        running_producer(
            vhost.amqp_url,
            tmp_path / "producer.log",
            HOPLINE_ADMIN_TOKEN=TOKEN,
            HOPLINE_MANAGEMENT_URL=broker.management_url,
            HOPLINE_ARCHIVE_DIR=str(tmp_path / "archive"),
        ) as base,
        chromium(chromium_path) as browser,
    ):
        page = await browser.new_page()
        await page.goto(base + "/admin")
        # Before a token: the page says what to do, not empty tables
        assert "Type the admin token" in await page.inner_text("#hint")
        # A wrong token: the server's words, not a JSON string
        await page.fill("#token", "not-the-token")
        await page.click("#load")
        await page.wait_for_selector("#result.error")
        assert await page.inner_text("#result") == "wrong admin token"
        # The link `make run` prints signs in by itself (the token is in the fragment)
        await page.goto(base + f"/admin#token={TOKEN}")
        # Given the group of three failures is shown
        row = page.locator("#groups tbody tr").first
        await row.wait_for()
        assert "KeyError" in await row.inner_text()
        await row.locator("button", has_text="Messages").click()
        # When the person opens one message and clicks Replay on it
        await page.locator('#messages tr[data-id="m-1"] button', has_text="Open").click()
        await page.locator("#detail pre").first.wait_for()
        assert "'sku'" in await page.inner_text("#detail")
        await page.locator('#messages tr[data-id="m-1"] button', has_text="Replay").click()
        # Then the page reports it and the message is back in its origin queue
        await page.wait_for_selector("#result:has-text('replayed 1 of 1')")
        await page.screenshot(path=str(tmp_path / "admin.png"))
        await page.wait_for_selector('#messages tr[data-id="m-1"]', state="detached")
        # When the person corrects another message's payload and replays the copy
        await page.locator('#messages tr[data-id="m-0"] button', has_text="Open").click()
        await page.wait_for_selector("#detail h3:has-text('m-0')")
        await page.fill("#edit-payload", '{"sku": "A-42"}')
        await page.locator("#detail button", has_text="Replay edited copy").click()
        await page.wait_for_selector("#result:has-text('edited copy of m-0')")
        assert "x-hopline-error-traceback" not in await page.inner_text("#detail")
    replayed = await drain(vhost.amqp_url, "hopline.orders.normal")
    assert replayed[0].message_id == "m-1"
    # Then the edited copy has a new id, records the original, and carries the new payload
    edited = replayed[1]
    assert edited.message_id != "m-0"
    assert edited.headers["x-hopline-edited-from"] == "m-0"
    assert edited.body == b'{"sku":"A-42"}'
    assert await queue_depth(vhost.amqp_url, "hopline.orders.quarantine") == 1
