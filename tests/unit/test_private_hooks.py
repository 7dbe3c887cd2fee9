"""The private names of aio-pika and pamqp that hopline relies on still exist.

A new release of either may rename them without notice (pyproject.toml bounds the major
versions, not the minor ones). If one of these tests fails, the named module must be adapted
before upgrading: the message says which hook and what depends on it.
"""

from __future__ import annotations

import inspect

import pytest
from aio_pika import RobustConnection
from aiormq.abc import AbstractChannel
from pamqp import decode

from common.failover import FailoverConnection


def test_aio_pika_still_has_the_connect_attempt_that_failover_overrides() -> None:
    hook = getattr(RobustConnection, "_RobustConnection__connect_transport", None)
    assert inspect.iscoroutinefunction(hook), (
        "aio_pika.RobustConnection._RobustConnection__connect_transport is gone: "
        "common/failover.py overrides it to try the next cluster URL on each reconnect attempt"
    )
    assert "_RobustConnection__connect_transport" in vars(FailoverConnection)


@pytest.mark.parametrize(
    ("table", "key"), [(decode.METHODS, "timestamp"), (decode.TABLE_MAPPING, b"T")]
)
def test_pamqp_still_decodes_timestamps_through_its_tables(table: object, key: object) -> None:
    assert isinstance(table, dict) and key in table, (
        f"pamqp.decode no longer maps {key!r}: common/frames.py replaces that decoder so an "
        "out-of-range timestamp from a foreign publisher does not close the connection"
    )
    assert getattr(decode, "timestamp", None) is not None, "pamqp.decode.timestamp is gone"


@pytest.mark.parametrize(
    "name", ["basic_consume", "basic_get", "basic_ack", "basic_reject", "basic_cancel"]
)
def test_aiormq_channels_still_offer_what_the_consumer_calls(name: str) -> None:
    assert callable(getattr(AbstractChannel, name, None)), (
        f"aiormq.abc.AbstractChannel.{name} is gone: consumer/subscription.py, "
        "consumer/isolation.py and consumer/acks.py call it on the channel below aio-pika"
    )


def test_aiormq_channels_still_have_what_publish_batch_fills_in() -> None:
    from aiormq.abc import ChannelFrame
    from aiormq.channel import Channel

    source = inspect.getsource(Channel)
    for name in ("self.confirmations", "self.delivery_tag", "self.write_queue"):
        assert name in source, (
            f"aiormq's Channel no longer has {name}: common/batch_publish.py numbers its "
            "messages and puts its confirm slots there, as basic_publish does"
        )
    assert "max_content_size" in source and isinstance(vars(Channel).get("lock"), property)
    assert {"payload", "should_close"} <= set(ChannelFrame.__dataclass_fields__)
    confirm = inspect.getsource(Channel._confirm_delivery)
    for call in ("done()", "cancelled()", "set_result(", "set_exception("):
        assert call in confirm, (
            f"aiormq's Channel._confirm_delivery no longer calls {call}: "
            "common/batch_publish.py's _Slot answers exactly those"
        )
