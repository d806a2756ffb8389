"""Scale-out figures for workers without a shared disk (figures for the issue notes and docs; never a test).

On this machine: redis-server, `medcam-dicom serve --workers 0 --payload-port P` receiving, and 1, 2 and 4
`medcam-dicom worker` processes, each with its own scratch folder and one torch thread, none reading the
serve node's spool (studies travel over the payload channel). Per worker count it prints:

- studies per minute, from the first C-STORE to the last SR at the PACS, for ``--studies`` CT studies of
  ``--slices`` 512² slices each (after one warm-up study per worker: torch and the models load once);
- payload transfer rate of the study downloads (bytes / seconds, from the workers' `study fetched` lines);
- queue wait: the node's `job created` to a worker's `job leased` during the batch (median, p95): jobs
  waiting for a free worker;
- hand-off latency: the same with idle workers (``--idle`` studies sent one at a time after the batch, each
  waited for): the queue's own delay.

    python scripts/benchmark_scaleout.py --workers 1 2 4 --studies 12 --slices 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_service import make_series, send  # noqa: E402

from tests.service_peers import Pacs, RedisServer, ServiceProcess, WorkerProcess, free_port  # noqa: E402

TOKEN = "benchmark-token-0123456789abcdef"


def studies_of(root: Path, count: int, slices: int) -> list[list[Path]]:
    """``count`` studies, each a CT series of ``slices`` 512² slices (new study and series UIDs per study)."""
    template = make_series(root / "template", slices)
    studies = []
    for index in tqdm(range(count), desc="writing studies", leave=False):
        study, series = generate_uid(), generate_uid()
        paths = []
        for k, path in enumerate(template):
            dataset = pydicom.dcmread(path)
            dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            target = root / f"study-{index}" / f"{k:04d}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            dataset.save_as(target)
            paths.append(target)
        studies.append(paths)
    return studies


def events(text: str, name: str) -> list[dict]:
    found = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == name:
            found.append(record)
    return found


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run(root: Path, workers: int, studies: list[list[Path]], warmups: list[list[Path]], idle: list[list[Path]]
        ) -> dict:
    redis, pacs = RedisServer().start(), Pacs().start()
    payload = free_port()
    common = ["--queue-url", redis.url, "--destination", pacs.address]
    service = ServiceProcess(root / f"spool-{workers}", ["--workers", "0", "--stable-seconds", "0.5",
                                                         "--payload-port", str(payload), *common],
                             environment={"MEDCAM_WORKER_TOKENS": TOKEN})
    processes: list[WorkerProcess] = []
    try:
        service.start()
        for index in range(workers):
            processes.append(WorkerProcess(root / f"scratch-{workers}-{index}", [
                "--serve-url", f"http://127.0.0.1:{payload}", "--workers", "1", "--threads", "1", *common],
                TOKEN, f"w{workers}-{index}").start())

        def wait_for_srs(count: int, desc: str) -> None:
            with tqdm(total=count, desc=desc, leave=False) as progress:
                while (done := sum(d.Modality == "SR" for d in pacs.received)) < count:
                    progress.update(done - progress.n)
                    if not all(p.alive() for p in processes):
                        raise RuntimeError(f"a worker exited; see {root}/w{workers}-*.log")
                    time.sleep(0.1)

        for paths in warmups[:workers]:
            send(service.port, "MEDCAM", paths)
        wait_for_srs(workers, "warm-up")
        started = time.perf_counter()
        for paths in studies:
            send(service.port, "MEDCAM", paths)
        wait_for_srs(workers + len(studies), f"{workers} worker(s)")
        elapsed = time.perf_counter() - started
        batch_jobs = {e["job"] for e in events(service.log(), "job created")}
        for index, paths in enumerate(idle):
            send(service.port, "MEDCAM", paths)
            wait_for_srs(workers + len(studies) + index + 1, "idle hand-off")
        created = {e["job"]: seconds(e["time"]) for e in events(service.log(), "job created")}
        leased, fetched = {}, []
        for process in processes:
            log = process.log()
            for event in events(log, "job leased"):
                leased.setdefault(event["job"], seconds(event["time"]))
            fetched += [e for e in events(log, "study fetched") if e["seconds"] > 0]
        waits = sorted(leased[job] - created[job] for job in batch_jobs if job in leased)
        hand_off = sorted(leased[job] - created[job] for job in set(created) - batch_jobs if job in leased)
        rates = [e["bytes"] / e["seconds"] / 1e6 for e in fetched]
        sizes = [e["bytes"] / 1e6 for e in fetched]
        return {"workers": workers, "studies": len(studies), "seconds": elapsed,
                "studies_per_minute": len(studies) / elapsed * 60, "study_mb": statistics.median(sizes),
                "payload_mb_s": statistics.median(rates), "queue_wait_median_s": statistics.median(waits),
                "queue_wait_p95_s": waits[min(len(waits) - 1, int(0.95 * len(waits)))],
                "hand_off_median_s": statistics.median(hand_off), "hand_off_max_s": max(hand_off)}
    finally:
        for process in processes:
            process.stop()
        service.stop()
        pacs.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--idle", type=int, default=4, help="studies sent one at a time for the hand-off latency")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medcam-scaleout-") as folder:
        root = Path(folder)
        studies = studies_of(root / "studies", args.studies + max(args.workers) + args.idle, args.slices)
        batch, rest = studies[: args.studies], studies[args.studies:]
        rows = [run(root, n, batch, rest[: max(args.workers)], rest[max(args.workers):]) for n in args.workers]
    table = Table(title=f"scale-out: {args.studies} studies of {args.slices} x 512² CT, worker processes with "
                        "their own scratch (no shared spool), 1 torch thread each")
    for column in ("workers", "studies/min", "vs 1 worker", "study MB", "payload MB/s", "queue wait median s",
                   "queue wait p95 s", "hand-off median s", "hand-off max s"):
        table.add_column(column, justify="right")
    base = rows[0]["studies_per_minute"]
    for row in rows:
        rate = row["studies_per_minute"]
        table.add_row(str(row["workers"]), f"{rate:.1f}", f"{rate / base:.2f}", f"{row['study_mb']:.1f}",
                      f"{row['payload_mb_s']:.0f}", f"{row['queue_wait_median_s']:.1f}",
                      f"{row['queue_wait_p95_s']:.1f}", f"{row['hand_off_median_s']:.3f}",
                      f"{row['hand_off_max_s']:.3f}")
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
