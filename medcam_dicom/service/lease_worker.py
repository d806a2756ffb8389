"""A worker that needs no shared files: it leases a job from Redis, fetches the study from the serve node over
the payload channel, explains it in its own scratch folder, stores the results back on the serve node, and
sends them to the destination. See :mod:`medcam_dicom.service.leases` (the queue and the leases) and
:mod:`medcam_dicom.service.work_api` (the channel).

While it works, a keeper thread renews the lease every third of its lifetime; when renewing fails, the
worker stops at its next step (the serve node refuses its writes anyway). What happens to a job:

- explaining raises: the job is failed with the error (retrying a deterministic failure would not help);
- sending fails: the job goes back to the queue with the exponential backoff of ``send_backoff_seconds``,
  and is failed after ``send_retries`` attempts (results kept on the serve node for ``medcam-dicom resend``);
- the worker dies or loses the network: its lease expires and the serve node re-queues the job; a job
  leased more than ``max_leases`` times is failed;
- the serve node or Redis cannot be reached for longer than the client's retry window: the lease is given
  up and the job waits for the serve node's reaper.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

from medcam_dicom.service.config import ServiceConfig
from medcam_dicom.service.jobs import TERMINAL, JobRecord
from medcam_dicom.service.leases import Lease, LeaseQueue, QueueUnavailable
from medcam_dicom.service.logs import log_event
from medcam_dicom.service.sender import SendError, send_files
from medcam_dicom.service.work_api import LeaseLost, WorkApiClient, WorkApiError
from medcam_dicom.service.worker import JobRunner

POLL_SECONDS = 0.2
HEARTBEAT_SECONDS = 2.0


def default_worker_name() -> str:
    """``host-pid``: unique among the workers of a deployment, readable in ``status``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaseKeeper:
    """Renews a lease in a background thread until ``stop()``; ``lost`` is set when renewing fails."""

    def __init__(self, queue: LeaseQueue, lease: Lease) -> None:
        self.queue = queue
        self.lease = lease
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.job_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.queue.lease_seconds / 3
        while not self._stop.wait(interval):
            try:
                if not self.queue.renew(self.lease):
                    self.lost.set()
                    return
            except QueueUnavailable:
                continue  # keep trying while the lease lasts; the serve node's fencing decides

    def check(self) -> None:
        """Raise :class:`LeaseLost` when the lease is gone."""
        if self.lost.is_set():
            raise LeaseLost(f"job {self.lease.job_id}: lease expired or taken over")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class LeaseWorker:
    """One worker loop: ``run(stop)`` until ``stop`` is set; ``process(lease)`` does one job."""

    def __init__(self, config: ServiceConfig, queue: LeaseQueue, client: WorkApiClient, runner: JobRunner,
                 name: str) -> None:
        self.config = config
        self.queue = queue
        self.client = client
        self.runner = runner
        self.name = name

    def run(self, stop: threading.Event) -> None:
        last_heartbeat = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:
                    self.queue.heartbeat(self.name)
                    last_heartbeat = time.monotonic()
                lease = self.queue.claim(self.name)
            except QueueUnavailable as error:
                log_event("queue unavailable", worker=self.name, error=str(error), action="retrying")
                stop.wait(2.0)
                continue
            if lease is None:
                stop.wait(POLL_SECONDS)
                continue
            try:
                self.process(lease)
            except Exception as error:  # noqa: BLE001 - a bug must not end the worker; the lease is released
                log_event("worker error", job=lease.job_id, worker=self.name, error=f"{type(error).__name__}: {error}",
                          action="lease released; the serve node re-queues the job (failed after max_leases)")

    def process(self, lease: Lease) -> str | None:
        """Do one leased job; returns the state it was left in (``None``: handed back or lost)."""
        keeper = LeaseKeeper(self.queue, lease)
        folder = self.runner.spool.job_dir(lease.job_id)
        try:
            record, sent = self.client.start(lease.job_id, lease.token)
            log_event("job leased", job=lease.job_id, worker=self.name, state=record.state, lease=record.leases)
            if record.state in TERMINAL:
                return record.state
            shutil.rmtree(folder, ignore_errors=True)
            if record.state in ("queued", "running"):
                state = self._explain(record, lease, keeper, folder)
                if state is not None:
                    return state
            else:  # "sending": the results are on the serve node already
                self.client.download(lease.job_id, lease.token, "results", folder / "results")
            return self._deliver(record, lease, keeper, sent)
        except LeaseLost as error:
            log_event("lease lost", job=lease.job_id, worker=self.name, reason=str(error),
                      action="work abandoned; the job's new holder carries on")
        except (WorkApiError, QueueUnavailable, OSError) as error:
            log_event("job handed back", job=lease.job_id, worker=self.name, error=str(error),
                      action="lease released; the serve node re-queues it")
        finally:
            keeper.stop()
            try:
                self.queue.release(lease)
            except QueueUnavailable:
                pass  # the lease expires by itself
            shutil.rmtree(folder, ignore_errors=True)
        return None

    def _explain(self, record: JobRecord, lease: Lease, keeper: LeaseKeeper, folder: Path) -> str | None:
        """Fetch the study, explain it, store the results on the serve node; the job's final state when it
        ends here (failed), else ``None`` (go on to sending)."""
        job = lease.job_id
        self.client.update(job, lease.token, state="running")
        fetched = time.perf_counter()
        files = self.client.download(job, lease.token, "study", folder / "input")
        size = sum(p.stat().st_size for p in (folder / "input").rglob("*") if p.is_file())
        log_event("study fetched", job=job, worker=self.name, files=files, bytes=size,
                  seconds=round(time.perf_counter() - fetched, 4))
        try:
            self.runner.explain(record)
        except Exception as error:  # noqa: BLE001 - a failing explainer fails the job, not the worker
            keeper.check()
            record.errors.append(f"explaining failed: {type(error).__name__}: {error}")
            log_event("job", job=job, worker=self.name, state="failed", error=str(error))
            self.client.update(job, lease.token, state="failed", errors=record.errors)
            return "failed"
        keeper.check()
        explained = [s for s in record.series if s["status"] == "explained"]
        if not explained and record.errors:
            self.client.update(job, lease.token, state="failed", series=record.series, errors=record.errors,
                               explained_seconds=record.explained_seconds)
            return "failed"
        self.client.upload_results(job, lease.token, folder / "results")
        self.client.update(job, lease.token, state="sending", series=record.series, results=record.results,
                           errors=record.errors, explained_seconds=record.explained_seconds)
        return None

    def _deliver(self, record: JobRecord, lease: Lease, keeper: LeaseKeeper, sent: set[str]) -> str:
        """Send the results the destination has not accepted yet; on failure, back to the queue with backoff."""
        job = lease.job_id
        destination = self.config.destination
        if destination is not None and record.results:

            def accepted(uid: str) -> None:
                keeper.check()
                self.client.mark_sent(job, lease.token, uid)

            try:
                send_files(self.runner.result_files(record), destination, self.config.ae_title, sent, accepted)
            except SendError as error:
                record.attempts += 1
                record.errors.append(f"send attempt {record.attempts}: {error}")
                if record.attempts > self.config.send_retries:
                    self.client.update(job, lease.token, state="failed", attempts=record.attempts,
                                       errors=record.errors)
                    return "failed"
                delay = self.runner.retry_delay(record.attempts)
                self.client.update(job, lease.token, attempts=record.attempts, errors=record.errors)
                self.queue.enqueue(job, delay=delay)
                log_event("send retry", job=job, worker=self.name, error=str(error), attempt=record.attempts,
                          delay=delay)
                return "sending"
        keeper.check()
        self.client.update(job, lease.token, state="delivered")
        log_event("job", job=job, study=record.study_uid, worker=self.name, state="delivered",
                  results=len(record.results), series=len(record.series), errors=record.errors)
        return "delivered"


