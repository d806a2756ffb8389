"""Structured logs: one JSON object per line (``event`` plus fields), to stderr."""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER = logging.getLogger("medcam_dicom.service")


class JsonFormatter(logging.Formatter):
    """Formats records as JSON; ``extra={"fields": {...}}`` adds fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "event": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the service's, pynetdicom's (warnings) and huey's (warnings) logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("pynetdicom", "huey", "highdicom", "medcam_dicom.dicom.pipeline"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_event(event: str, level: int = logging.INFO, **fields: object) -> None:
    """One structured line, e.g. ``log_event("association", calling_ae="CT1", instances=20)``."""
    LOGGER.log(level, event, extra={"fields": fields})
