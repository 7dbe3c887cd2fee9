"""Authenticate ingestion requests before a byte of their body is read (pure ASGI).

FastAPI reads and parses a request's JSON body before it resolves dependencies, so a key
checked in a dependency comes after the parse: a stranger could make the producer read and
parse any body (and got 422 for deep JSON instead of 401). This middleware checks the
`Authorization` header of `POST /v1/messages...` first and answers 401 at once; the key it
found travels in the ASGI scope to the route, which checks types, priorities and the rate.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from producer.asgi_answers import send_refusal
from producer.auth import KeyRing, Unauthenticated

__all__ = ["AUTHENTICATED_KEY", "AuthenticateFirst"]

# Where the middleware leaves the caller's key for the route (absent: the API is open).
AUTHENTICATED_KEY = "hopline.api_key"
_INGESTION = "/v1/messages"


class AuthenticateFirst:
    def __init__(self, app: ASGIApp, *, keyring: KeyRing) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.keyring.open
            or scope["method"] != "POST"
            or not scope["path"].startswith(_INGESTION)
        ):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization")
        try:
            scope[AUTHENTICATED_KEY] = self.keyring.authenticate(
                authorization.decode("latin-1") if authorization is not None else None
            )
        except Unauthenticated as exc:
            await send_refusal(send, 401, str(exc), ((b"www-authenticate", b"Bearer"),))
            return
        await self.app(scope, receive, send)
