"""Scenarios through the real producer process: single and batch ingestion, end-to-end."""

from __future__ import annotations

from bench.context import Context, Row
from bench.producer_process import producer_process
from bench.stats import percentile

__all__ = ["ingestion", "latency"]


async def ingestion(ctx: Context) -> None:
    """Concurrent single-message POSTs, then batches of 100, against one producer process."""
    cfg = ctx.config
    reference = ctx.shared.get("publish_rate")
    with ctx.vhost("ingest") as url:
        await ctx.declare(url)
        log = ctx.log_dir / f"producer-{ctx.queue_type}.log"
        async with producer_process(url, ctx.queue_type, log) as producer:
            single, keyed = [
                await ctx.run_party(
                    "http_load",
                    f"POST /v1/messages{with_key} x {cfg.http_concurrency} clients",
                    None,
                    base_url=producer.base_url,
                    mode="single",
                    keyed=bool(with_key),
                    concurrency=cfg.http_concurrency,
                    duration_s=cfg.http_duration_s,
                )
                for with_key in ("", " with Idempotency-Key")
            ]
            batch = await ctx.run_party(
                "http_load",
                f"POST /v1/messages/batch ({cfg.batch_size}/request)",
                cfg.batch_messages,
                base_url=producer.base_url,
                mode="batch",
                batch_size=cfg.batch_size,
                count=cfg.batch_messages,
                concurrency=8,
            )
            requests = single["requests"] + keyed["requests"] + batch["requests"]
            producer_rss_mib = producer.rss_kib() / 1024
    ctx.shared["single_rate"] = single["rate"]
    latencies = single.pop("latencies_s")
    ctx.add(
        Row(
            ctx.queue_type,
            f"ingest 1 msg/request, {cfg.http_concurrency} clients",
            single["rate"],
            "msg/s",
            reference,
            "raw publish",
            0.25,
            detail={
                **single,
                "p50_ms": percentile(latencies, 0.5) * 1000,
                "p99_ms": percentile(latencies, 0.99) * 1000,
            },
        )
    )
    keyed_latencies = keyed.pop("latencies_s")
    ctx.add(
        Row(
            ctx.queue_type,
            "  same, each with an Idempotency-Key (claimed in the status store)",
            keyed["rate"],
            "msg/s",
            single["rate"],
            "ingest 1 msg/request without keys",
            detail={
                **keyed,
                "p50_ms": percentile(keyed_latencies, 0.5) * 1000,
                "p99_ms": percentile(keyed_latencies, 0.99) * 1000,
            },
        )
    )
    batch.pop("latencies_s")
    ctx.add(
        Row(
            ctx.queue_type,
            f"ingest batches of {cfg.batch_size}",
            batch["rate"],
            "msg/s",
            reference,
            "raw publish",
            0.7,
            detail=batch,
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            f"producer RSS after {requests:,} requests",
            producer_rss_mib,
            "MiB",
        )
    )
    ctx.shared["single_p50_ms"] = percentile(latencies, 0.5) * 1000
    ctx.shared["single_p99_ms"] = percentile(latencies, 0.99) * 1000


async def latency(ctx: Context) -> None:
    """HTTP → handler start at half the single-message rate measured above."""
    cfg = ctx.config
    rate = max(10.0, ctx.shared.get("single_rate", 200.0) / 2)
    count = int(rate * cfg.latency_duration_s)
    with ctx.vhost("latency") as url:
        await ctx.declare(url)
        consumer = await ctx.party(
            "hopline_consumer",
            "consumer recording HTTP → handler latency",
            count,
            amqp_url=url,
            mode="latency",
            count=count,
            concurrency=cfg.concurrency,
            prefetch=cfg.prefetch,
            loop="uvloop",
        )
        await consumer.ready()
        log = ctx.log_dir / f"producer-latency-{ctx.queue_type}.log"
        async with producer_process(url, ctx.queue_type, log) as producer:
            client = await ctx.run_party(
                "http_load",
                f"paced POST /v1/messages at {rate:,.0f}/s",
                count,
                base_url=producer.base_url,
                mode="paced",
                rate=rate,
                count=count,
                concurrency=cfg.http_concurrency * 4,
            )
            result = await consumer.result()
    latencies = result["latencies_s"]
    http = client["latencies_s"]
    ctx.add(
        Row(
            ctx.queue_type,
            f"end-to-end HTTP → handler p50 at {rate:,.0f} msg/s",
            percentile(latencies, 0.5) * 1000,
            "ms",
            detail={
                "p99_ms": percentile(latencies, 0.99) * 1000,
                "http_p50_ms": percentile(http, 0.5) * 1000,
                "http_p99_ms": percentile(http, 0.99) * 1000,
                "statuses": client["statuses"],
                "count": result["count"],
            },
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "end-to-end HTTP → handler p99",
            percentile(latencies, 0.99) * 1000,
            "ms",
        )
    )
