"""``medcam-dicom serve``: the storage SCP, the scheduler that turns stable studies into jobs, the embedded
workers, and the health endpoint, with recovery at start and a graceful stop on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from typing import Any

from medcam_dicom.service.config import ServiceConfig
from medcam_dicom.service.health import start_http
from medcam_dicom.service.jobs import STATES, TERMINAL, JobStore
from medcam_dicom.service.logs import log_event
from medcam_dicom.service.metrics import Metrics
from medcam_dicom.service.scp import StorageSCP
from medcam_dicom.service.spool import Spool
from medcam_dicom.service.tracker import StudyTracker
from medcam_dicom.service.worker import JobRunner, apply_thread_budget, make_queue, register_task

SCHEDULER_INTERVAL = 0.2


class Service:
    """One running DICOM node; ``start()`` then ``wait()``; ``stop()`` from any thread."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.spool = Spool(config.spool)
        self.store = JobStore(self.spool)
        self.tracker = StudyTracker()
        self.queue = make_queue(config)
        self.runner = JobRunner(config, self.spool, self.metrics)
        self.task = register_task(self.queue, self.runner)
        self.scp = StorageSCP(config, self.spool, self.tracker, self.metrics)
        self.consumer = None
        self.http = None
        self._stopping = threading.Event()
        self._reported_unreadable: set[str] = set()
        self._scheduler = threading.Thread(target=self._schedule, name="medcam-scheduler", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.tracker.restore(self.spool)
        self.recover()
        threads = None
        if self.config.workers > 0:
            threads = apply_thread_budget(self.config)
            self.consumer = self.queue.create_consumer(workers=self.config.workers, worker_type="thread",
                                                       periodic=False, initial_delay=0.05, max_delay=0.5,
                                                       backoff=1.2, check_worker_health=True)
            self.consumer.start()
        self.scp.start()
        self._scheduler.start()
        if self.config.http_port:
            self.http = start_http(self.config.bind, self.config.http_port, self.health, self.render_metrics)
        log_event("service started", ae_title=self.config.ae_title, bind=self.config.bind, port=self.config.port,
                  tls=self.config.tls, destination=str(self.config.destination), workers=self.config.workers,
                  torch_threads=threads, device=self.config.device, queue=self.config.queue_url,
                  spool=str(self.spool.root))

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully (must be called from the main thread)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stopping.set())

    def wait(self) -> None:
        while not self._stopping.wait(0.5):
            pass
        self.stop()

    def stop(self) -> None:
        """Stop receiving, let running jobs finish, stop the workers."""
        self._stopping.set()
        self.scp.stop()
        if self.http is not None:
            self.http.shutdown()
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
            self.consumer = None
        log_event("service stopped")

    # ------------------------------------------------------------------ jobs
    def recover(self) -> None:
        """Hand every unfinished job to the queue again (its task skips work already done), move jobs whose
        record cannot be read to the quarantine (study kept, reported), and drop job folders that never
        received their study (a crash between creating the record and moving the study)."""
        records, unreadable = self.store.scan()
        for job in unreadable:
            try:
                folder = self.store.quarantine(job)
            except OSError as error:  # still reported by status and /metrics; try again at the next start
                log_event("job quarantine failed", job=job.job_id, reason=job.reason, error=str(error))
                continue
            log_event("job quarantined", job=job.job_id, reason=job.reason, folder=str(folder))
        for record in records:
            folder = self.spool.job_dir(record.job_id)
            if not (folder / "input").exists():
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if record.state not in TERMINAL:
                self.task(record.job_id)
                log_event("job recovered", job=record.job_id, state=record.state)

    def _schedule(self) -> None:
        while not self._stopping.is_set():
            for study_uid in self.tracker.stable(self.config.stable_seconds):
                try:
                    self.promote(study_uid)
                except Exception as error:  # noqa: BLE001 - keep scheduling other studies
                    log_event("promote failed", study=study_uid, error=str(error))
            self._stopping.wait(SCHEDULER_INTERVAL)

    def promote(self, study_uid: str) -> str | None:
        """Turn a stable study into a job: record, move its instances, hand it to the queue."""
        with self.tracker.study_lock(study_uid):
            if not self.tracker.is_stable(study_uid, self.config.stable_seconds):
                return None
            activity = self.tracker.forget(study_uid)
            if not (self.spool.incoming / study_uid).exists():
                return None
            job_id = self.spool.new_job_id()
            self.store.create(study_uid, job_id, activity.instances if activity else 0)
            self.spool.move_study_to_job(study_uid, job_id)
        self.task(job_id)
        self.metrics.inc("medcam_jobs_created_total", help="stable studies handed to the workers")
        log_event("job created", job=job_id, study=study_uid, instances=activity.instances if activity else None)
        return job_id

    # ------------------------------------------------------------------ reporting
    def health(self) -> dict[str, Any]:
        """Jobs by state, unreadable and quarantined jobs (each logged once), queue, studies arriving."""
        records, unreadable = self.store.scan()
        states = {state: 0 for state in STATES}
        for record in records:
            states[record.state] = states.get(record.state, 0) + 1
        for job in unreadable:
            if job.job_id not in self._reported_unreadable:
                self._reported_unreadable.add(job.job_id)
                log_event("job record unreadable", job=job.job_id, reason=job.reason,
                          action="quarantined at the next start; its study is kept")
        return {"status": "stopping" if self._stopping.is_set() else "ok", "jobs": states,
                "unreadable_jobs": len(unreadable), "quarantined_jobs": len(self.store.quarantined()),
                "studies_arriving": self.tracker.receiving(), "queue_length": self.queue.pending_count(),
                "time": time.time()}

    def render_metrics(self) -> str:
        health = self.health()
        for state, count in health["jobs"].items():
            self.metrics.set("medcam_jobs", count, labels={"state": state}, help="jobs in the spool by state")
        self.metrics.set("medcam_jobs_unreadable", health["unreadable_jobs"],
                         help="jobs whose record cannot be read (moved to the quarantine at the next start)")
        self.metrics.set("medcam_jobs_quarantined", health["quarantined_jobs"],
                         help="jobs in the spool's quarantine folder, waiting for an operator")
        self.metrics.set("medcam_queue_length", health["queue_length"], help="tasks waiting in the queue")
        self.metrics.set("medcam_studies_arriving", health["studies_arriving"], help="studies not yet stable")
        return self.metrics.render()
