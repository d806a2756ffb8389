"""The spool: every received instance and every job lives here, written durably.

Layout (every path component is a validated UID or a job id, never raw tag text)::

    incoming/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm   received, study not yet stable
    jobs/<job id>/job.json                                  the job record
    jobs/<job id>/input/<SeriesUID>/<SOPInstanceUID>.dcm    the study's instances, moved from incoming/
    jobs/<job id>/results/<StudyUID>/<SeriesUID>/*.dcm      SEG / SC / SR to send
    jobs/<job id>/sent.txt                                  SOP Instance UIDs the destination accepted
    quarantine/<job id>/                                    a job whose record was unreadable, moved whole
    quarantine/<job id>/reason.txt                          why
    queue.db                                                the embedded task queue (SQLite)
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from medcam_dicom.dicom.read import is_valid_uid
from medcam_dicom.durable import fsync_directory

JOB_ID = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$")


class SpoolError(ValueError):
    """A value that must not become part of a spool path."""


def checked_uid(value: object, name: str) -> str:
    """``value`` as a UID safe to use as a path component, else :class:`SpoolError` naming the attribute."""
    text = None if value is None else str(value)
    if not is_valid_uid(text):
        raise SpoolError(f"{name} is missing or not a valid UID: {value!r}")
    return text


class Spool:
    """Paths and durable operations on the spool folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.incoming = self.root / "incoming"
        self.jobs = self.root / "jobs"
        self.quarantine = self.root / "quarantine"
        for folder in (self.incoming, self.jobs, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)
        self.remove_temporary_files()

    def remove_temporary_files(self) -> None:
        """Temporary files of writes interrupted by a crash were never acknowledged: remove them."""
        for temporary in self.incoming.rglob(".*.tmp"):
            temporary.unlink(missing_ok=True)

    def instance_path(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> Path:
        """Where a received instance is stored (UIDs validated here)."""
        study = checked_uid(study_uid, "StudyInstanceUID")
        series = checked_uid(series_uid, "SeriesInstanceUID")
        return self.incoming / study / series / f"{checked_uid(sop_instance_uid, 'SOPInstanceUID')}.dcm"

    def incoming_studies(self) -> list[str]:
        """Study UIDs with received instances not yet handed to a job."""
        return sorted(p.name for p in self.incoming.iterdir() if p.is_dir() and is_valid_uid(p.name))

    def new_job_id(self) -> str:
        return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise SpoolError(f"not a job id: {job_id!r}")
        return self.jobs / job_id

    def job_ids(self) -> list[str]:
        return sorted(p.name for p in self.jobs.iterdir() if p.is_dir() and JOB_ID.match(p.name))

    def move_study_to_job(self, study_uid: str, job_id: str) -> Path:
        """Atomically move a stable study's instances into a new job folder; returns the job's input folder."""
        source = self.incoming / checked_uid(study_uid, "StudyInstanceUID")
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(source, folder / "input")
        fsync_directory(folder)
        fsync_directory(self.incoming)
        return folder / "input"
