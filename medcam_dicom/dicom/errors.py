"""Errors the DICOM layer raises: each names the file (and where useful the tag) that caused it."""

from __future__ import annotations

from pathlib import Path


class DicomInputError(ValueError):
    """An input file or series that cannot be explained. ``str(error)`` is a message for the user."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class NotAnImageError(DicomInputError):
    """A valid DICOM object that carries no image to explain (SR, PR, KO, RT, SEG, ...); skipped, not failed."""
