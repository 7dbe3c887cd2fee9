"""`python -m bench [--quick | --long] [--queue-types quorum,classic] [--scenarios drain,...]`.

Starts a private RabbitMQ node, runs each scenario for each queue type, prints the table
and writes `bench/results/bench-<time>.json`. See README, "Performance".
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.broker import private_broker
from bench.context import Config, Context
from bench.report import machine, print_table, write_json
from bench.scenarios_amqp import drain, failure_path, limits, priority
from bench.scenarios_delays import delays
from bench.scenarios_http import ingestion, latency
from bench.scenarios_peers import peers, producer_rss, scale_out
from bench.scenarios_status import status

SCENARIOS = {
    "drain": drain,
    "ingest": ingestion,
    "latency": latency,
    "priority": priority,
    "failure": failure_path,
    "limits": limits,
    "delays": delays,
    "status": status,
    "peers": peers,
    "scaleout": scale_out,
}
LONG_SCENARIOS = {"producer_rss": producer_rss}
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the harness")
    parser.add_argument(
        "--long",
        action="store_true",
        help="peers and scale-out drain 100 000; producer RSS after 1 000 000 requests "
        "(about 20 more minutes per queue type; not part of `make bench`)",
    )
    parser.add_argument("--queue-types", default="quorum,classic")
    parser.add_argument("--scenarios", default=None, help=f"default: {','.join(SCENARIOS)}")
    options = parser.parse_args()
    if options.quick and options.long:
        parser.error("--quick and --long exclude each other")
    config = Config.quick() if options.quick else Config.long() if options.long else Config()
    queue_types = [q for q in options.queue_types.split(",") if q]
    known = {**SCENARIOS, **LONG_SCENARIOS}
    names = options.scenarios or ",".join([*SCENARIOS, *(LONG_SCENARIOS if options.long else ())])
    scenarios = [known[name] for name in names.split(",") if name]
    console = Console()
    started = time.perf_counter()
    log_dir = Path(tempfile.mkdtemp(prefix="hopline-bench-logs-"))
    console.print(f"[bold]hopline bench[/] · logs in {log_dir}")
    with console.status("starting a private RabbitMQ node"), private_broker() as broker:
        pass_broker = broker
        info = machine(broker.version)
        rows = asyncio.run(_run(pass_broker, queue_types, scenarios, config, log_dir, console))
    elapsed = time.perf_counter() - started
    path = write_json(RESULTS, rows, info, config, elapsed)
    print_table(console, rows, info)
    console.print(f"{len(rows)} rows in {elapsed:.0f} s · {path.relative_to(Path.cwd())}")


async def _run(broker, queue_types, scenarios, config, log_dir, console):  # type: ignore[no-untyped-def]
    rows = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        for queue_type in queue_types:
            ctx = Context(broker, queue_type, config, progress, log_dir)
            for scenario in scenarios:
                await scenario(ctx)
            rows.extend(ctx.rows)
    return rows


if __name__ == "__main__":
    main()