def run_workers(config: ServiceConfig, stop: threading.Event) -> None:
    """``medcam-dicom worker`` with a Redis queue: ``config.workers`` lease workers (at least 1) in this process,
    scratch in ``config.spool``, until ``stop`` is set (each finishes the job it holds)."""
    from medcam_dicom.service.config import ConfigError
    from medcam_dicom.service.spool import Spool
    from medcam_dicom.service.work_api import client_tls

    if not config.serve_url or not config.worker_token:
        raise ConfigError("a worker on a Redis queue needs serve_url (--serve-url https://node:PORT) and "
                          "worker_token (MEDCAM_WORKER_TOKEN)")
    tls = None
    if config.serve_url.startswith("https://"):
        tls = client_tls(config.tls_ca, config.tls_certificate, config.tls_key)
    queue = LeaseQueue(config.queue_url, config.lease_seconds)
    runner = JobRunner(config, Spool(config.spool))
    name = config.worker_name or default_worker_name()
    threads = []
    for index in range(max(1, config.workers)):
        worker_name = name if config.workers <= 1 else f"{name}-{index}"
        worker = LeaseWorker(config, queue, WorkApiClient(config.serve_url, config.worker_token, worker_name, tls),
                             runner, worker_name)
        thread = threading.Thread(target=worker.run, args=(stop,), name=f"medcam-worker-{index}")
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
