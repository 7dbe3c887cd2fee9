"""How soon the status store knows: handler finish → `succeeded` readable, at a steady rate.

Consumer, recorder (with a client polling the store as GET would) and publisher each run in
a process of their own, as deployed; the store is a SQLite file, the default.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.context import Context, Row
from bench.messages import key
from bench.stats import percentile

__all__ = ["status"]

_BOUND_MS = 1000.0  # the bound for p99 at 1 000 msg/s


async def status(ctx: Context) -> None:
    cfg = ctx.config
    rate = cfg.status_rate
    count = int(rate * cfg.status_seconds)
    with ctx.vhost("status") as url, tempfile.TemporaryDirectory() as folder:
        await ctx.declare(url)
        store_url = f"sqlite:///{Path(folder) / 'status.sqlite3'}"
        recorder = await ctx.party(
            "status_recorder",
            "recorder + status polling (SQLite)",
            count,
            amqp_url=url,
            store_url=store_url,
            count=count,
            poll=True,
            timeout_s=cfg.status_seconds + 60,
            loop="uvloop",
        )
        consumer = await ctx.party(
            "hopline_consumer",
            "consumer noting each handler's finish",
            count,
            amqp_url=url,
            mode="finish",
            count=count,
            concurrency=cfg.concurrency,
            prefetch=cfg.prefetch,
            loop="uvloop",
        )
        await recorder.ready()
        await consumer.ready()
        published = await ctx.run_party(
            "raw_publish",
            f"paced publish at {rate:,.0f}/s",
            count,
            amqp_url=url,
            exchange=ctx.settings(url).names.ingress,
            routing_key=key(),
            count=count,
            rate=rate,
            loop="uvloop",
        )
        finished = (await consumer.result())["finished_at"]
        seen = (await recorder.result())["seen_at"]
    latencies = [s - f for s, f in zip(seen, finished, strict=True) if s and f]
    detail = {
        "published_rate": published["rate"],
        "count": count,
        "seen_succeeded": sum(1 for s in seen if s),
        "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else None,
    }
    p99_ms = percentile(latencies, 0.99) * 1000 if latencies else float("nan")
    ctx.add(
        Row(
            ctx.queue_type,
            f"handler finish → status reads succeeded, p50 at {published['rate']:,.0f} msg/s",
            percentile(latencies, 0.5) * 1000 if latencies else float("nan"),
            "ms",
            detail=detail,
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "  same, p99 (consumer, recorder, publisher: a process each)",
            p99_ms,
            "ms",
            _BOUND_MS,
            "1 s",
            1.0,
            lower_is_better=True,
        )
    )
