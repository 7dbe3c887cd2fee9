"""Scenarios against other things: the Python peers, a second consumer, a long producer run."""

from __future__ import annotations

import importlib.util
from typing import Any

from bench.context import Context, Row
from bench.messages import work_queue
from bench.parties.peers import QUEUE
from bench.producer_process import producer_process
from bench.runner import PartyFailed

__all__ = ["PEERS", "peers", "producer_rss", "scale_out"]

# name, module that must be importable, how it is set up (README, "Performance"), extra args.
# Dramatiq and Celery write no line per message by default; FastStream writes two, so it is
# measured both ways (its default, and quiet like HOPLINE_LOG_LEVEL=warning).
PEERS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("dramatiq", "dramatiq", "Dramatiq RabbitmqBroker, 8 threads", {}),
    ("celery", "celery", "Celery acks_late, solo pool", {}),
    ("faststream", "faststream", "FastStream RabbitBroker, ack after handler", {}),
    ("faststream_quiet", "faststream", "same FastStream, log level WARNING", {"quiet": True}),
)


async def peers(ctx: Context) -> None:
    """Each peer fills a queue of its own format with its own client, then drains it."""
    cfg = ctx.config
    n = cfg.peer_messages
    hopline = ctx.shared.get("drain_rate")
    rates: dict[str, float] = {}
    for name, module, label, extra in PEERS:
        if importlib.util.find_spec(module) is None:
            ctx.add(_missing(ctx, hopline, label, "not installed: pip install -e '.[bench]'"))
            continue
        try:
            with ctx.vhost(f"peer-{name}") as url:
                common = {"amqp_url": url, "count": n, "prefetch": cfg.prefetch, **extra}
                fill = await ctx.run_party(
                    f"{name}_fill", f"{name}: publish {n:,} with its own client", n, **common
                )
                result = await ctx.run_party(
                    f"{name}_drain",
                    f"{name}: drain {n:,}, no-op handler",
                    n,
                    timeout_s=cfg.scenario_timeout_s,
                    **common,
                )
                left = await ctx.depth(url, QUEUE)
        except (PartyFailed, OSError) as error:
            reason = str(error).splitlines()[0][:120]
            ctx.add(_missing(ctx, hopline, label, f"could not run: {reason}"))
            continue
        rates[name] = result["rate"]
        ctx.add(
            Row(
                ctx.queue_type,
                f"  vs {label}, drain {n:,}",
                hopline or float("nan"),
                "msg/s",
                result["rate"],
                name,
                detail={**result, "fill_rate": fill["rate"], "left_in_queue": left},
            )
        )
    if rates:
        fastest = max(rates, key=rates.__getitem__)
        ctx.add(
            Row(
                ctx.queue_type,
                f"consumer drain vs the fastest peer ({fastest})",
                hopline or float("nan"),
                "msg/s",
                rates[fastest],
                f"{fastest} drain",
                3.0,
                detail={"peers": rates},
            )
        )
        quiet = ctx.shared.get("drain_rate_warning")
        ctx.add(
            Row(
                ctx.queue_type,
                "  same, HOPLINE_LOG_LEVEL=warning (no line per ack)",
                quiet or float("nan"),
                "msg/s",
                rates[fastest],
                f"{fastest} drain",
                3.0,
            )
        )
        ceiling = ctx.shared.get("aiormq_ceiling")
        if ceiling:
            ctx.add(
                Row(
                    ctx.queue_type,
                    "  bare aiormq (no handler, multiple acks) vs the fastest peer: the most "
                    "any aio-pika consumer could reach",
                    ceiling,
                    "msg/s",
                    rates[fastest],
                    f"{fastest} drain",
                )
            )


def _missing(ctx: Context, hopline: float | None, label: str, reason: str) -> Row:
    return Row(ctx.queue_type, f"  vs {label}", hopline or float("nan"), "msg/s", None, reason)


async def scale_out(ctx: Context) -> None:
    """The same backlog drained by one, then by two hopline consumer processes."""
    cfg = ctx.config
    n = cfg.scaleout_messages
    rates: dict[int, float] = {}
    details: dict[str, Any] = {}
    with ctx.vhost("scale-out") as url:
        await ctx.declare(url)
        queue = work_queue(ctx.settings(url))
        for processes in (1, 2):
            await ctx.fill(url, n)
            parties = [
                await ctx.party(
                    "hopline_consumer",
                    f"scale-out: consumer {index + 1} of {processes}",
                    n // processes,
                    amqp_url=url,
                    mode="share",
                    count=n,
                    idle_s=1.0,
                    concurrency=cfg.concurrency,
                    prefetch=cfg.prefetch,
                    loop="uvloop",
                )
                for index in range(processes)
            ]
            results = [await party.result() for party in parties]
            handled = sum(r["count"] for r in results)
            started = min(r["first_at"] for r in results if r["first_at"] is not None)
            ended = max(r["last_at"] for r in results)
            rates[processes] = handled / (ended - started)
            details[f"{processes} process(es)"] = {
                "handled": handled,
                "per_process": [r["count"] for r in results],
                "left_in_queue": await ctx.depth(url, queue),
            }
    ctx.add(
        Row(
            ctx.queue_type,
            f"scale-out: 2 consumer processes vs 1, {n:,} queued",
            rates[2],
            "msg/s",
            rates[1],
            "1 consumer process",
            detail=details,
        )
    )


async def producer_rss(ctx: Context) -> None:
    """`--long` only: producer RSS sampled while it answers `long_requests` single POSTs."""
    cfg = ctx.config
    total = cfg.long_requests
    step = max(1, total // 10)
    samples: list[tuple[int, float]] = []
    with ctx.vhost("producer-rss") as url:
        await ctx.declare(url)
        # Nobody consumes: cap the work queue so the broker drops the oldest (after confirm).
        ctx.broker.policy(url, "cap", {"max-length": 10_000, "overflow": "drop-head"})
        log = ctx.log_dir / f"producer-rss-{ctx.queue_type}.log"
        async with producer_process(url, ctx.queue_type, log) as producer:
            samples.append((0, producer.rss_kib() / 1024))
            sent = 0
            statuses: dict[str, int] = {}
            while sent < total:
                chunk = min(step, total - sent)
                result = await ctx.run_party(
                    "http_load",
                    f"producer RSS: requests {sent:,} to {sent + chunk:,} of {total:,}",
                    chunk,
                    base_url=producer.base_url,
                    mode="single",
                    concurrency=cfg.http_concurrency,
                    duration_s=cfg.scenario_timeout_s - 5,
                    requests=chunk,
                    keep_latencies=False,
                )
                sent += result["requests"]
                for code, count in result["statuses"].items():
                    statuses[code] = statuses.get(code, 0) + count
                samples.append((sent, producer.rss_kib() / 1024))
    first_full = samples[1][1] if len(samples) > 1 else samples[0][1]
    ctx.add(
        Row(
            ctx.queue_type,
            f"producer RSS after {sent:,} requests (vs after {samples[1][0]:,})",
            samples[-1][1],
            "MiB",
            first_full,
            f"RSS after {samples[1][0]:,}",
            detail={"samples_requests_mib": samples, "statuses": statuses},
        )
    )
