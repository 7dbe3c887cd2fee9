"""The PRECONDITION_FAILED text of the broker becomes an error a person can act on."""

from __future__ import annotations

from aiormq.exceptions import ChannelPreconditionFailed

from common.declare import _mismatch
from common.settings import HoplineSettings
from common.topology import BrokerVersion, service_topology

TOPOLOGY = service_topology(HoplineSettings(), "orders", ["#"], BrokerVersion(3, 10))


def test_a_queue_type_conflict_names_queue_both_values_and_the_setting() -> None:
    reply = (
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'hopline.orders.high' "
        "in vhost '/': received the value 'quorum' of type 'longstr' but current is "
        "the value 'classic' of type 'longstr'"
    )
    text = str(_mismatch(ChannelPreconditionFailed(reply), TOPOLOGY))
    assert "queue 'hopline.orders.high'" in text
    assert "x-queue-type = the value 'classic'" in text
    assert "hopline declares x-queue-type = 'quorum'" in text
    assert "HOPLINE_QUEUE_TYPE" in text


def test_an_argument_the_existing_queue_lacks_says_so() -> None:
    reply = (
        "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue "
        "'hopline.orders.low' in vhost '/': received the value 'hopline.dlx' of type "
        "'longstr' but current is none"
    )
    text = str(_mismatch(ChannelPreconditionFailed(reply), TOPOLOGY))
    assert "x-dead-letter-exchange = none (so it was not declared by this hopline" in text
    assert "'hopline.dlx'" in text


def test_an_unparsed_reply_is_passed_on_verbatim() -> None:
    text = str(_mismatch(ChannelPreconditionFailed("PRECONDITION_FAILED - odd"), TOPOLOGY))
    assert "PRECONDITION_FAILED - odd" in text
