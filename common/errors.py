"""hopline's own errors: one shallow tree, each carrying what a person needs to fix it.

    HoplineError
    ├── ConfigurationError        a setting is missing or invalid
    ├── BrokerUnavailableError    no connection to RabbitMQ (down, refused, wrong credentials)
    ├── PublishNotConfirmedError  the broker did not confirm a publish in time, or refused it
    ├── TopologyMismatchError     a declaration conflicts with what the broker already holds
    ├── StatusUnavailableError    the status store (SQLite file, PostgreSQL) cannot be used
    └── UndecodableMessageError   a delivery that cannot become an envelope (kept in quarantine)

Handler outcomes (`RetryableError`, `PermanentError`) live in `consumer.errors`: they are the
handler author's vocabulary, not the pipeline's.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailableError",
    "ConfigurationError",
    "HoplineError",
    "PublishNotConfirmedError",
    "StatusUnavailableError",
    "TopologyMismatchError",
    "UndecodableMessageError",
]


class HoplineError(Exception):
    """Base of every error hopline raises on purpose."""


class ConfigurationError(HoplineError):
    """A setting is missing or invalid; the message names the setting."""


class BrokerUnavailableError(HoplineError):
    """RabbitMQ cannot be reached or refused the connection."""


class PublishNotConfirmedError(HoplineError):
    """The broker did not confirm a publish (nack, return, timeout or lost channel)."""


class TopologyMismatchError(HoplineError):
    """An exchange or queue exists with other arguments than the ones we declare."""


class UndecodableMessageError(HoplineError):
    """A delivery that cannot be turned into an envelope; `reason` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StatusUnavailableError(HoplineError):
    """The status store cannot be read or written right now (down, unwritable, locked)."""
