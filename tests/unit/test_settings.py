"""common.settings: HOPLINE_* variables, comma lists, and errors that name the variable."""

from __future__ import annotations

import pytest

from common.errors import ConfigurationError
from common.names import Names
from common.settings import HoplineSettings, load_settings
from consumer.settings import ConsumerSettings
from producer.settings import ProducerSettings


def configuration_error(cls: type[HoplineSettings] = ConsumerSettings) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(cls)
    return str(caught.value)


def test_defaults_follow_the_design() -> None:
    settings = load_settings(HoplineSettings)

    assert settings.amqp_url.get_secret_value() == "amqp://guest:guest@localhost:5672/"
    assert settings.prefix == "hopline"
    assert settings.priorities == ["high", "normal", "low"]
    assert settings.retry_delays_s == [1.0, 5.0, 30.0, 120.0, 600.0]
    assert settings.queue_type == "quorum"
    assert settings.names == Names("hopline")
    assert settings.priority_order == ("high", "normal", "low")


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("HOPLINE_PRIORITIES", "high,normal", "priorities", ["high", "normal"]),
        ("HOPLINE_PRIORITIES", " urgent , bulk ,", "priorities", ["urgent", "bulk"]),
        ("HOPLINE_PRIORITIES", "only", "priorities", ["only"]),
        ("HOPLINE_RETRY_DELAYS_S", "1,5,30", "retry_delays_s", [1.0, 5.0, 30.0]),
        ("HOPLINE_RETRY_DELAYS_S", "0.5, 2.5", "retry_delays_s", [0.5, 2.5]),
        ("HOPLINE_CONSUME_PRIORITIES", "high", "consume_priorities", ["high"]),
        ("HOPLINE_CONSUME_PRIORITIES", "low,high", "consume_priorities", ["low", "high"]),
        ("HOPLINE_PREFIX", "acme", "prefix", "acme"),
        ("HOPLINE_QUEUE_TYPE", "classic", "queue_type", "classic"),
        ("HOPLINE_CONCURRENCY", "4", "concurrency", 4),
    ],
)
def test_environment_variables_are_read(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)

    settings = load_settings(ConsumerSettings)

    assert getattr(settings, field) == expected


def test_served_priorities_keep_the_configured_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPLINE_CONSUME_PRIORITIES", "low,high")

    settings = load_settings(ConsumerSettings)

    assert settings.served_priorities == ("high", "low")


def test_all_priorities_are_served_by_default() -> None:
    assert load_settings(ConsumerSettings).served_priorities == ("high", "normal", "low")


def test_prefetch_defaults_to_concurrency_with_room_for_event_confirms() -> None:
    assert (
        load_settings(ConsumerSettings, concurrency=3, events_enabled=False).effective_prefetch == 3
    )
    # With events on, handled deliveries wait in the window for their events' confirms
    assert load_settings(ConsumerSettings, concurrency=3).effective_prefetch == 12
    assert load_settings(ConsumerSettings, concurrency=3, prefetch=9).effective_prefetch == 9


def test_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPLINE_PREFIX", "fromenv")

    assert load_settings(HoplineSettings, prefix="given").prefix == "given"


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("HOPLINE_PRIORITIES", "", "at least one priority"),
        ("HOPLINE_PRIORITIES", "high,high", "unique"),
        ("HOPLINE_PRIORITIES", "High", "one lowercase word"),
        ("HOPLINE_PRIORITIES", "very.high", "one lowercase word"),
        ("HOPLINE_RETRY_DELAYS_S", "", "at least one retry delay"),
        ("HOPLINE_RETRY_DELAYS_S", "-1,1", "from 0 to 268435455 seconds"),
        ("HOPLINE_RETRY_DELAYS_S", "1,300000000", "from 0 to 268435455 seconds"),
        ("HOPLINE_PREFIX", "Hop.Line", "pattern"),
        ("HOPLINE_QUEUE_TYPE", "stream", "quorum"),
        ("HOPLINE_DELIVERY_LIMIT", "0", "greater than or equal to 1"),
        ("HOPLINE_CONCURRENCY", "many", "valid integer"),
        ("HOPLINE_PUBLISH_TIMEOUT_S", "0", "greater than 0"),
    ],
)
def test_a_bad_value_is_reported_under_its_variable_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)

    message = configuration_error()

    lines = message.splitlines()
    assert lines[0] == "invalid configuration:"
    assert len(lines) == 2
    assert lines[1].strip().startswith(f"{variable}: ")
    assert fragment in lines[1]


def test_every_bad_setting_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given three settings wrong at once
    monkeypatch.setenv("HOPLINE_PRIORITIES", "high,high")
    monkeypatch.setenv("HOPLINE_QUEUE_TYPE", "stream")
    monkeypatch.setenv("HOPLINE_PORT", "70000")

    # When the producer reads its settings
    message = configuration_error(ProducerSettings)

    # Then each is named on a line of its own, with no traceback noise
    lines = message.splitlines()[1:]
    assert sorted(line.split(":")[0].strip() for line in lines) == [
        "HOPLINE_PORT",
        "HOPLINE_PRIORITIES",
        "HOPLINE_QUEUE_TYPE",
    ]
    assert "Traceback" not in message
    assert "pydantic" not in message


def test_the_configuration_error_hides_the_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOPLINE_QUEUE_TYPE", "stream")

    with pytest.raises(ConfigurationError) as caught:
        load_settings(HoplineSettings)

    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_bad_list_items_are_reported_once_under_the_real_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOPLINE_RETRY_DELAYS_S", "1,soon,later")

    lines = configuration_error().splitlines()[1:]

    assert len(lines) == 1
    assert lines[0].strip().startswith("HOPLINE_RETRY_DELAYS_S: ")


def test_unknown_consume_priorities_are_reported_under_their_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOPLINE_CONSUME_PRIORITIES", "urgent")

    lines = configuration_error().splitlines()[1:]

    assert [line.strip().split(":")[0] for line in lines] == ["HOPLINE_CONSUME_PRIORITIES"]


def test_unknown_consume_priorities_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPLINE_CONSUME_PRIORITIES", "high,urgent")

    message = configuration_error()

    assert "['urgent'] are not in priorities" in message


def test_the_amqp_url_is_a_secret_kept_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPLINE_AMQP_URL", "amqps://svc:s3cr3t-pw@rabbit.internal:5671/prod")

    settings = load_settings(ProducerSettings)

    assert settings.amqp_url.get_secret_value() == "amqps://svc:s3cr3t-pw@rabbit.internal:5671/prod"
    for shown in (
        repr(settings),
        str(settings),
        repr(settings.amqp_url),
        str(settings.model_dump()),
    ):
        assert "s3cr3t-pw" not in shown


def test_settings_are_frozen() -> None:
    settings = load_settings(HoplineSettings)

    with pytest.raises(ValueError, match="frozen"):
        settings.prefix = "other"  # type: ignore[misc]


def test_an_admin_token_anyone_could_guess_is_refused() -> None:
    from pydantic import SecretStr

    with pytest.raises(ConfigurationError, match=r"HOPLINE_ADMIN_TOKEN: .*at least 16 characters"):
        load_settings(ProducerSettings, admin_token=SecretStr("x"))
    assert load_settings(ProducerSettings, admin_token=SecretStr("a" * 16)).admin_token
