"""Job records: one JSON file per study handed to the workers, rewritten durably at every state change.

States: ``queued`` -> ``running`` -> ``sending`` -> ``delivered``; ``failed`` after the last retry (results
kept; ``medcam-dicom resend JOB`` sends them again). ``delivered`` also covers "nothing to send".

A record that cannot be read (corrupted on disk, edited by hand) is never skipped in silence:
:meth:`JobStore.scan` returns it as an :class:`UnreadableJob`, the service reports it (log, ``status``,
``/metrics``) and :meth:`JobStore.quarantine` moves the whole job folder, study included, to
``spool/quarantine/`` at start, where it stays until an operator deals with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcam_dicom.durable import fsync_directory, write_durably
from medcam_dicom.service.spool import Spool

STATES = ("queued", "running", "sending", "delivered", "failed")
TERMINAL = ("delivered", "failed")
QUARANTINE_REASON = "reason.txt"


class JobRecordError(ValueError):
    """A job record that exists but cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class UnreadableJob:
    """A job folder whose record cannot be read, and why."""

    job_id: str
    reason: str


@dataclass
class JobRecord:
    """What is known about one job; ``series`` holds the per-series results of the explainer; ``leases``
    counts the times a remote worker took it (see :mod:`medcam_dicom.service.leases`), ``worker`` names the
    last one."""

    job_id: str
    study_uid: str
    state: str = "queued"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    attempts: int = 0
    instances: int = 0
    series: list[dict[str, Any]] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    explained_seconds: float | None = None
    delivered_at: float | None = None
    leases: int = 0
    worker: str | None = None

    def summary(self) -> dict[str, Any]:
        return asdict(self)


class JobStore:
    """Reads and writes job records in the spool."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def path(self, job_id: str) -> Path:
        return self.spool.job_dir(job_id) / "job.json"

    def save(self, record: JobRecord) -> None:
        record.updated = time.time()
        write_durably(self.path(record.job_id), json.dumps(record.summary(), indent=1).encode())

    def load(self, job_id: str) -> JobRecord:
        """The job's record; ``KeyError`` when there is none, :class:`JobRecordError` when it is unreadable."""
        path = self.path(job_id)
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise KeyError(f"no job {job_id}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise JobRecordError(f"{path}: not a readable job record ({error})") from error
        try:
            return JobRecord(**raw)
        except TypeError as error:
            raise JobRecordError(f"{path}: not a job record ({error})") from error

    def scan(self) -> tuple[list[JobRecord], list[UnreadableJob]]:
        """Every job folder in the spool: the records, and the folders whose record cannot be read.

        A folder with neither a record nor an input is a job being created (or one whose creation a crash
        cut short before anything was written) and is in neither list."""
        records, unreadable = [], []
        for job_id in self.spool.job_ids():
            try:
                records.append(self.load(job_id))
            except KeyError:
                if (self.spool.job_dir(job_id) / "input").exists():
                    unreadable.append(UnreadableJob(job_id, f"{self.path(job_id)} is missing"))
            except JobRecordError as error:
                unreadable.append(UnreadableJob(job_id, str(error)))
        return records, unreadable

    def quarantine(self, job: UnreadableJob) -> Path:
        """Move the job's folder (its study, results and what is left of its record) out of the way of the
        workers, into ``spool/quarantine/<job id>/``, with the reason beside it. Nothing is deleted."""
        folder = self.spool.job_dir(job.job_id)
        write_durably(folder / QUARANTINE_REASON, (job.reason + "\n").encode())
        target = self.spool.quarantine / job.job_id
        os.replace(folder, target)
        fsync_directory(self.spool.jobs)
        fsync_directory(self.spool.quarantine)
        return target

    def quarantined(self) -> list[UnreadableJob]:
        """Jobs moved to the quarantine folder, with the reason recorded when they were moved."""
        found = []
        for folder in sorted(p for p in self.spool.quarantine.iterdir() if p.is_dir()):
            reason = folder / QUARANTINE_REASON
            found.append(UnreadableJob(folder.name, reason.read_text().strip() if reason.exists() else "unknown"))
        return found

    def create(self, study_uid: str, job_id: str, instances: int) -> JobRecord:
        record = JobRecord(job_id=job_id, study_uid=study_uid, instances=instances)
        self.save(record)
        return record

    def sent(self, job_id: str) -> set[str]:
        """SOP Instance UIDs of results the destination has accepted."""
        path = self.spool.job_dir(job_id) / "sent.txt"
        if not path.exists():
            return set()
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}

    def mark_sent(self, job_id: str, sop_instance_uid: str) -> None:
        """Record one accepted result durably (append + fsync) before the next is sent."""
        path = self.spool.job_dir(job_id) / "sent.txt"
        with open(path, "a", encoding="ascii") as handle:
            handle.write(sop_instance_uid + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def reset_sent(self, job_id: str) -> None:
        path = self.spool.job_dir(job_id) / "sent.txt"
        path.unlink(missing_ok=True)
        fsync_directory(path.parent)

    @contextmanager
    def exclusive(self, job_id: str) -> Iterator[bool]:
        """Hold the job's lock while working on it; yields ``False`` when another worker holds it. The
        operating system drops the lock when its holder dies, so a crash never leaves a job locked."""
        path = self.spool.job_dir(job_id) / "lock"
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
