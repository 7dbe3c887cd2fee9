"""Static HTML pages the producer serves (the admin console, the AsyncAPI viewer): read from
the package, sent with a Content-Security-Policy that runs only their own inline script and
style. No CDN, no build step: they work offline."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from pathlib import Path

from fastapi.responses import HTMLResponse

__all__ = ["page_headers", "static_page"]


def page_headers(page: str) -> dict[str, str]:
    """Only the page's own inline script and style may run (by hash), it talks only to its
    own origin, and no other site may frame it (clickjacking a "Discard group" button)."""
    hashes = {
        kind: " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
            for body in re.findall(rf"<{kind}>(.*?)</{kind}>", page, flags=re.DOTALL)
        )
        for kind in ("script", "style")
    }
    policy = (
        f"default-src 'none'; script-src {hashes['script']}; style-src {hashes['style']}; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


async def static_page(path: Path) -> HTMLResponse:
    page = await asyncio.to_thread(path.read_text)
    return HTMLResponse(page, headers=page_headers(page))
