"""The quarantine tools over HTTP on the producer, behind the admin token."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from structlog.testing import capture_logs

from deploy.local.broker import free_port
from tests.support.broker import BrokerEndpoint, Vhost
from tests.support.pipeline import producer_client, producer_settings, publish_raw, queue_depth
from tests.support.quarantine import seed_quarantine

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUARANTINE = "hopline.orders.quarantine"


@pytest.fixture
async def admin(
    vhost: Vhost, broker: BrokerEndpoint, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = producer_settings(
        vhost.amqp_url,
        admin_token=TOKEN,
        management_url=broker.management_url,
        archive_dir=str(tmp_path / "archive"),
    )
    async with producer_client(settings) as client:
        yield client


async def test_admin_routes_need_the_token(admin: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        missing = await admin.get("/v1/admin/quarantine/groups")
        assert missing.status_code == 401
        no = {"Authorization": "Bearer no"}
        wrong = await admin.get("/v1/admin/quarantine/groups", headers=no)
        assert wrong.status_code == 403
        assert wrong.json()["detail"] == "wrong admin token"
    # Every refusal leaves a line (with the client), never the token tried
    refusals = [e for e in logs if e["event"] == "admin.refused"]
    assert [e["reason"] for e in refusals] == ["no token", "wrong token"]
    assert "no" not in {str(v) for e in refusals for v in e.values()}


async def test_the_admin_page_may_run_only_its_own_script_and_never_in_a_frame(
    admin: httpx.AsyncClient,
) -> None:
    page = await admin.get("/admin")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    # The page itself holds no data: the token guards the API it calls
    assert "KeyError" not in page.text


async def test_admin_routes_do_not_exist_without_a_token(amqp_url: str) -> None:
    async with producer_client(producer_settings(amqp_url)) as client:
        assert (await client.get("/v1/admin/quarantine/groups", headers=AUTH)).status_code == 404
        assert (await client.get("/admin")).status_code == 404
        assert "/v1/admin/quarantine/groups" not in (await client.get("/openapi.json")).text


async def test_list_groups_show_replay_discard(
    admin: httpx.AsyncClient, amqp_url: str, tmp_path: Path
) -> None:
    await seed_quarantine(
        amqp_url,
        "orders",
        [{"id": f"m-{n}", "type": "orders.created", "error_type": "KeyError"} for n in range(4)],
    )
    listed = (await admin.get("/v1/admin/quarantine/messages", headers=AUTH)).json()
    assert [m["id"] for m in listed] == ["m-0", "m-1", "m-2", "m-3"]
    [group] = (await admin.get("/v1/admin/quarantine/groups", headers=AUTH)).json()
    assert (group["error_type"], group["count"]) == ("KeyError", 4)

    detail = await admin.get("/v1/admin/quarantine/messages/m-2", headers=AUTH)
    assert detail.status_code == 200
    assert detail.json()["headers"]["x-hopline-queue"] == "hopline.orders.normal"
    assert "Traceback" in detail.json()["traceback"]
    missing = await admin.get("/v1/admin/quarantine/messages/nope", headers=AUTH)
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]

    with capture_logs() as logs:
        replayed = await admin.post(
            "/v1/admin/quarantine/replay", headers=AUTH, json={"ids": ["m-0"]}
        )
    assert replayed.json()["moved"] == 1
    [action] = [e for e in logs if e["event"] == "admin.action"]
    assert (action["action"], action["ids"], action["moved"]) == ("replay", ["m-0"], 1)
    assert await queue_depth(amqp_url, "hopline.orders.normal") == 1

    unselected = await admin.post("/v1/admin/quarantine/discard", headers=AUTH, json={})
    assert unselected.status_code == 422

    discarded = await admin.post(
        "/v1/admin/quarantine/discard", headers=AUTH, json={"group": group["id"], "all": True}
    )
    body = discarded.json()
    assert body["moved"] == 3
    assert len(Path(body["archive"]).read_text().splitlines()) == 3
    assert stat.S_IMODE(Path(body["archive"]).stat().st_mode) == 0o600
    assert await queue_depth(amqp_url, QUARANTINE) == 0

    imported = await admin.post(
        "/v1/admin/quarantine/import", headers=AUTH, content=Path(body["archive"]).read_bytes()
    )
    assert imported.json()["moved"] == 3
    exported = await admin.get("/v1/admin/quarantine/export", headers=AUTH)
    assert len(exported.text.splitlines()) == 3
    assert "content-length" not in exported.headers, "streamed, not built in memory first"


async def test_admin_answers_503_without_a_broker(tmp_path: Path) -> None:
    settings = producer_settings(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        admin_token=TOKEN,
        management_url="http://127.0.0.1:1",
    )
    async with producer_client(settings, wait_ready=False) as client:
        response = await client.get("/v1/admin/quarantine/groups", headers=AUTH)
        assert response.status_code == 503
        assert "Retry-After" in response.headers


async def test_unroutable_over_http(admin: httpx.AsyncClient, amqp_url: str) -> None:
    await seed_quarantine(amqp_url, "orders", [])  # declares the orders queues
    await publish_raw(
        amqp_url,
        "hopline.ingress",
        "urgent.orders.created",
        aio_pika.Message(b'{"n": 1}', message_id="u-1"),
    )
    listed = (await admin.get("/v1/admin/unroutable/messages", headers=AUTH)).json()
    assert [(m["id"], m["routing_key"]) for m in listed] == [("u-1", "urgent.orders.created")]
    dry = await admin.post(
        "/v1/admin/unroutable/replay", headers=AUTH, json={"all": True, "dry_run": True}
    )
    assert dry.json()["matched"] == 1 and dry.json()["moved"] == 0
    moved = await admin.post(
        "/v1/admin/unroutable/replay",
        headers=AUTH,
        json={"ids": ["u-1"], "routing_key": "high.orders.created"},
    )
    assert moved.json()["moved"] == 1
    assert await queue_depth(amqp_url, "hopline.orders.high") == 1
    assert await queue_depth(amqp_url, "hopline.unroutable") == 0
