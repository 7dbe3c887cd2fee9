"""Robust broker connections with errors a person can act on.

`connect()` opens the one kind of connection every hopline process uses: robust (it
reconnects by itself), over TLS when the URL is `amqps://` (CA file, optional client
certificate, host name always verified), and failing with one line that says what to fix:

    BrokerUnavailableError (common.errors)
    └── AccessRefusedError   RabbitMQ refused a login, a vhost, or an operation on a
                             resource (ACCESS_REFUSED / NOT_ALLOWED)

`access_refused_error()` turns a channel-level ACCESS_REFUSED (a role stepping outside its
permissions) into the same error, naming the user, the resource and the fix.
Passwords never appear: URLs are redacted in every message.
"""

from __future__ import annotations

import re
import ssl
import time
from typing import Any, Literal, overload

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aiormq.exceptions import (
    AMQPConnectionError,
    ChannelAccessRefused,
    InvalidFrameError,
    ProbableAuthenticationError,
)
from yarl import URL

from common.amqp_url import parse_amqp_url, split_urls
from common.errors import BrokerUnavailableError, ConfigurationError
from common.failover import FailoverConnection
from common.frames import tolerate_out_of_range_timestamps
from common.logging import get_logger
from common.redact import redact_url
from common.settings import HoplineSettings
from common.topology import BrokerVersion

__all__ = ["AccessRefusedError", "access_refused_error", "broker_version", "connect", "tls_context"]

_log = get_logger("hopline.connection")

_REFUSED_RESOURCE = re.compile(
    r"access to (?P<kind>exchange|queue) '(?P<name>[^']*)' in vhost '(?P<vhost>[^']*)' "
    r"refused for user '(?P<user>[^']*)'"
)


class AccessRefusedError(BrokerUnavailableError):
    """RabbitMQ refused these credentials, this vhost, or an operation on a resource."""


@overload
async def connect(
    settings: HoplineSettings, *, name: str, timeout_s: float = ..., robust: Literal[True] = ...
) -> AbstractRobustConnection: ...


@overload
async def connect(
    settings: HoplineSettings, *, name: str, timeout_s: float = ..., robust: Literal[False]
) -> AbstractConnection: ...


async def connect(
    settings: HoplineSettings, *, name: str, timeout_s: float = 10.0, robust: bool = True
) -> AbstractConnection:
    """Open a connection; `name` shows in the management UI.

    Services use robust connections (they reconnect by themselves). Operator tools ask for
    `robust=False`: a command that moves messages must fail, not resume on a new channel
    whose delivery tags mean something else (and aio-pika's robust channels do not hand
    back a cancelled consumer's messages on `basic.nack`).
    """
    tolerate_out_of_range_timestamps()  # a foreign timestamp must not kill the connection
    url = settings.amqp_url.get_secret_value()
    parsed = parse_amqp_url(url)
    context = tls_context(settings)
    try:
        return await _open_first(split_urls(url), name, timeout_s, context, robust=robust)
    except ProbableAuthenticationError as exc:
        raise AccessRefusedError(
            f"cannot connect to RabbitMQ at {redact_url(url)}: the broker refused the login of "
            f"user {parsed.user!r} (wrong password or no such user); check the credentials in "
            "HOPLINE_AMQP_URL"
        ) from exc
    except InvalidFrameError as exc:  # Connection.Close instead of OpenOk: vhost refused
        raise AccessRefusedError(
            f"cannot connect to RabbitMQ at {redact_url(url)}: user {parsed.user!r} may not open "
            f"vhost {parsed.vhost!r} (no permissions there, or no such vhost); check the vhost "
            "in HOPLINE_AMQP_URL"
        ) from exc
    except (AMQPConnectionError, OSError, TimeoutError) as exc:
        rejected = _certificate_rejection(exc)
        if rejected is not None:
            raise BrokerUnavailableError(
                f"cannot connect to RabbitMQ at {redact_url(url)}: the broker's TLS certificate "
                f"was rejected ({rejected}); check that HOPLINE_TLS_CA_FILE holds the CA that "
                "signed it and that the URL's host name is one the certificate names"
            ) from exc
        reason = redact_url(str(exc)) or type(exc).__name__
        if context is not None and settings.tls_cert_file is None:
            # A node with `fail_if_no_peer_cert = true` just resets the handshake.
            reason += (
                "; if the broker requires client certificates, set HOPLINE_TLS_CERT_FILE "
                "and HOPLINE_TLS_KEY_FILE"
            )
        raise BrokerUnavailableError(
            f"cannot connect to RabbitMQ at {redact_url(url)}: {reason}"
        ) from exc


