"""Benchmark the DICOM node on loopback (figures for the issue notes; never a test).

1. Receive throughput of the same CT series (N x 512^2, uncompressed, sent by dcmtk storescu in one
   association) into: dcmtk storescp, a bare pynetdicom SCP whose handler only writes and fsyncs each
   dataset, and `medcam-dicom serve --workers 0` (full bookkeeping, no explaining). Ratios in one run.
2. End-to-end latency from the end of the C-STORE to the SR (the last result object sent; a "normal" decision
   gets no SEG) arriving at a PACS (pynetdicom SCP), for a
   CR image and a 20-slice CT series, with the demo models at --max-steps Med-CAM steps.
3. Jobs per minute with 2 workers on single-image studies.
4. Jobs per minute with 1 and 2 worker *processes* (`serve --workers 0` receives; each `medcam-dicom worker`
   process takes jobs from the same spool's queue with its share of the cores, `--threads`), against 2 worker
   threads in one process and one process with one torch thread; `--worker-model` picks the description
   (a per-image one shows the explaining itself).
5. A clinical-size CT series (200 x 512^2, real CT anatomy with a planted finding) through the node with the
   3D model `demo-ct3d`: seconds to send it, from the last C-STORE to the SEG and to the SR at the PACS, the
   evidence's overlap with the planted finding (from the SEG the PACS received) and the node's peak RSS.

    python scripts/benchmark_service.py --slices 200 --max-steps 300
    python scripts/benchmark_service.py --only-worker-processes --studies 24   # part 4 alone
    python scripts/benchmark_service.py --only-volume                          # part 5 alone
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.service_peers import Pacs, ServiceProcess, free_port  # noqa: E402


def make_series(folder: Path, slices: int, size: int = 512) -> list[Path]:
    """A CT series of ``slices`` uncompressed ``size``^2 slices built from CT_small (offline)."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    base = np.kron(source.pixel_array, np.ones((size // 128, size // 128), source.pixel_array.dtype))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in tqdm(range(slices), desc="writing test series", leave=False):
        dataset = copy.deepcopy(source)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.Rows = dataset.Columns = size
        dataset.PixelData = np.roll(base, k, axis=0).tobytes()
        position = [float(v) for v in source.ImagePositionPatient]
        dataset.ImagePositionPatient = [position[0], position[1], position[2] + 1.25 * k]
        dataset.InstanceNumber = k + 1
        path = folder / f"{k:04d}.dcm"
        dataset.save_as(path)
        paths.append(path)
    return paths


def send(port: int, called: str, paths: list[Path]) -> float:
    started = time.perf_counter()
    result = subprocess.run(["storescu", "-aet", "BENCH", "-aec", called, "127.0.0.1", str(port),
                             *[str(p) for p in paths]], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"storescu failed: {result.stderr[-500:]}")
    return time.perf_counter() - started


def bare_scp(folder: Path, port: int):
    """The reference: a pynetdicom SCP that writes and fsyncs each dataset, nothing else."""
    folder.mkdir(parents=True, exist_ok=True)

    def handle(event: evt.Event) -> int:
        path = folder / f"{event.request.AffectedSOPInstanceUID}.dcm"
        with open(path, "wb") as handle:
            handle.write(event.encoded_dataset())
            handle.flush()
            os.fsync(handle.fileno())
        return 0

    ae = AE(ae_title="BARE")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.maximum_pdu_size = 0
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)])


