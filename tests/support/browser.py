"""What the browser tests share: a producer process that answers, and headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from deploy.local.broker import free_port
from tests.support.needs import missing
from tests.support.processes import service_process
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from playwright.async_api import Browser

__all__ = ["chromium", "chromium_path", "running_producer"]


def chromium_path(page: str) -> str:
    """Debian's Chromium, or skip (fail under CI=true) naming the page test that needs it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing(f"the {page} page test needs Chromium (`make browser` installs it)")
    return path


@asynccontextmanager
async def running_producer(amqp_url: str, log_path: Path, **env: str) -> AsyncIterator[str]:
    """`python -m producer` on a free port, ready (broker connected); yields its base URL."""
    port = free_port()
    with service_process("producer", amqp_url, log_path, HOPLINE_PORT=str(port), **env):
        base = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(base + "/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(up, timeout_s=20, interval_s=0.2, message="producer not ready")
        yield base


@asynccontextmanager
async def chromium(executable_path: str) -> AsyncIterator[Browser]:
    """Headless Chromium that fetches nothing on its own (updates, sync, first-run pages)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable_path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()
