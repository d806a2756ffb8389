"""Content digests of the files a model is loaded from, for result UIDs.

Result UIDs derive from the source series and the model's fingerprint, so a PACS that receives the same
result twice keeps one copy. The fingerprint hashes the *content* of the weights (and of the bundle
config that builds the network), never only their names: retrained weights saved under the same file
name give new UIDs, the same weights copied elsewhere give the same ones. A file is read once per change:
digests are cached by resolved path, size and modification time.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path

_CACHE: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes (hex), cached by (resolved path, size, mtime in ns)."""
    path = Path(path).resolve()
    status = path.stat()
    key = (str(path), status.st_size, status.st_mtime_ns)
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _LOCK:
        _CACHE[key] = value
    return value


def model_fingerprint(settings_fingerprint: str, files: Iterable[str | Path]) -> str:
    """A short hash of the description's settings and the content of ``files`` (order-independent)."""
    identity = [settings_fingerprint, *sorted(file_digest(path) for path in files)]
    return hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
