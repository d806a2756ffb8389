"""Durable writes shared by the DICOM results and the service's spool: a file is written under a temporary
name, fsynced and renamed into place, and the folder is fsynced so that the rename survives a crash."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def fsync_directory(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_durably(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary name, fsync it, rename it to ``path`` and fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
