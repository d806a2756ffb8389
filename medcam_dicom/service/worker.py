"""Workers: run the DICOM pipeline for a job and deliver its results, through the huey task queue.

The job record is the source of truth; the queue only says "look at job X". A task for a job that is
already delivered, or locked by another worker, does nothing, so duplicated hand-offs after a crash are
harmless, and sends skip every result the destination already accepted.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import torch
from huey import Huey, RedisHuey, SqliteHuey
from huey.exceptions import RetryTask

from medcam_dicom.dicom.pipeline import explain_series
from medcam_dicom.dicom.read import scan_inputs
from medcam_dicom.dicom.settings import OutputSettings
from medcam_dicom.models.description import DEFAULT_MODELS, load_description
from medcam_dicom.models.loading import LoadedModel, load_model
from medcam_dicom.service.config import ServiceConfig
from medcam_dicom.service.jobs import TERMINAL, JobRecord, JobRecordError, JobStore
from medcam_dicom.service.logs import log_event
from medcam_dicom.service.metrics import Metrics
from medcam_dicom.service.sender import SendError, send_files
from medcam_dicom.service.spool import Spool

TASK_NAME = "medcam.process_job"


def make_queue(config: ServiceConfig) -> Huey:
    """The huey instance: SQLite in the spool (embedded default) or Redis (``queue_url``)."""
    if config.queue_url == "sqlite":
        config.spool.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name="medcam", filename=str(Path(config.spool) / "queue.db"), results=False, fsync=True)
    return RedisHuey(name="medcam", url=config.queue_url, results=False)


def apply_thread_budget(config: ServiceConfig) -> int:
    """Set torch's CPU threads for this process: ``config.threads``; else, unless ``OMP_NUM_THREADS`` already
    says (an operator's choice, kept), the cores shared out among its worker threads (at least 1). Returns
    torch's thread count."""
    if config.threads is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = config.threads or max(1, cores // max(1, config.workers))
    torch.set_num_threads(threads)
    return threads


class JobRunner:
    """Runs jobs: explain every series of the study, then send the results, recording each step."""

    def __init__(self, config: ServiceConfig, spool: Spool, metrics: Metrics | None = None) -> None:
        self.config = config
        self.spool = spool
        self.store = JobStore(spool)
        self.metrics = metrics or Metrics()
        self.settings = OutputSettings(uid_root=config.uid_root or OutputSettings.uid_root,
                                       content_qualification=config.content_qualification, overlays=config.overlays,
                                       parametric_map=config.parametric_map)
        self._descriptions = [load_description(m) for m in (config.models or DEFAULT_MODELS)]
        self._local = threading.local()

    def models(self) -> list[LoadedModel]:
        """This thread's copy of the models (explainers hook the network, so threads must not share one)."""
        if not hasattr(self._local, "models"):
            self._local.models = [load_model(d, self.config.device) for d in self._descriptions]
        return self._local.models

    def result_files(self, record: JobRecord) -> list[Path]:
        folder = self.spool.job_dir(record.job_id)
        return [folder / relative for relative in record.results]

    def explain(self, record: JobRecord) -> None:
        """Explain every series of the job's input into ``results/`` and record what came out."""
        folder = self.spool.job_dir(record.job_id)
        started = time.perf_counter()
        scan = scan_inputs([folder / "input"])
        record.series, record.results, record.errors = [], [], []
        for path, reason in scan.failed:
            record.errors.append(f"{Path(path).name}: {reason}")
        for instances in scan.series.values():
            result = explain_series(instances, folder / "results", self.models(), self.settings)
            record.series.append({"series_uid": result.series_uid, "label": result.label, "status": result.status,
                                  "reason": result.reason, "model": result.model,
                                  "evidence": [e.summary() for e in result.evidence]})
            record.results += [str(p.relative_to(folder)) for p in result.outputs if p.suffix == ".dcm"]
            if result.status == "failed":
                record.errors.append(result.reason or "failed")
            self.metrics.inc("medcam_series_total", labels={"status": result.status}, help="series by outcome")
        record.explained_seconds = time.perf_counter() - started
        self.metrics.observe("medcam_explain_seconds", record.explained_seconds, help="explaining one study")

    def run(self, job_id: str) -> float | None:
        """Advance a job as far as possible. Returns a delay in seconds when sending should be retried."""
        if not self.spool.job_dir(job_id).is_dir():  # quarantined (or removed by hand) since it was queued
            log_event("job not in the spool", job=job_id, action="task dropped")
            return None
        with self.store.exclusive(job_id) as mine:
            if not mine:
                return None
            try:
                record = self.store.load(job_id)
            except JobRecordError as error:
                log_event("job record unreadable", job=job_id, reason=str(error),
                          action="left for the service to quarantine at its next start; its study is kept")
                self.metrics.inc("medcam_jobs_unreadable_total", help="tasks whose job record could not be read")
                return None
            if record.state in TERMINAL:
                return None
            if record.state in ("queued", "running"):
                record.state = "running"
                self.store.save(record)
                try:
                    self.explain(record)
                except Exception as error:  # noqa: BLE001 - a bug must not take the worker down
                    record.errors.append(f"explaining failed: {type(error).__name__}: {error}")
                    return self.fail(record, error=str(error))
                explained = [s for s in record.series if s["status"] == "explained"]
                if not explained and record.errors:
                    return self.fail(record, errors=record.errors)
                record.state = "sending"
                self.store.save(record)
            return self.deliver(record)

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next sending attempt: ``send_backoff_seconds`` doubled per failed attempt."""
        return self.config.send_backoff_seconds * 2 ** (attempts - 1)

    def fail(self, record: JobRecord, **fields: object) -> None:
        """Mark the job failed for good (results stay on disk), log it with ``fields`` and count it."""
        record.state = "failed"
        self.store.save(record)
        log_event("job", job=record.job_id, study=record.study_uid, state="failed", **fields)
        self.metrics.inc("medcam_jobs_total", labels={"state": "failed"}, help="jobs by final state")

    def deliver(self, record: JobRecord) -> float | None:
        """Send the job's results (skipping those already accepted); retry with exponential backoff."""
        destination = self.config.destination
        if destination is not None and record.results:
            try:
                send_files(self.result_files(record), destination, self.config.ae_title,
                           self.store.sent(record.job_id), lambda uid: self.store.mark_sent(record.job_id, uid))
            except SendError as error:
                record.attempts += 1
                record.errors.append(f"send attempt {record.attempts}: {error}")
                self.metrics.inc("medcam_send_failures_total", help="failed delivery attempts")
                if record.attempts > self.config.send_retries:
                    return self.fail(record, error=str(error), attempts=record.attempts)
                self.store.save(record)
                delay = self.retry_delay(record.attempts)
                log_event("send retry", job=record.job_id, error=str(error), attempt=record.attempts, delay=delay)
                return delay
        record.state = "delivered"
        record.delivered_at = time.time()
        self.store.save(record)
        latency = record.delivered_at - record.created
        self.metrics.inc("medcam_jobs_total", labels={"state": "delivered"}, help="jobs by final state")
        self.metrics.observe("medcam_job_seconds", latency, help="job creation to delivery")
        log_event("job", job=record.job_id, study=record.study_uid, state="delivered", results=len(record.results),
                  series=len(record.series), errors=record.errors, seconds=round(latency, 3))
        return None


def register_task(queue: Huey, runner: JobRunner):
    """Register the job task on ``queue``; it calls ``runner.run`` and asks huey to retry after a delay."""

    @queue.task(name=TASK_NAME)
    def process_job(job_id: str) -> None:
        delay = runner.run(job_id)
        if delay is not None:
            raise RetryTask(delay=delay)

    return process_job