def receive_rates(paths: list[Path], root: Path, repeats: int) -> list[tuple[str, float, float, float]]:
    """Median seconds per receiver over ``repeats`` rounds, the receivers interleaved within each round
    (these machines are shared: interleaving spreads the noise over all three)."""
    size = sum(p.stat().st_size for p in paths)
    names = ("dcmtk storescp", "bare pynetdicom SCP (write + fsync)",
             "medcam-dicom serve (spool, fsync, bookkeeping)")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_number in tqdm(range(repeats), desc="receive rounds"):
        folder = root / f"round{round_number}"
        port = free_port()
        (folder / "storescp").mkdir(parents=True)
        storescp = subprocess.Popen(["storescp", "-aet", "STORESCP", "-od", str(folder / "storescp"), str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        try:
            seconds[names[0]].append(send(port, "STORESCP", paths))
        finally:
            storescp.terminate()
            storescp.wait()
        port = free_port()
        server = bare_scp(folder / "bare", port)
        try:
            seconds[names[1]].append(send(port, "BARE", paths))
        finally:
            server.shutdown()
        service = ServiceProcess(folder / "spool", ["--workers", "0", "--stable-seconds", "3600"]).start()
        try:
            seconds[names[2]].append(send(service.port, "MEDCAM", paths))
        finally:
            service.stop()
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for name in names:
        median = statistics.median(seconds[name])
        rows.append((name, median, len(paths) / median, size / median / 1e6))
    return rows


def latency(root: Path, max_steps: int) -> list[tuple[str, float]]:
    pacs = Pacs().start()
    service = ServiceProcess(root / "latency-spool", ["--destination", pacs.address, "--stable-seconds", "1",
                                                      "--workers", "1", "--max-study-bytes", str(2**33)])
    models = root / "models"
    models.mkdir(exist_ok=True)
    arguments = []
    for name in ("demo-ct", "demo-mr", "demo-colour", "demo-any"):
        text = (Path(__file__).resolve().parents[1] / "medcam_dicom/models/descriptions" / f"{name}.yaml").read_text()
        (models / f"{name}.yaml").write_text(text + f"medcam: {{max_steps: {max_steps}, min_steps: "
                                             f"{min(30, max_steps)}}}\n")
        arguments += ["--model", str(models / f"{name}.yaml")]
    service.args += arguments
    service.start()
    results = []
    try:
        cr = [Path(p) for p in [get_testdata_file("6154", download=False) or ""] if p]
        if not cr:
            import glob

            import pydicom.data
            cr = [Path(glob.glob(os.path.join(os.path.dirname(pydicom.data.__file__), "**", "6154"),
                                 recursive=True)[0])]
        for label, paths in (("CR image", cr), ("20-slice CT series", make_series(root / "ct20", 20, 128))):
            before = len(pacs.received)
            send(service.port, "MEDCAM", paths)
            done = time.perf_counter()
            while not any(d.Modality == "SR" for d in pacs.received[before:]):
                time.sleep(0.05)
            results.append((label, time.perf_counter() - done))
    finally:
        service.stop()
        pacs.stop()
    return results


def single_image_studies(folder: Path, count: int) -> list[Path]:
    """``count`` studies of one 128^2 CT image each, in ``folder``/<index>/."""
    paths = []
    for index in range(count):
        (path,) = make_series(folder / str(index), 1, 128)
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID = generate_uid()
        dataset.save_as(path)
        paths.append(path)
    return paths


def jobs_per_minute(root: Path, studies: int, max_steps: int) -> float:
    pacs = Pacs().start()
    models = root / "models"
    service = ServiceProcess(root / "jobs-spool", ["--destination", pacs.address, "--stable-seconds", "0.5",
                                                   "--workers", "2", "--model", str(models / "demo-ct.yaml")])
    service.start()
    try:
        paths = single_image_studies(root / "jobs", studies)
        started = time.perf_counter()
        for path in tqdm(paths, desc="sending studies", leave=False):
            send(service.port, "MEDCAM", [path])
        while sum(d.Modality == "SR" for d in pacs.received) < studies:
            time.sleep(0.1)
        return studies / (time.perf_counter() - started) * 60
    finally:
        service.stop()
        pacs.stop()


def jobs_per_minute_processes(root: Path, studies: int, processes: int, threads: int = 1, model: str = "demo-ct",
                              torch_threads: int | None = None) -> float:
    """Single-image studies per minute with ``processes`` worker processes of ``threads`` worker threads each
    beside a receiving-only node; each process gets ``torch_threads`` for torch (default: the cores divided by
    ``processes``)."""
    pacs = Pacs().start()
    spool = root / f"processes-{processes}-{threads}-spool"
    service = ServiceProcess(spool, ["--destination", pacs.address, "--stable-seconds", "0.5", "--workers", "0",
                                     "--model", model]).start()
    cores = len(os.sched_getaffinity(0))
    workers = []
    try:
        for index in range(processes):
            log = open(root / f"worker-{processes}-{index}.log", "ab")
            command = [sys.executable, "-m", "medcam_dicom.cli", "worker", "--spool", str(spool),
                       "--workers", str(threads), "--threads", str(torch_threads or max(1, cores // processes)),
                       "--model", model, "--destination", pacs.address]
            workers.append(subprocess.Popen(command, stdout=log, stderr=log, env=dict(os.environ,
                                                                                        PYTHONUNBUFFERED="1")))
        paths = single_image_studies(root / f"p{processes}-{threads}", studies)
        time.sleep(10)  # the workers load torch and the models before the clock starts
        started = time.perf_counter()
        for path in tqdm(paths, desc=f"{processes} worker process(es)", leave=False):
            send(service.port, "MEDCAM", [path])
        while sum(d.Modality == "SR" for d in pacs.received) < studies:
            if any(worker.poll() is not None for worker in workers):
                raise RuntimeError(f"a worker process exited; see {root}/worker-{processes}-*.log")
            time.sleep(0.1)
        return studies / (time.perf_counter() - started) * 60
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        service.stop()
        pacs.stop()


def volume_through_node(root: Path, slices: int = 200, size: int = 512, stable_seconds: float = 1.0) -> dict:
    """Part 5: a CT series of ``slices`` x ``size``^2 (:func:`write_ct_volume_series`) sent to ``serve --model
    demo-ct3d``; figures in seconds from the last C-STORE (the node's ``--stable-seconds`` wait included)."""
    import torch

    from medcam_dicom.benchmark.metrics import iou
    from medcam_dicom.dicom.examples import write_ct_volume_series

    paths, finding = write_ct_volume_series(root / "volume", slices=slices, size=size)
    positions = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in paths]
    pacs = Pacs().start()
    service = ServiceProcess(root / "volume-spool", ["--destination", pacs.address, "--stable-seconds",
                                                     str(stable_seconds), "--workers", "1", "--model", "demo-ct3d",
                                                     "--max-study-bytes", str(2**33)]).start()
    figures: dict = {"slices": slices, "size": size, "stable_seconds": stable_seconds}
    try:
        figures["send_s"] = send(service.port, "MEDCAM", paths)
        done = time.perf_counter()
        while "sr_s" not in figures:
            modalities = {d.Modality for d in list(pacs.received)}
            if "SEG" in modalities and "seg_s" not in figures:
                figures["seg_s"] = time.perf_counter() - done
            if "SR" in modalities:
                figures["sr_s"] = time.perf_counter() - done
            if time.perf_counter() - done > 600:
                raise RuntimeError(f"no SR after 10 minutes; see {service.log_path}")
            time.sleep(0.02)
        status = Path(f"/proc/{service.process.pid}/status").read_text()
        figures["node_peak_rss_gib"] = int(status.split("VmHWM:")[1].split()[0]) / 2**20
        (seg,) = [d for d in pacs.received if d.Modality == "SEG"]
        figures["seg_frames"] = int(seg.NumberOfFrames)
        seg.file_meta = pydicom.dataset.FileMetaDataset()  # as received over the network: no file meta
        seg.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian  # uncompressed, little endian
        mask = np.zeros_like(finding)
        frames = seg.pixel_array.reshape(-1, size, size).astype(bool)
        by_position = {round(z, 3): k for k, z in enumerate(positions)}
        for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
            z = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
            mask[by_position[round(z, 3)]] |= frame
        figures["iou_with_planted"] = iou(torch.from_numpy(mask), torch.from_numpy(finding))
    finally:
        service.stop()
        pacs.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=200, help="slices of the receive-throughput series")
    parser.add_argument("--max-steps", type=int, default=300, help="Med-CAM steps for the latency figures")
    parser.add_argument("--studies", type=int, default=6, help="single-image studies for jobs per minute")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the receive test")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--only-worker-processes", action="store_true", help="run part 4 alone")
    parser.add_argument("--only-volume", action="store_true", help="run part 5 alone")
    parser.add_argument("--worker-model", default="demo-ct",
                        help="model description of part 4 (default: %(default)s, the amortised explainer)")
    parser.add_argument("--worker-processes", type=int, nargs="+", default=[1, 2],
                        help="worker process counts of part 4, each also run as that many threads of one process "
                             "(default: %(default)s)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="service-bench-"))
    console = Console(width=120)
    try:
        if args.only_volume:
            figures = volume_through_node(root)
            console.print(f"Part 5, a {figures['slices']} x {figures['size']}^2 CT series through the node with "
                          f"demo-ct3d (--stable-seconds {figures['stable_seconds']:g}, one worker): sent in "
                          f"{figures['send_s']:.1f} s; from the last C-STORE: SEG at the PACS after "
                          f"{figures['seg_s']:.1f} s, SR after {figures['sr_s']:.1f} s; SEG frames "
                          f"{figures['seg_frames']}, IoU with the planted finding {figures['iou_with_planted']:.3f}; "
                          f"node peak RSS {figures['node_peak_rss_gib']:.2f} GiB")
            return
        table = Table(title=f"Jobs per minute, single 128^2 CT images ({args.worker_model}), {args.studies} studies, "
                            f"{len(os.sched_getaffinity(0))} cores")
        for column in ("worker processes", "worker threads each", "torch threads each", "jobs/min"):
            table.add_column(column)
        cores = len(os.sched_getaffinity(0))
        configurations = [(p, 1, max(1, cores // p)) for p in args.worker_processes]
        configurations += [(1, n, cores) for n in args.worker_processes if n > 1] + [(1, 1, 1)]
        for processes, threads, torch_threads in configurations:
            rate = jobs_per_minute_processes(root, args.studies, processes, threads, args.worker_model, torch_threads)
            table.add_row(str(processes), str(threads), str(torch_threads), f"{rate:.1f}")
        console.print(table)
        if args.only_worker_processes:
            return
        paths = make_series(root / "series", args.slices)
        rows = receive_rates(paths, root, args.repeats)
        table = Table(title=f"Receive: {args.slices} x 512^2 CT slices from storescu, one association, "
                            f"median of {args.repeats} interleaved rounds")
        for column in ("receiver", "seconds", "instances/s", "MB/s", "vs bare SCP"):
            table.add_column(column)
        bare = rows[1][2]
        for name, seconds, rate, megabytes in rows:
            table.add_row(name, f"{seconds:.1f}", f"{rate:.0f}", f"{megabytes:.1f}", f"{rate / bare:.0%}")
        console.print(table)
        if not args.skip_latency:
            table = Table(title=f"End to end (last C-STORE -> SR at the PACS), {args.max_steps} Med-CAM steps, CPU")
            table.add_column("input")
            table.add_column("seconds")
            for label, seconds in latency(root, args.max_steps):
                table.add_row(label, f"{seconds:.1f}")
            console.print(table)
            rate = jobs_per_minute(root, args.studies, args.max_steps)
            console.print(f"Jobs per minute with 2 workers (single 128^2 CT images): {rate:.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
