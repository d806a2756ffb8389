"""What ``medcam-dicom status`` reports: jobs by state, queue length, studies still arriving, last errors,
jobs whose record cannot be read (still in ``jobs/`` or already moved to ``quarantine/``), and with a Redis
queue which worker holds which job since when, and the workers heard from."""

from __future__ import annotations

from collections import Counter
from typing import Any

from medcam_dicom.service.config import ServiceConfig
from medcam_dicom.service.jobs import STATES, JobStore
from medcam_dicom.service.spool import Spool


def service_status(config: ServiceConfig, last_errors: int = 5) -> dict[str, Any]:
    """A JSON-serialisable summary of the spool (works while the service runs or is stopped)."""
    if not (config.spool / "jobs").is_dir():
        raise ValueError(f"{config.spool} is not a medcam-dicom spool (no jobs/ folder)")
    spool = Spool(config.spool)
    store = JobStore(spool)
    records, unreadable = store.scan()
    states = Counter(record.state for record in records)
    failed = sorted((r for r in records if r.errors), key=lambda r: r.updated, reverse=True)[:last_errors]
    queue_length, leases, workers, queue_error = None, [], {}, None
    if config.queue_url == "sqlite" and (spool.root / "queue.db").exists():
        from medcam_dicom.service.worker import make_queue

        queue_length = make_queue(config).pending_count()
    elif config.queue_url != "sqlite":
        from medcam_dicom.service.leases import LeaseQueue, QueueUnavailable

        try:
            queue = LeaseQueue(config.queue_url, config.lease_seconds)
            queue_length, workers = queue.pending_count(), queue.workers()
            leases = [{"job": job, "worker": held["worker"], "since": held["since"]}
                      for job, held in sorted(queue.holders().items())]
        except QueueUnavailable as error:
            queue_error = str(error)
    return {
        "spool": str(spool.root),
        "jobs": {state: states.get(state, 0) for state in STATES},
        "queue_length": queue_length,
        "studies_arriving": len(spool.incoming_studies()),
        "leases": leases,
        "workers_seen": workers,
        "queue_error": queue_error,
        "last_errors": [{"job": r.job_id, "state": r.state, "study": r.study_uid, "error": r.errors[-1]}
                        for r in failed],
        "unreadable_jobs": [{"job": j.job_id, "folder": str(spool.job_dir(j.job_id)), "reason": j.reason}
                            for j in unreadable]
        + [{"job": j.job_id, "folder": str(spool.quarantine / j.job_id), "reason": j.reason}
           for j in store.quarantined()],
    }
