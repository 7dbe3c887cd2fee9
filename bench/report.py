"""The run's output: a terminal table (ratios first) and a JSON file for later comparison."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.context import Config, Row

__all__ = ["machine", "print_table", "write_json"]


def machine(broker_version: str) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "rabbitmq": broker_version,
    }


def _number(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    return f"{text} {unit}".strip()


def print_table(console: Console, rows: list[Row], info: dict[str, Any]) -> None:
    table = Table(
        title=f"hopline bench · {info['cpu']} x {info['cores']} · RabbitMQ {info['rabbitmq']}",
        show_lines=False,
    )
    for column, justify in (
        ("ratio", "right"),
        ("target", "right"),
        ("queue", "left"),
        ("scenario", "left"),
        ("hopline", "right"),
        ("reference", "right"),
        ("reference is", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        ratio = row.ratio
        met = row.met
        mark = "" if met is None else (" ✓" if met else " ✗")
        style = "" if met is None else ("green" if met else "red")
        target = (
            "" if row.target is None else f"{'≤' if row.lower_is_better else '≥'} {row.target:g}x"
        )
        table.add_row(
            Text(f"{ratio:.2f}x{mark}", style=style) if ratio is not None else "",
            target,
            row.queue_type,
            row.scenario,
            _number(row.hopline, row.unit),
            _number(row.reference, row.unit) if row.reference is not None else "",
            row.reference_name,
        )
    console.print(table)


def write_json(
    directory: Path, rows: list[Row], info: dict[str, Any], config: Config, elapsed_s: float
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {
        "machine": info,
        "config": asdict(config),
        "elapsed_s": elapsed_s,
        "rows": [{**asdict(row), "ratio": row.ratio, "met": row.met} for row in rows],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return path
