"""The storage SCP: pynetdicom event handlers that receive, persist durably and only then acknowledge.

Every storage SOP class is accepted with every transfer syntax. Nothing heavy happens here: a received
instance is written (temporary file, fsync, atomic rename, folder fsync) under a path built from its
validated UIDs, the study's activity is recorded, and the status is returned.
"""

from __future__ import annotations

import io
import ssl
import threading
import time
from dataclasses import dataclass, field

import pydicom
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from medcam_dicom.durable import write_durably
from medcam_dicom.service.config import ServiceConfig
from medcam_dicom.service.logs import log_event
from medcam_dicom.service.metrics import Metrics
from medcam_dicom.service.spool import Spool, SpoolError
from medcam_dicom.service.tracker import StudyTracker

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210


@dataclass
class AssociationLog:
    """What one association did, logged as one line when it ends."""

    calling_ae: str
    address: str
    started: float = field(default_factory=time.perf_counter)
    instances: int = 0
    bytes: int = 0
    failures: int = 0
    studies: set[str] = field(default_factory=set)


def server_tls_context(config: ServiceConfig) -> ssl.SSLContext | None:
    """TLS for the SCP; with ``tls_ca`` clients must present a certificate signed by that CA."""
    if not config.tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_certificate), str(config.tls_key))
    if config.tls_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(config.tls_ca))
    return context


class StorageSCP:
    """Receives instances into the spool; see the module docstring."""

    def __init__(self, config: ServiceConfig, spool: Spool, tracker: StudyTracker, metrics: Metrics) -> None:
        self.config = config
        self.spool = spool
        self.tracker = tracker
        self.metrics = metrics
        self.ae = AE(ae_title=config.ae_title)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        self.ae.require_calling_aet = list(config.allow)
        self.ae.require_called_aet = True
        self.ae.maximum_associations = config.max_associations
        self.ae.maximum_pdu_size = 0  # accept PDUs of any size: fewer, larger PDUs receive faster
        self._associations: dict[int, AssociationLog] = {}
        self._lock = threading.Lock()
        self.server = None

    def handlers(self) -> list:
        return [(evt.EVT_C_ECHO, self.on_echo), (evt.EVT_C_STORE, self.on_store),
                (evt.EVT_REQUESTED, self.on_requested), (evt.EVT_ACCEPTED, self.on_accepted),
                (evt.EVT_REJECTED, self.on_rejected), (evt.EVT_CONN_CLOSE, self.on_closed)]

    def start(self) -> None:
        """Listen on ``bind:port`` in background threads."""
        self.server = self.ae.start_server((self.config.bind, self.config.port), block=False,
                                           evt_handlers=self.handlers(), ssl_context=server_tls_context(self.config))

    def stop(self) -> None:
        """Stop accepting; open associations are closed."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    # ------------------------------------------------------------------ event handlers
    def on_requested(self, event: evt.Event) -> None:
        address = str(event.assoc.requestor.address)
        if self.config.allow_hosts and address not in self.config.allow_hosts:
            log_event("association refused", reason="host not allowed", address=address,
                      calling_ae=event.assoc.requestor.ae_title)
            self.metrics.inc("medcam_associations_total", labels={"result": "refused"}, help="associations")
            event.assoc.abort()

    def on_accepted(self, event: evt.Event) -> None:
        with self._lock:
            self._associations[id(event.assoc)] = AssociationLog(str(event.assoc.requestor.ae_title),
                                                                 f"{event.assoc.requestor.address}")
        self.metrics.inc("medcam_associations_total", labels={"result": "accepted"}, help="associations")

    def on_rejected(self, event: evt.Event) -> None:
        log_event("association refused", reason="rejected (calling or called AE title, or limits)",
                  calling_ae=str(event.assoc.requestor.ae_title), address=str(event.assoc.requestor.address))
        self.metrics.inc("medcam_associations_total", labels={"result": "rejected"}, help="associations")

    def on_closed(self, event: evt.Event) -> None:
        association = id(event.assoc)
        self.tracker.association_ended(association)
        with self._lock:
            entry = self._associations.pop(association, None)
        if entry is not None:
            log_event("association", calling_ae=entry.calling_ae, address=entry.address, instances=entry.instances,
                      bytes=entry.bytes, failures=entry.failures, studies=sorted(entry.studies),
                      seconds=round(time.perf_counter() - entry.started, 3))

    def on_echo(self, event: evt.Event) -> int:
        return SUCCESS

    def _fail(self, event: evt.Event, status: int, reason: str) -> int:
        with self._lock:
            entry = self._associations.get(id(event.assoc))
            if entry is not None:
                entry.failures += 1
        log_event("c-store refused", status=f"0x{status:04X}", reason=reason,
                  calling_ae=str(event.assoc.requestor.ae_title))
        self.metrics.inc("medcam_store_failures_total", help="C-STORE requests answered with a failure")
        return status

    def on_store(self, event: evt.Event) -> int:
        """Persist the instance durably, then acknowledge."""
        started = time.perf_counter()
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as error:  # noqa: BLE001 - malformed requests raise many types
            return self._fail(event, CANNOT_UNDERSTAND, f"cannot encode the received dataset: {error}")
        if len(data) > self.config.max_instance_bytes:
            return self._fail(event, OUT_OF_RESOURCES, f"dataset of {len(data)} bytes exceeds max_instance_bytes")
        try:
            header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True,
                                     specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
            study, series = header.get("StudyInstanceUID"), header.get("SeriesInstanceUID")
            sop = header.get("SOPInstanceUID") or event.request.AffectedSOPInstanceUID
        except Exception as error:  # noqa: BLE001 - a malformed dataset
            return self._fail(event, CANNOT_UNDERSTAND, f"dataset cannot be decoded: {error}")
        try:
            path = self.spool.instance_path(study, series, sop)
        except SpoolError as error:
            return self._fail(event, DATASET_DOES_NOT_MATCH, str(error))
        with self.tracker.study_lock(str(study)):
            if self.tracker.study_bytes(str(study)) + len(data) > self.config.max_study_bytes:
                return self._fail(event, OUT_OF_RESOURCES, f"study {study} would exceed max_study_bytes")
            try:
                write_durably(path, data)
            except OSError as error:
                return self._fail(event, OUT_OF_RESOURCES, f"cannot store: {error}")
            self.tracker.received(str(study), id(event.assoc), len(data))
        with self._lock:
            entry = self._associations.get(id(event.assoc))
            if entry is not None:
                entry.instances += 1
                entry.bytes += len(data)
                entry.studies.add(str(study))
        self.metrics.inc("medcam_instances_received_total", help="instances stored")
        self.metrics.inc("medcam_bytes_received_total", len(data), help="bytes stored")
        self.metrics.observe("medcam_store_seconds", time.perf_counter() - started, help="receiving one instance")
        return SUCCESS
