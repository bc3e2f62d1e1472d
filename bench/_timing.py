"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import timeit
from collections.abc import Callable


def seconds_per_call(function: Callable[[], object], repeats: int = 7) -> float:
    """Best of `repeats` runs of about 0.2 s each: the least disturbed estimate
    on a shared, noisy machine."""
    timer = timeit.Timer(function)
    calls, _ = timer.autorange()
    return min(timer.repeat(repeat=repeats, number=calls)) / calls


def machine_line() -> str:
    """One line naming the machine, printed with every result."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