async def _open_first(
    urls: list[str], name: str, timeout_s: float, context: ssl.SSLContext | None, *, robust: bool
) -> AbstractConnection:
    """A connection to the first of `urls` that answers; a robust one keeps the others to fail
    over to (common.failover). The last URL's error is raised when none answers."""
    properties: dict[str, Any] = {"connection_name": name}
    for index, url in enumerate(urls):
        try:
            if not robust:
                return await aio_pika.connect(
                    url, timeout=timeout_s, client_properties=properties, ssl_context=context
                )
            order = urls[index:] + urls[:index]
            connection = FailoverConnection(
                URL(order[0]),
                alternates=[URL(other) for other in order[1:]],
                client_properties=properties,
                ssl_context=context,
            )
            try:
                await connection.connect(timeout=timeout_s)
                _report_state_changes(connection, name)
            except BaseException:
                # Closed here, not by aio-pika's __del__ at some later garbage collection,
                # which schedules a close() nobody awaits.
                await connection.close()
                raise
            return connection
        except Exception:
            if index == len(urls) - 1:
                raise
    raise ConfigurationError("HOPLINE_AMQP_URL is empty: give at least one amqp:// URL")


def _report_state_changes(connection: FailoverConnection, name: str) -> None:
    """One line when the connection is lost and one when it is back, instead of aio-pika's
    line (with a traceback) for every reconnect attempt in between (common.logging quiets
    those)."""
    lost_at: float | None = None

    def lost(_sender: object, exc: BaseException | None = None) -> None:
        nonlocal lost_at
        if connection.close_called or lost_at is not None:
            return  # closed on purpose, or already reported
        lost_at = time.monotonic()
        _log.warning(
            "broker.connection_lost",
            connection=name,
            reason=redact_url(f"{type(exc).__name__}: {exc}") if exc else "closed",
            action=f"reconnecting every {connection.reconnect_interval:g} s",
        )

    def back(_sender: object) -> None:
        nonlocal lost_at
        if lost_at is not None:
            _log.warning(
                "broker.connection_restored",
                connection=name,
                down_s=round(time.monotonic() - lost_at, 1),
            )
        lost_at = None

    connection.close_callbacks.add(lost)
    connection.reconnect_callbacks.add(back)


def tls_context(settings: HoplineSettings) -> ssl.SSLContext | None:
    """The client TLS context for an `amqps://` URL (None for `amqp://`).

    Certificates are verified against HOPLINE_TLS_CA_FILE (or the system's CAs) and the
    broker's host name must match its certificate: there is no switch to turn that off.
    """
    url = settings.amqp_url.get_secret_value()
    tls_files = {
        "HOPLINE_TLS_CA_FILE": settings.tls_ca_file,
        "HOPLINE_TLS_CERT_FILE": settings.tls_cert_file,
        "HOPLINE_TLS_KEY_FILE": settings.tls_key_file,
    }
    if not parse_amqp_url(url).tls:
        given = [variable for variable, path in tls_files.items() if path is not None]
        if given:
            raise ConfigurationError(
                f"{', '.join(given)} set but HOPLINE_AMQP_URL is not amqps://: "
                "use an amqps:// URL (usually port 5671) or unset them"
            )
        return None
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise ConfigurationError(
            "HOPLINE_TLS_CERT_FILE and HOPLINE_TLS_KEY_FILE go together: set both for a client "
            "certificate, or neither"
        )
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None,
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"cannot use the TLS files ({exc.reason or exc}): HOPLINE_TLS_CA_FILE must hold PEM "
            "CA certificates, HOPLINE_TLS_CERT_FILE / HOPLINE_TLS_KEY_FILE a PEM certificate "
            "and its unencrypted private key"
        ) from exc
    return context


def access_refused_error(exc: ChannelAccessRefused) -> AccessRefusedError:
    """A channel-level ACCESS_REFUSED as one line naming user, resource and the fix."""
    reply = str(exc.args[-1] if exc.args else exc)
    found = _REFUSED_RESOURCE.search(reply)
    if found is None:
        return AccessRefusedError(f"RabbitMQ refused the operation: {redact_url(reply)}")
    return AccessRefusedError(
        f"RabbitMQ refused user {found['user']!r} access to {found['kind']} {found['name']!r} "
        f"in vhost {found['vhost']!r} (ACCESS_REFUSED): that role's permissions do not cover "
        "it; run this process with the user of the role that does (see `hopline topology "
        "export --users`), or grant the permission"
    )


def _certificate_rejection(exc: BaseException) -> str | None:
    """Why the broker's certificate failed verification, if that is what `exc` is about
    (aiormq re-raises the ssl error as an AMQPConnectionError carrying its text)."""
    seen: BaseException | None = exc
    visited: set[int] = set()  # aiormq's chains can loop back (error -> cause -> error)
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message)
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return text.split("certificate verify failed:", 1)[-1].split("(_ssl.c", 1)[0].strip(" ,')")
    return None


def broker_version(connection: AbstractConnection) -> BrokerVersion:
    """The server's version from the connection handshake."""
    properties = connection.transport.connection.server_properties  # type: ignore[union-attr]
    return BrokerVersion.parse(properties.get("version"))  # type: ignore[arg-type]
