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


def report(
    case: str, timings: dict[str, float], baseline: str, items: int = 1, item_name: str = "call"
) -> None:
    """Print one line per implementation: time per call, items/s and the
    ratio against `baseline` (the peer or the limit), e.g.

        modbus FC04 40 float32 (165 B)  fastcodec cython  1.10 µs/call  0.91 M call/s
        54.5x vs pymodbus   (all on one line)
    """
    reference = timings[baseline]
    for implementation, seconds in timings.items():
        rate = items / seconds
        print(
            f"{case:<36} {implementation:<18} {seconds * 1e6:>10.2f} µs/call "
            f"{rate / 1e6:>8.3f} M {item_name}/s {reference / seconds:>8.1f}x vs {baseline}"
        )
