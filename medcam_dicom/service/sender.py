"""Sending results to the destination by C-STORE, checking every status."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import (
    Comprehensive3DSRStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)

from medcam_dicom.service.config import Destination

RESULT_SOP_CLASSES = (SegmentationStorage, SecondaryCaptureImageStorage, Comprehensive3DSRStorage)
TRANSFER_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR little endian


class SendError(RuntimeError):
    """Results could not all be delivered (association refused, network error, failure status)."""


def send_files(
    files: Sequence[Path],
    destination: Destination,
    calling_ae: str,
    already_sent: set[str],
    on_sent: Callable[[str], None],
    timeout: float = 30.0,
) -> int:
    """C-STORE every file whose SOP Instance UID is not in ``already_sent``; ``on_sent(uid)`` is called after
    each success status (0x0000, or a warning 0xB0xx: stored with coercion). Returns how many were sent.
    Raises :class:`SendError` at the first failure; what was sent before stays recorded."""
    pending = []
    for path in files:
        dataset = pydicom.dcmread(path)
        if str(dataset.SOPInstanceUID) not in already_sent:
            pending.append(dataset)
    if not pending:
        return 0
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in RESULT_SOP_CLASSES:
        ae.add_requested_context(sop_class, TRANSFER_SYNTAXES)
    try:
        association = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    except (OSError, RuntimeError) as error:
        raise SendError(f"cannot reach {destination}: {error}") from error
    if association.is_rejected:
        raise SendError(f"{destination} rejected the association (check its AE title and allow-list)")
    if not association.is_established:
        raise SendError(f"cannot reach {destination} (connection refused, closed or timed out)")
    sent = 0
    try:
        for dataset in pending:
            uid = str(dataset.SOPInstanceUID)
            try:
                status = association.send_c_store(dataset)
            except (ValueError, RuntimeError) as error:
                raise SendError(f"C-STORE of {uid} to {destination}: {error}") from error
            code = int(status.Status) if status and "Status" in status else None
            if code is None:
                raise SendError(f"C-STORE of {uid} to {destination}: no response (connection lost or timed out)")
            if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:
                raise SendError(f"C-STORE of {uid} to {destination}: failure status 0x{code:04X}")
            on_sent(uid)
            sent += 1
    finally:
        if association.is_established:
            association.release()
    return sent
