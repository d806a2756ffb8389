"""Content digests of model files: cached by path, size and modification time, order-independent."""

from __future__ import annotations

import os

from medcam_dicom.models.fingerprint import file_digest, model_fingerprint


def test_a_digest_is_read_once_per_change_of_size_or_modification_time(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights A")
    first = file_digest(path)
    stamp = path.stat().st_mtime_ns
    path.write_bytes(b"weights B")  # same size; put the old time back: the cache answers
    os.utime(path, ns=(stamp, stamp))
    assert file_digest(path) == first
    os.utime(path, ns=(stamp + 1_000_000, stamp + 1_000_000))  # a new modification time: read again
    assert file_digest(path) != first
    path.write_bytes(b"weights A")
    assert file_digest(path) == first


def test_the_model_fingerprint_depends_on_settings_and_content_not_on_order(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"classifier")
    b.write_bytes(b"explainer")
    assert model_fingerprint("s", [a, b]) == model_fingerprint("s", [b, a])
    assert model_fingerprint("s", [a, b]) != model_fingerprint("t", [a, b])
    assert model_fingerprint("s", [a]) != model_fingerprint("s", [a, b])
