"""A foreign publisher: another client library (pika), no hopline code, no envelope."""

from __future__ import annotations

from typing import Any

import pika

from common.names import Names

__all__ = ["publish_with_pika"]


def publish_with_pika(amqp_url: str, routing_key: str, body: bytes, **properties: Any) -> None:
    """Publish to the ingress exchange with confirms, as any other system could."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            Names().ingress, routing_key, body, pika.BasicProperties(**properties)
        )
    finally:
        connection.close()
