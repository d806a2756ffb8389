"""``medcam-dicom serve``: the storage SCP, the scheduler that turns stable studies into jobs, the embedded
workers, and the health endpoint, with recovery at start and a graceful stop on SIGTERM.

Two queues: the embedded SQLite queue (huey; workers on this machine, on this spool) and Redis with leases
(workers anywhere, fetching studies over the payload channel; see :mod:`medcam_dicom.service.leases`). With
Redis the node also runs the reaper, which re-queues every unfinished job that nobody holds and nothing
queues (a worker died, Redis lost its data), from the job records on this node's disk."""

from __future__ import annotations

import secrets
import shutil
import signal
import threading
import time
from typing import Any

from medcam_dicom.service.config import ConfigError, ServiceConfig
from medcam_dicom.service.health import start_http
from medcam_dicom.service.jobs import STATES, TERMINAL, JobRecord, JobStore
from medcam_dicom.service.lease_worker import LeaseWorker
from medcam_dicom.service.leases import LeaseQueue, QueueUnavailable
from medcam_dicom.service.logs import log_event
from medcam_dicom.service.metrics import Metrics
from medcam_dicom.service.scp import StorageSCP
from medcam_dicom.service.spool import Spool
from medcam_dicom.service.tracker import StudyTracker
from medcam_dicom.service.work_api import WorkApi, WorkApiClient, server_tls
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
        self.runner = JobRunner(config, self.spool, self.metrics)
        self.leases: LeaseQueue | None = None
        self.queue = None
        if config.queue_url == "sqlite":
            self.queue = make_queue(config)
            self.task = register_task(self.queue, self.runner)
        else:
            self.leases = LeaseQueue(config.queue_url, config.lease_seconds)
        self.scp = StorageSCP(config, self.spool, self.tracker, self.metrics)
        self.consumer = None
        self.http = None
        self.apis: list[WorkApi] = []
        self._lease_workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._reported_unreadable: set[str] = set()
        self._scheduler = threading.Thread(target=self._schedule, name="medcam-scheduler", daemon=True)
        self._reaper = threading.Thread(target=self._reap, name="medcam-reaper", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.tracker.restore(self.spool)
        self.recover()
        threads = apply_thread_budget(self.config) if self.config.workers > 0 else None
        if self.leases is not None:
            self._start_lease_mode()
        elif self.config.workers > 0:
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
                  spool=str(self.spool.root), payload=[f"{a.address[0]}:{a.address[1]}" for a in self.apis])

    def _start_lease_mode(self) -> None:
        """The payload channel for remote workers (``payload_port``), a loopback one for this node's own
        workers (a token of this process), the embedded lease workers, and the reaper."""
        assert self.leases is not None
        config = self.config
        if config.payload_port:
            if not config.worker_tokens:
                raise ConfigError("payload_port needs worker_tokens (MEDCAM_WORKER_TOKENS): the workers allowed")
            tls = server_tls(config.tls_certificate, config.tls_key, config.tls_ca)
            self.apis.append(self._work_api(config.worker_tokens).start(config.bind, config.payload_port, tls))
        if config.workers > 0:
            token = secrets.token_hex(16)
            local = self._work_api((token,)).start("127.0.0.1", 0)
            self.apis.append(local)
            url = f"http://127.0.0.1:{local.address[1]}"
            name = config.worker_name or f"{config.ae_title}-embedded"
            runner = JobRunner(config, Spool(self.spool.root / "scratch"), self.metrics)
            for index in range(config.workers):
                worker = LeaseWorker(config, self.leases, WorkApiClient(url, token, f"{name}-{index}"), runner,
                                     f"{name}-{index}")
                thread = threading.Thread(target=worker.run, args=(self._stopping,), name=f"medcam-worker-{index}")
                thread.start()
                self._lease_workers.append(thread)
        self._reaper.start()

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
        for thread in self._lease_workers:
            thread.join()
        for api in self.apis:
            api.stop()
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
            if record.state not in TERMINAL and self.leases is None:  # with leases, the reaper decides
                self.task(record.job_id)
                log_event("job recovered", job=record.job_id, state=record.state)

    def hand_off(self, job_id: str) -> None:
        """Give a job to the workers. A Redis that cannot be reached is logged; the reaper re-queues the job
        from its record once Redis answers again."""
        if self.leases is None:
            self.task(job_id)
            return
        try:
            self.leases.enqueue(job_id)
        except QueueUnavailable as error:
            log_event("queue unavailable", job=job_id, error=str(error), action="the reaper re-queues it")

    def _reap(self) -> None:
        """Re-queue unfinished jobs that nobody holds and nothing queues (every third of a lease period)."""
        assert self.leases is not None
        interval = max(0.5, self.config.lease_seconds / 3)
        while not self._stopping.wait(interval):
            try:
                self.reap()
            except QueueUnavailable as error:
                log_event("queue unavailable", error=str(error), action="reaper retries")
            except Exception as error:  # noqa: BLE001 - the reaper must keep running
                log_event("reaper failed", error=f"{type(error).__name__}: {error}")

    def reap(self) -> list[str]:
        """One pass of the reaper; returns the jobs it re-queued."""
        assert self.leases is not None
        records, _ = self.store.scan()
        unfinished = {r.job_id: r for r in records if r.state not in TERMINAL
                      and (self.spool.job_dir(r.job_id) / "input").exists()}
        orphans = self.leases.orphans(sorted(unfinished))
        for job_id in orphans:
            record = unfinished[job_id]
            try:  # the record may have moved on since the scan (a worker finished just now)
                if self.store.load(job_id).state in TERMINAL:
                    continue
            except (KeyError, ValueError):
                continue
            reason = "lease expired" if record.leases else "not in the queue"
            if record.leases:
                self.metrics.inc("medcam_leases_expired_total", help="leases that ended without their job finished")
            else:
                self.metrics.inc("medcam_jobs_requeued_total", help="jobs lost from the queue and handed to it again")
            self.leases.enqueue(job_id)
            log_event("job re-queued", job=job_id, state=record.state, reason=reason, last_worker=record.worker)
        return orphans

    def job_changed(self, record: JobRecord, state: str) -> None:
        """A remote worker moved a job to ``state``: count and log it as the embedded workers do."""
        if state in TERMINAL:
            self.metrics.inc("medcam_jobs_total", labels={"state": state}, help="jobs by final state")
            log_event("job finished", job=record.job_id, study=record.study_uid, state=state, worker=record.worker,
                      results=len(record.results), errors=record.errors)
        if state == "delivered" and record.delivered_at:
            self.metrics.observe("medcam_job_seconds", record.delivered_at - record.created,
                                 help="job creation to delivery")

    def _work_api(self, tokens: tuple[str, ...]) -> WorkApi:
        assert self.leases is not None
        return WorkApi(self.store, self.leases, tokens, self.metrics, self.config.max_leases, self.job_changed)

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
        self.hand_off(job_id)
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
        health = {"status": "stopping" if self._stopping.is_set() else "ok", "jobs": states,
                  "unreadable_jobs": len(unreadable), "quarantined_jobs": len(self.store.quarantined()),
                  "studies_arriving": self.tracker.receiving(), "time": time.time()}
        if self.leases is None:
            health["queue_length"] = self.queue.pending_count()
            return health
        try:
            health.update(queue_length=self.leases.pending_count(), workers_seen=len(self.leases.workers()),
                          leases=self.leases.holders())
        except QueueUnavailable as error:
            health.update(queue_length=None, queue_error=str(error))
        return health

    def render_metrics(self) -> str:
        health = self.health()
        for state, count in health["jobs"].items():
            self.metrics.set("medcam_jobs", count, labels={"state": state}, help="jobs in the spool by state")
        self.metrics.set("medcam_jobs_unreadable", health["unreadable_jobs"],
                         help="jobs whose record cannot be read (moved to the quarantine at the next start)")
        self.metrics.set("medcam_jobs_quarantined", health["quarantined_jobs"],
                         help="jobs in the spool's quarantine folder, waiting for an operator")
        if health["queue_length"] is not None:
            self.metrics.set("medcam_queue_length", health["queue_length"], help="tasks waiting in the queue")
        if "workers_seen" in health:
            self.metrics.set("medcam_workers_seen", health["workers_seen"],
                             help="workers heard from within three lease periods")
            self.metrics.set("medcam_leases", len(health["leases"]), help="jobs a worker holds a lease on")
        self.metrics.set("medcam_studies_arriving", health["studies_arriving"], help="studies not yet stable")
        return self.metrics.render()
