"""The machine the figures came from: cores, memory, kernel, CPU model (recorded with them)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def describe() -> dict[str, str | int | float]:
    """Date, nproc, total memory, kernel, CPU model, load average and Python, as a dict."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count() or 0,
        "mem_total_gib": round(_mem_total_gib(), 1),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def summary(d: dict[str, str | int | float] | None = None) -> str:
    """One line for the top of the report (of `describe()`, or of what it returned earlier)."""
    d = d or describe()
    return (f"machine: {d['nproc']} cores, {d['mem_total_gib']} GiB, kernel {d['kernel']}, CPU {d['cpu']}, "
            f"load {d['loadavg_1m']}, Python {d['python']}")
