"""Measure the task-queue engines the service could use for job hand-off (huey's storages), on this machine.

Prints, per engine: enqueue rate, enqueue-to-start latency (median, p95) and end-to-end throughput of
N no-op jobs with one worker thread. Redis is measured only when a server answers at --redis.

    python scripts/benchmark_queue.py --jobs 500 [--redis redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from huey import FileHuey, MemoryHuey, RedisHuey, SqliteHuey
from rich.console import Console
from rich.table import Table
from tqdm import tqdm


def measure(name: str, queue, jobs: int) -> dict:
    started: dict[int, float] = {}
    done = threading.Event()

    @queue.task(name="noop")
    def noop(index: int, enqueued: float) -> None:
        started[index] = time.perf_counter() - enqueued
        if len(started) == jobs:
            done.set()

    consumer = queue.create_consumer(workers=1, worker_type="thread", periodic=False, initial_delay=0.01,
                                     max_delay=0.05, backoff=1.1)
    consumer.start()
    begin = time.perf_counter()
    for index in tqdm(range(jobs), desc=name, leave=False):
        noop(index, time.perf_counter())
    enqueued = time.perf_counter() - begin
    done.wait(600)
    total = time.perf_counter() - begin
    consumer.stop(graceful=True)
    latencies = sorted(started.values())
    return {"engine": name, "enqueue_per_s": jobs / enqueued, "jobs_per_s": len(latencies) / total,
            "latency_median_ms": 1000 * statistics.median(latencies),
            "latency_p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--redis", help="redis://host:port/db to include RedisHuey")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    engines = [
        ("huey MemoryHuey (not durable: floor)", lambda: MemoryHuey("bench", results=False)),
        ("huey SqliteHuey fsync (service default)",
         lambda: SqliteHuey("bench", filename=str(folder / "q.db"), results=False, fsync=True)),
        ("huey SqliteHuey no fsync", lambda: SqliteHuey("bench", filename=str(folder / "q2.db"), results=False)),
        ("huey FileHuey", lambda: FileHuey("bench", path=str(folder / "files"), results=False)),
    ]
    if args.redis:
        engines.append(("huey RedisHuey", lambda: RedisHuey("bench", url=args.redis, results=False)))
    rows = [measure(name, make(), args.jobs) for name, make in engines]
    table = Table(title=f"Task hand-off, {args.jobs} no-op jobs, 1 worker thread")
    for column in ("engine", "enqueue/s", "jobs/s", "latency median ms", "latency p95 ms"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["engine"], f"{row['enqueue_per_s']:.0f}", f"{row['jobs_per_s']:.0f}",
                      f"{row['latency_median_ms']:.1f}", f"{row['latency_p95_ms']:.1f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
