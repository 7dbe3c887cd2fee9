"""How long `list`/`groups` take on a large quarantine, next to a raw aio-pika look.

    .venv/bin/python -m bench.quarantine_list [--messages 10000]

The raw reference consumes the whole queue with the same prefetch and hands everything back
with one bulk nack: the least any non-destructive look can cost on RabbitMQ.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import aio_pika
from pydantic import SecretStr

from common.quarantine.operations import Operator
from common.quarantine.selection import Selection
from common.settings import HoplineSettings
from deploy.local.broker import start_local_broker, stop_local_broker
from tests.support.quarantine import seed_quarantine

QUEUE = "hopline.orders.quarantine"


async def _raw_look(url: str, expected: int) -> float:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=min(expected + 1000, 65535))
        queue = await channel.get_queue(QUEUE, ensure=False)
        seen = 0
        done = asyncio.Event()

        async def on_message(_message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            seen += 1
            if seen == expected:
                done.set()

        started = time.perf_counter()
        tag = await queue.consume(on_message)
        await done.wait()
        await queue.cancel(tag)
        raw = await channel.get_underlay_channel()
        await raw.basic_nack(delivery_tag=0, multiple=True, requeue=True)
        return time.perf_counter() - started
    finally:
        await connection.close()


async def _measure(url: str, count: int) -> None:
    batch = 1000
    for start in range(0, count, batch):
        await seed_quarantine(
            url,
            "orders",
            [
                {"id": f"m-{n}", "type": f"orders.t{n % 7}", "error_type": f"E{n % 3}"}
                for n in range(start, min(start + batch, count))
            ],
        )
    settings = HoplineSettings(amqp_url=SecretStr(url))
    raw_s = await _raw_look(url, count)
    await asyncio.sleep(1)
    async with Operator.open(settings, name="bench") as operator:
        started = time.perf_counter()
        listed = await operator.browse(["orders"], Selection(), limit=count)
        list_s = time.perf_counter() - started
        started = time.perf_counter()
        groups = await operator.groups(["orders"])
        groups_s = time.perf_counter() - started
        started = time.perf_counter()
        await operator.browse(["orders"], Selection(), limit=50)
        first_s = time.perf_counter() - started
        depth = await operator.store.depth(QUEUE)
    print(f"messages in quarantine          {count}")
    print(f"raw aio-pika look (consume+nack) {raw_s:6.2f} s   1.00x")
    rows, kinds = len(listed), len(groups)
    print(
        f"hopline list --limit {count:<6}     {list_s:6.2f} s   {list_s / raw_s:.2f}x  {rows} rows"
    )
    print(f"hopline groups                  {groups_s:6.2f} s   {groups_s / raw_s:.2f}x  ({kinds})")
    print(f"hopline list (first 50)         {first_s:6.2f} s")
    print(f"queue depth afterwards          {depth} (unchanged: {depth == count})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hopline-bench-quarantine-"))
    broker = start_local_broker(base)
    try:
        asyncio.run(_measure(broker.amqp_url, args.messages))
    finally:
        stop_local_broker(broker)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
