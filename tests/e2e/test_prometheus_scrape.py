"""A real Prometheus (Debian's package) scrapes a producer, a consumer and the broker's own
endpoint: every target is up, and every metric the dashboard and the alert rules use exists,
so no panel stays empty and no alert watches a name nobody exports."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from deploy.local.broker import LocalBroker, free_port
from tests.support.chaos import Pipeline
from tests.support.monitoring import metric_names, prometheus_binary
from tests.support.wait import wait_until


@contextmanager
def prometheus(targets: dict[str, tuple[str, str]], tmp_path: Path) -> Iterator[str]:
    """A Prometheus scraping `targets` (job -> (host:port, path)) every second; its URL."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": path.split("?")[0],
                "params": {"family": ["queue_coarse_metrics"]} if "?" in path else {},
                "static_configs": [{"targets": [target]}],
            }
            for job, (target, path) in targets.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_prometheus_finds_every_metric_the_dashboard_and_alerts_use(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    assert private_broker.prometheus_port, "private nodes serve rabbitmq_prometheus"
    metrics_port = free_port()
    with Pipeline(private_broker.amqp_url, tmp_path) as pipeline:
        pipeline.start_consumer(HOPLINE_METRICS_PORT=str(metrics_port))
        await pipeline.wait_ready(private_broker.amqp_url, consumers=1)
        # Given traffic: one message handled at once, one after a retry
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pipeline.port}") as client:
            for payload in ({"n": 1}, {"n": 2, "fail_first": True}):
                message = {"type": "chaos.work", "payload": payload}
                assert (await client.post("/v1/messages", json=message)).status_code == 202
        targets = {
            "producer": (f"127.0.0.1:{pipeline.port}", "/metrics"),
            "consumer": (f"127.0.0.1:{metrics_port}", "/metrics"),
            "rabbitmq": (f"127.0.0.1:{private_broker.prometheus_port}", "/metrics/detailed?"),
        }
        wanted = metric_names()
        with prometheus(targets, tmp_path) as url:
            async with httpx.AsyncClient(base_url=url) as client:

                async def present() -> set[str]:
                    try:
                        answer = await client.get("/api/v1/label/__name__/values")
                    except httpx.TransportError:
                        return set()
                    return set(answer.json()["data"]) if answer.status_code == 200 else set()

                async def all_there() -> bool:
                    return wanted <= await present()

                # When Prometheus has scraped for a while
                await wait_until(all_there, timeout_s=60, interval_s=1, message="names missing")
                up = (await client.get("/api/v1/query", params={"query": "up"})).json()
    # Then every target is up and every name the dashboard and the rules use exists
    states = {r["metric"]["job"]: r["value"][1] for r in up["data"]["result"]}
    assert states == {"producer": "1", "consumer": "1", "rabbitmq": "1"}
