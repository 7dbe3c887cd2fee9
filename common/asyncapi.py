"""The AMQP contract as an AsyncAPI 3.0.0 document, built from the services' registries (pure).

What another team needs to publish to hopline: the server, the ingress exchange, the routing
keys per priority and type, each type's payload as JSON Schema (from its handler's pydantic
model, or any JSON for an untyped handler), the AMQP properties and headers a publisher may
set, and the `x-hopline-*` headers the pipeline adds on the way.

It reads registries by their shape (`RegistryLike`), not their class, so that `common` stays
free of the consumer: `hopline asyncapi --handlers ...` passes consumer registries, and the
producer serves the document that command wrote (`HOPLINE_ASYNCAPI_FILE`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common import headers as h
from common.amqp_url import parse_amqp_url, split_urls
from common.settings import HoplineSettings

__all__ = ["ASYNCAPI_VERSION", "HandlerLike", "RegistryLike", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
_AMQP_BINDING = "0.3.0"
_SCHEMAS = "#/components/schemas/"


class HandlerLike(Protocol):
    """What the document reads of a handler (consumer.registry.HandlerSpec has it)."""

    @property
    def type_pattern(self) -> str: ...
    @property
    def model(self) -> type[BaseModel] | None: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def timeout_s(self) -> float: ...


class RegistryLike(Protocol):
    """What the document reads of a service (consumer.registry.Registry has it)."""

    @property
    def service(self) -> str: ...
    @property
    def type_patterns(self) -> tuple[str, ...]: ...
    @property
    def specs(self) -> Sequence[HandlerLike]: ...


# Headers a publisher may set, and what hopline does with them.
_PUBLISHER_HEADERS: dict[str, dict[str, Any]] = {
    "traceparent": {
        "type": "string",
        "description": "W3C trace context (the producer sets it from the HTTP request); kept on "
        "retries, quarantine and replays, so one trace runs to the last handler run.",
    },
    "tracestate": {"type": "string", "description": "W3C trace state, kept with traceparent."},
}
# Headers the pipeline adds (common.headers); a publisher must not set them.
_PIPELINE_HEADERS: dict[str, tuple[str, str]] = {
    h.ATTEMPT: ("integer", "1-based attempt number, added on retries (absent means 1)."),
    h.ORIGIN_QUEUE: ("string", "the work queue a retried or replayed message goes back to."),
    h.ROUTING_KEY: ("string", "the routing key the message was first published with."),
    h.ERROR_TYPE: ("string", "on a retry or in quarantine: the last error's type."),
    h.ERROR_MESSAGE: ("string", "the last error's message (at most 1 000 characters)."),
    h.ERROR_TRACEBACK: ("string", "in quarantine: the last traceback (at most 8 000)."),
    h.REASON: ("string", "in quarantine: why, e.g. `gave up after 5 attempts: ...`."),
    h.FAILED_AT: ("string", "in quarantine: when it failed (RFC 3339, UTC)."),
    h.CONSUMER: ("string", "in quarantine: the consumer process that quarantined it."),
    h.REPLAY_COUNT: ("integer", "how often an operator replayed it."),
    h.REPLAYED_AT: ("string", "when an operator last replayed it."),
    h.EDITED_FROM: ("string", "an operator's edited copy: the id of the original."),
}
# AMQP properties: who sets them and what the pipeline reads of them.
_PROPERTIES = {
    "message_id": "a UUID; generated when absent. The same on every retry: handlers use it "
    "to recognise duplicates (delivery is at-least-once).",
    "correlation_id": "optional, passed to handlers as is.",
    "type": "the message type (dotted lowercase); when absent it is read from the routing key.",
    "content_type": "`application/json` (or `+json`), or absent: the body is then tried as "
    "JSON. Anything else is quarantined as undecodable.",
    "content_encoding": "absent or `utf-8`; a compressed body is quarantined as undecodable.",
    "timestamp": "when it was published (seconds).",
    "app_id": "who published it (`hopline-producer` for the HTTP producer).",
    "delivery_mode": "2 (persistent) for messages that must survive a broker restart.",
}


def asyncapi_document(
    settings: HoplineSettings, registries: Sequence[RegistryLike], *, version: str = "1.0.0"
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the ingress and of every service in `registries`."""
    names = settings.names
    priorities = list(settings.priority_order)
    handlers = [
        (registry.service, spec)
        for registry in registries
        for spec in registry.specs
        if spec.type_pattern in registry.type_patterns  # the fallback binds nothing
    ]
    payloads, schemas = _payload_schemas([spec.model for _, spec in handlers])
    schemas["hoplineHeaders"] = _headers_schema()
    exchange = {
        "name": names.ingress,
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": _vhost(settings),
    }
    priority = {
        "description": "The message's priority, highest first: "
        + ", ".join(priorities)
        + ". Each service has one queue per priority.",
        "enum": priorities,
    }
    channels: dict[str, Any] = {
        "ingress": {
            "address": "{priority}.{type}",
            "title": f"{names.ingress}: every message",
            "description": "The one exchange every publisher uses (the HTTP producer or any AMQP "
            "client). A key that no service binds goes to "
            f"`{names.unroutable}`, where it is kept.",
            "parameters": {
                "priority": priority,
                "type": {
                    "description": "The message type: dotted lowercase words, e.g. "
                    "`orders.created`.",
                    "examples": ["orders.created"],
                },
            },
            "messages": {"any": {"$ref": "#/components/messages/any"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": exchange}},
        }
    }
    messages: dict[str, Any] = {"any": _message("any", "any JSON", {}, "#")}
    operations: dict[str, Any] = {}
    for (service, spec), payload in zip(handlers, payloads, strict=True):
        key = _key(f"{service}.{spec.type_pattern}")
        messages[key] = _message(spec.type_pattern, f"{service}: {spec.type_pattern}", payload)
        channels[key] = {
            "address": "{priority}." + spec.type_pattern,
            "title": f"{spec.type_pattern} to service {service}",
            "description": f"Bound to the queues {names.work_queue(service, '<priority>')}.",
            "parameters": {"priority": priority},
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": exchange}},
            "x-hopline-routing-keys": [f"{p}.{spec.type_pattern}" for p in priorities],
        }
        operations[f"{key}.receive"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
            "title": f"{service} handles {spec.type_pattern}",
            "description": f"At most {spec.max_attempts} attempts of up to "
            f"{spec.timeout_s:g} s each, then quarantine in {names.quarantine(service)}.",
            "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP_BINDING}},
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"hopline ({', '.join(r.service for r in registries) or 'ingress only'})",
            "version": version,
            "description": "Messages hopline services take from RabbitMQ: publish a JSON body "
            f"to the `{names.ingress}` exchange with routing key `<priority>.<type>`.",
        },
        "servers": _servers(settings),
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _message(
    message_type: str, title: str, payload: dict[str, Any], amqp_type: str | None = None
) -> dict[str, Any]:
    return {
        "name": message_type,
        "title": title,
        "contentType": "application/json",
        "payload": payload or {"description": "any JSON value"},
        "headers": {"$ref": _SCHEMAS + "hoplineHeaders"},
        "bindings": {
            "amqp": {"messageType": amqp_type or message_type, "bindingVersion": _AMQP_BINDING}
        },
        "x-hopline-properties": _PROPERTIES,
    }


def _payload_schemas(
    models: Sequence[type[BaseModel] | None],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each handler's payload schema (`{}`: any JSON) and the shared component schemas."""
    typed = list(dict.fromkeys(model for model in models if model is not None))
    refs, top = models_json_schema(
        [(model, "validation") for model in typed], ref_template=_SCHEMAS + "{model}"
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    return [dict(refs[(model, "validation")]) if model else {} for model in models], schemas


def _headers_schema() -> dict[str, Any]:
    added = {
        name: {"type": kind, "description": f"Added by the pipeline: {text}"}
        for name, (kind, text) in _PIPELINE_HEADERS.items()
    }
    return {
        "type": "object",
        "description": "AMQP headers. A publisher may set its own (values of at most 256 "
        "characters); handlers see them in `envelope.headers`. Headers starting with "
        f"`{h.RESERVED_PREFIX}` belong to the pipeline.",
        "properties": {**_PUBLISHER_HEADERS, **added},
        "additionalProperties": True,
    }


def _servers(settings: HoplineSettings) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for index, url in enumerate(split_urls(settings.amqp_url.get_secret_value()), start=1):
        parts = urlsplit(url)  # host and port only: never the credentials
        tls = parts.scheme.lower() == "amqps"
        port = parts.port or (5671 if tls else 5672)
        servers[f"rabbitmq{index}" if index > 1 else "rabbitmq"] = {
            "host": f"{parts.hostname or 'localhost'}:{port}",
            "protocol": "amqps" if tls else "amqp",
            "protocolVersion": "0.9.1",
        }
    return servers


def _vhost(settings: HoplineSettings) -> str:
    return parse_amqp_url(settings.amqp_url.get_secret_value()).vhost


def _key(text: str) -> str:
    """A component key (letters, digits, `.`, `-`, `_`) for a service and a type pattern."""
    return re.sub(r"[^\w.\-]", "_", text.replace("*", "_one_").replace("#", "_all_"))
