"""Scenarios over AMQP only: the references, consumer drain, priority, failure path."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.context import Context, Row
from bench.messages import SERVICE, work_queue
from bench.runner import Party
from bench.stats import percentile

__all__ = ["drain", "failure_path", "limits", "priority"]

_EVENT_PAIRS = 3


async def drain(ctx: Context) -> None:
    """Raw publish and raw consume+ack, then hopline's worker draining the same backlog."""
    cfg = ctx.config
    n = cfg.messages
    common = {"prefetch": cfg.prefetch}
    publish_rates: list[float] = []
    with ctx.vhost("drain") as url:
        await ctx.declare(url)
        queue = work_queue(ctx.settings(url))
        references: dict[str, float] = {}
        # The second opinions (raw on uvloop, hopline at log level warning) drain half as
        # many messages, to keep `make bench` under 10 minutes; rates compare all the same.
        for name, party, loop, size in (
            ("asyncio", "raw_consume", "asyncio", n),
            ("uvloop", "raw_consume", "uvloop", n // 2),
            ("aiormq", "aiormq_consume", "uvloop", n // 2),
        ):
            publish_rates.append((await ctx.fill(url, size))["rate"])
            result = await ctx.run_party(
                party,
                f"{party.replace('_', ' ')} ({loop})",
                size,
                amqp_url=url,
                queue=queue,
                count=size,
                loop=loop,
                **common,
            )
            references[name] = result["rate"]
        runs: dict[str, dict[str, Any]] = {}
        variants: tuple[tuple[str, int, str, dict[str, Any]], ...] = (
            ("info", n, "log level info", {"log_level": "info"}),
            ("warning", n // 2, "log level warning", {"log_level": "warning"}),
            # Tracing on (a tracer provider recording every span, exporting nowhere) against
            # the same run without it: what `hopline[otel]` costs a consumer.
            (
                "traced",
                n // 2,
                "log level warning, tracing on",
                {"log_level": "warning", "tracing": True},
            ),
        )
        # Lifecycle events off (HOPLINE_EVENTS_ENABLED=false) against on and written to the
        # status store by a recorder process (SQLite), as deployed: what "where is my
        # message" costs the drain. Pairs, alternating, because this machine's speed drifts
        # by half between minutes: the same drain with events off ran at 3 228 msg/s in one
        # run and at 8 562 in the next.
        # The window as deployed (HOPLINE_PREFETCH unset): with events on it has room for
        # deliveries waiting for their events' confirms (consumer.settings).
        as_deployed: dict[str, Any] = {"log_level": "warning", "prefetch": None}
        variants += tuple(
            variant
            for pair in range(_EVENT_PAIRS)
            for variant in (
                (f"off-{pair}", n // 4, "events off", {**as_deployed, "events": False}),
                (f"recorded-{pair}", n // 4, "events recorded", as_deployed),
            )
        )
        for name, size, label, options in variants:
            publish_rates.append((await ctx.fill(url, size))["rate"])
            recorder = await _recorder(ctx, url, size) if name.startswith("recorded") else None
            runs[name] = await ctx.run_party(
                "hopline_consumer",
                f"hopline consumer drain ({label})",
                size,
                amqp_url=url,
                mode="drain",
                count=size,
                concurrency=cfg.concurrency,
                loop="uvloop",
                **{**common, **options},
            )
            if recorder is not None:
                runs[name]["recorded"] = (await recorder.result())["recorded"]
        result = runs["info"]
        left = await ctx.depth(url, queue)
    ctx.shared["publish_rate"] = max(publish_rates)
    ctx.shared["drain_rate"] = result["rate"]
    ctx.shared["drain_rate_warning"] = runs["warning"]["rate"]
    ctx.add(
        Row(
            ctx.queue_type,
            "raw publish, confirms pipelined (reference)",
            max(publish_rates),
            "msg/s",
            detail={"samples": publish_rates, "window": cfg.publish_window},
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            f"consumer drain {n:,} x 1 KiB, no-op handler",
            result["rate"],
            "msg/s",
            references["asyncio"],
            "raw aio-pika consume+ack",
            1.0,
            detail={"left_in_queue": left, "raw_uvloop_rate": references["uvloop"]},
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "  same, HOPLINE_LOG_LEVEL=warning (no line per ack)",
            runs["warning"]["rate"],
            "msg/s",
            references["asyncio"],
            "raw aio-pika consume+ack",
            1.0,
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "  same at warning, with OpenTelemetry tracing on (a span per handler run)",
            runs["traced"]["rate"],
            "msg/s",
            runs["warning"]["rate"],
            "same without tracing",
        )
    )
    pairs = [(runs[f"off-{p}"]["rate"], runs[f"recorded-{p}"]["rate"]) for p in range(_EVENT_PAIRS)]
    ctx.add(
        Row(
            ctx.queue_type,
            f"  same at warning, lifecycle events on and recorded (SQLite) vs off, "
            f"median of {_EVENT_PAIRS} alternating pairs",
            statistics.median(on for _, on in pairs),
            "msg/s",
            statistics.median(off for off, _ in pairs),
            "same with HOPLINE_EVENTS_ENABLED=false",
            0.8,
            detail={
                "pairs_off_on": pairs,
                "pair_ratios": [on / off for off, on in pairs],
                "recorded_events": [runs[f"recorded-{p}"]["recorded"] for p in range(_EVENT_PAIRS)],
            },
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "  same, vs raw aio-pika on uvloop",
            result["rate"],
            "msg/s",
            references["uvloop"],
            "raw aio-pika consume+ack (uvloop)",
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "  same, vs bare aiormq, no handler, multiple acks (uvloop): the client's ceiling",
            result["rate"],
            "msg/s",
            references["aiormq"],
            "bare aiormq consume, multiple acks (uvloop)",
        )
    )
    ctx.shared["aiormq_ceiling"] = references["aiormq"]
    ctx.add(
        Row(
            ctx.queue_type,
            f"consumer RSS peak, {n:,} backlog (ready → peak)",
            result["rss_peak_kib"] / 1024,
            "MiB",
            result["rss_ready_kib"] / 1024,
            "RSS when ready",
        )
    )


async def priority(ctx: Context) -> None:
    """High-priority probes on an idle consumer, then under a low-priority backlog.

    A consumer handles deliveries in the order they arrive, so under a backlog a probe waits
    behind the low-priority deliveries already in flight: at most the low queue's prefetch.
    The target row runs hopline's defaults (16 handlers, prefetch 16); a second row shows the
    benchmark's prefetch of 64 on the same backlog, to show what a wider window costs."""
    cfg = ctx.config
    defaults = ctx.settings("amqp://unused/")  # hopline's defaults, read by its own rules
    default_sizes = {"concurrency": defaults.concurrency, "prefetch": defaults.effective_prefetch}
    wide_sizes = {"concurrency": cfg.concurrency, "prefetch": cfg.prefetch}
    runs: dict[str, dict[str, float]] = {}

    async def probes(url: str, label: str, sizes: dict[str, int]) -> None:
        result = await ctx.run_party(
            "hopline_consumer",
            f"high-priority probes, {label}",
            cfg.probes,
            amqp_url=url,
            mode="priority",
            count=cfg.probes,
            probe_rate=cfg.probe_rate,
            exchange=ctx.settings(url).names.ingress,
            loop="uvloop",
            **sizes,
        )
        latencies = result["latencies_s"]
        runs[label] = {
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "backlog_left": result.get("backlog_left", 0),
            "rss_peak_mib": result["rss_peak_kib"] / 1024,
            **sizes,
        }

    with ctx.vhost("priority-idle") as url:
        await ctx.declare(url)
        await probes(url, "idle", default_sizes)
    with ctx.vhost("priority-backlog") as url:
        await ctx.declare(url)
        await ctx.fill(url, cfg.backlog, priority="low")
        await probes(url, "backlog", default_sizes)
        # The same backlog, less what the first run drained (`backlog_left` shows it).
        await probes(url, "backlog, wide window", wide_sizes)
    ctx.add(
        Row(
            ctx.queue_type,
            f"high-priority p99 under {cfg.backlog:,} low backlog (defaults: prefetch "
            f"{default_sizes['prefetch']})",
            runs["backlog"]["p99_ms"],
            "ms",
            runs["idle"]["p99_ms"],
            "same trickle, idle consumer",
            2.0,
            lower_is_better=True,
            detail=runs,
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            f"  same, {wide_sizes['concurrency']} handlers, prefetch {wide_sizes['prefetch']}",
            runs["backlog, wide window"]["p99_ms"],
            "ms",
            runs["idle"]["p99_ms"],
            "same trickle, idle consumer",
            lower_is_better=True,
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "consumer RSS peak, backlog vs idle",
            runs["backlog"]["rss_peak_mib"],
            "MiB",
            runs["idle"]["rss_peak_mib"],
            "idle consumer",
        )
    )


async def _recorder(ctx: Context, url: str, events: int) -> Party:
    """A status recorder process on a fresh SQLite store, started on an empty status queue
    (the earlier drains' events are purged: this one records only its own)."""
    await ctx.purge(url, ctx.settings(url).names.status)
    folder = Path(tempfile.mkdtemp(prefix="hopline-bench-store-", dir=ctx.log_dir))
    recorder = await ctx.party(
        "status_recorder",
        "status recorder (SQLite)",
        events,
        amqp_url=url,
        store_url=f"sqlite:///{folder / 'status.sqlite3'}",
        count=events,
        loop="uvloop",
    )
    await recorder.ready()
    return recorder


async def failure_path(ctx: Context) -> None:
    """10 % fail once, 1 % always fail: retried via tiers, quarantined after 3 attempts."""
    cfg = ctx.config
    n = cfg.failure_messages
    with ctx.vhost("failure") as url:
        await ctx.declare(url)
        await ctx.fill(url, n)
        result = await ctx.run_party(
            "hopline_consumer",
            "failure path (10 % retried once, 1 % quarantined)",
            n,
            amqp_url=url,
            mode="failure",
            count=n,
            concurrency=cfg.concurrency,
            prefetch=cfg.prefetch,
            loop="uvloop",
        )
        quarantine = ctx.settings(url).names.quarantine(SERVICE)
        in_quarantine = await ctx.depth(url, quarantine)
    ctx.add(
        Row(
            ctx.queue_type,
            f"failure path, {n:,} messages to a final state",
            result["rate"],
            "msg/s",
            ctx.shared.get("drain_rate"),
            "hopline drain, all healthy",
            detail={
                "handler_calls": result["handler_calls"],
                "quarantined_by_handler_count": result["quarantined"],
                "in_quarantine_queue": in_quarantine,
            },
        )
    )


async def limits(ctx: Context) -> None:
    """An unlimited type's drain while a type limited to 2 at once is saturated in the same
    queue (consumer.limits: no head-of-line blocking of the shared prefetch window), next to
    the same limit as a semaphore inside the handler."""
    cfg = ctx.config
    n = cfg.limits_messages
    results: dict[str, dict[str, Any]] = {}
    # The semaphore holds handler slots while it waits: its rate is that of the limited type,
    # so it handles a few hundred and not n.
    for name, count in (("limits", n), ("semaphore", min(n, 200))):
        with ctx.vhost(f"limits-{name}") as url:
            await ctx.declare(url)
            results[name] = await ctx.run_party(
                "hopline_consumer",
                f"unlimited type next to a saturated one ({name}, {count:,} of {n:,})",
                count,
                amqp_url=url,
                exchange=ctx.settings(url).names.ingress,
                mode="limits",
                count=count,
                mixed=n,
                semaphore=name == "semaphore",
                concurrency=cfg.concurrency,
                prefetch=cfg.prefetch,
                loop="uvloop",
            )
    result = results["limits"]
    ctx.add(
        Row(
            ctx.queue_type,
            f"unlimited type while one limited to 2 at once is saturated, {n:,} + {n:,} mixed",
            result["rate"],
            "msg/s",
            ctx.shared.get("drain_rate"),
            "hopline drain, one type",
            detail={
                "limited_runs": result["limited_runs"],
                "deferrals": result["deferrals"],
                "elapsed_s": result["elapsed_s"],
            },
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "  same, the limit as an asyncio.Semaphore(2) in the handler",
            results["semaphore"]["rate"],
            "msg/s",
            result["rate"],
            "handler limit (concurrency=2)",
            detail={"limited_runs": results["semaphore"]["limited_runs"]},
        )
    )
