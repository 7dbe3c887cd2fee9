"""What `create_app` keeps on `app.state`, read back with its type by the routes."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request

from producer.auth import KeyRing
from producer.idempotency import Idempotent
from producer.metrics import ProducerMetrics
from producer.publisher import Publisher
from producer.settings import ProducerSettings
from producer.status import ProducerStatus

__all__ = ["AppState", "app_state"]


@dataclass(frozen=True, slots=True)
class AppState:
    settings: ProducerSettings
    publisher: Publisher
    keyring: KeyRing
    metrics: ProducerMetrics
    status: ProducerStatus
    idempotent: Idempotent | None  # None without a status store

    def attach(self, app: FastAPI) -> None:
        app.state.hopline = self


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.hopline
    return state
