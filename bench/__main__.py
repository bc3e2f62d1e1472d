"""`python -m bench NAME`: run one benchmark, or `all` of them."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "api": "dashboard and 24 h chart at 50 sessions: p50/p95/p99 against /health/live",
    "agent": "the gateway agent: RSS and CPU with 64 meters, drain rate against bare paho",
    "buffer": "the gateway buffer: append and drain against a bare SQLite INSERT loop",
    "bus": "a 32-meter 9600-baud read cycle: our poller, a naive one, the line's capacity",
    "codec": "every fastcodec codec against its peer (pymodbus, gurux-dlms, …)",
    "crc": "CRC-16 throughput against pymodbus and gurux-dlms",
    "dlms": "one load-profile answer off the line: gurux's path against fastcodec's",
    "ingest": "MQTT to InfluxDB through our workers, readings/s against influxd's ceiling",
    "ingest_query": "a meter-year of 15-minute data as daily sums: SQLite and InfluxDB stores",
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in {*BENCHMARKS, "all"}:
        print("usage: python -m bench NAME, where NAME is one of:", file=sys.stderr)
        for name, what in BENCHMARKS.items():
            print(f"  {name:<8} {what}", file=sys.stderr)
        print("  all      every benchmark above, one after the other", file=sys.stderr)
        return 2
    names = list(BENCHMARKS) if argv[0] == "all" else argv
    for name in names:
        print(f"== bench {name}: {BENCHMARKS[name]}")
        importlib.import_module(f"bench.{name}").run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
