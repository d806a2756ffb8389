"""Which studies are still arriving. DICOM has no "study complete" message: a study is stable once no open
association has touched it for ``stable_seconds`` after the last one ended (Orthanc's StableAge)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from medcam_dicom.service.spool import Spool


@dataclass
class StudyActivity:
    """Receiving state of one study."""

    open_associations: set[int] = field(default_factory=set)
    last_activity: float = field(default_factory=time.monotonic)
    bytes: int = 0
    instances: int = 0


class StudyTracker:
    """Thread-safe bookkeeping shared by the SCP's event handlers and the scheduler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._studies: dict[str, StudyActivity] = {}
        self._study_locks: dict[str, threading.Lock] = {}

    def study_lock(self, study_uid: str) -> threading.Lock:
        """Held while an instance of the study is written and while the study is handed to a job."""
        with self._lock:
            return self._study_locks.setdefault(study_uid, threading.Lock())

    def restore(self, spool: Spool) -> None:
        """Studies left in ``incoming/`` by a previous run count as released now."""
        for study_uid in spool.incoming_studies():
            files = [p for p in (spool.incoming / study_uid).rglob("*.dcm")]
            with self._lock:
                self._studies[study_uid] = StudyActivity(bytes=sum(p.stat().st_size for p in files),
                                                          instances=len(files))

    def study_bytes(self, study_uid: str) -> int:
        with self._lock:
            activity = self._studies.get(study_uid)
            return activity.bytes if activity else 0

    def received(self, study_uid: str, association: int, size: int) -> None:
        with self._lock:
            activity = self._studies.setdefault(study_uid, StudyActivity())
            activity.open_associations.add(association)
            activity.last_activity = time.monotonic()
            activity.bytes += size
            activity.instances += 1

    def association_ended(self, association: int) -> None:
        with self._lock:
            for activity in self._studies.values():
                if association in activity.open_associations:
                    activity.open_associations.discard(association)
                    activity.last_activity = time.monotonic()

    def stable(self, stable_seconds: float) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [uid for uid, a in self._studies.items()
                    if not a.open_associations and now - a.last_activity >= stable_seconds]

    def is_stable(self, study_uid: str, stable_seconds: float) -> bool:
        return study_uid in self.stable(stable_seconds)

    def forget(self, study_uid: str) -> StudyActivity | None:
        with self._lock:
            return self._studies.pop(study_uid, None)

    def receiving(self) -> int:
        with self._lock:
            return len(self._studies)
