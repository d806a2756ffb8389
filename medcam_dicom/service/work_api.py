"""The payload channel between the serve node and workers on other machines: HTTP(S) on the serve node.

A worker holding a lease (see :mod:`medcam_dicom.service.leases`) downloads the job's study from here,
uploads the results, and reports each state change; the serve node keeps the durable job record, as it
does for its own workers. Every request carries ``Authorization: Bearer <token>`` (one of the serve node's
``worker_tokens``; others get 401 and are logged), and every request about a job carries the worker's lease
token in ``X-Medcam-Lease``, checked against Redis (409 when the lease is no longer the worker's). With
``tls_certificate``/``tls_key`` the channel is HTTPS, and with ``tls_ca`` a worker must also present a client
certificate signed by that CA.

Routes (``<job>`` is a job id)::

    POST /v1/jobs/<job>/start     count the lease, return the record and the results already sent
    GET  /v1/jobs/<job>/study     the study's instances (tar)
    GET  /v1/jobs/<job>/results   the results written so far (tar)
    PUT  /v1/jobs/<job>/results   store the results (tar of the worker's results/ folder)
    PUT  /v1/jobs/<job>/record    state change: state, series, results, errors, attempts, explained_seconds
    POST /v1/jobs/<job>/sent      one SOP Instance UID the destination accepted
"""

from __future__ import annotations

import hmac
import io
import json
import os
import re
import shutil
import ssl
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from medcam_dicom.durable import fsync_directory
from medcam_dicom.service.jobs import STATES, TERMINAL, JobRecord, JobRecordError, JobStore
from medcam_dicom.service.leases import LeaseQueue, QueueUnavailable
from medcam_dicom.service.logs import log_event
from medcam_dicom.service.metrics import Metrics
from medcam_dicom.service.spool import JOB_ID

ROUTE = re.compile(r"^/v1/jobs/(?P<job>[^/]+)/(?P<what>start|study|results|record|sent)$")
WORKER_FIELDS = ("state", "series", "results", "errors", "attempts", "explained_seconds")
MAX_RESULTS_BYTES = 512 * 1024**2


class WorkApiError(RuntimeError):
    """The serve node refused a request or could not be reached (the message says which and why)."""


class LeaseLost(WorkApiError):
    """The serve node says this worker no longer holds the job's lease: stop working on it."""


def pack_folder(folder: Path, target: io.BufferedIOBase) -> None:
    """Write every regular file under ``folder`` to ``target`` as an uncompressed tar (paths relative)."""
    with tarfile.open(fileobj=target, mode="w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)


def unpack_folder(source: io.BufferedIOBase, folder: Path) -> int:
    """Extract a tar of regular files into ``folder`` (absolute paths, ``..``, links refused). Returns the
    number of files."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(fileobj=source, mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                raise ValueError(f"tar member {member.name!r} is not a regular file")
            if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
                raise ValueError(f"tar member {member.name!r} points outside the folder")
            archive.extract(member, folder, filter="data")
            count += 1
    return count


class WorkApi:
    """The serve node's side of the channel; ``start()`` serves it in a daemon thread."""

    def __init__(self, store: JobStore, leases: LeaseQueue, tokens: tuple[str, ...], metrics: Metrics,
                 max_leases: int = 5, on_state: Callable[[JobRecord, str], None] | None = None) -> None:
        self.store = store
        self.leases = leases
        self.tokens = tuple(tokens)
        self.metrics = metrics
        self.max_leases = max_leases
        self.on_state = on_state
        self.server: ThreadingHTTPServer | None = None
        self._record_lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return self.server.server_address[:2]

    def authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        offered = header[len("Bearer "):].encode()
        return any(hmac.compare_digest(offered, token.encode()) for token in self.tokens)

    # ------------------------------------------------------------------ the routes
    def start_job(self, job_id: str, worker: str) -> dict[str, Any]:
        """Count a new lease on the job. Leases that ended with a failed sending attempt (the worker put the
        job back with a backoff: ``attempts``) are accounted for; a job whose other leases number more than
        ``max_leases`` (its workers died or lost it each time: a study that kills workers, say) is failed
        instead of handed out again."""
        with self._record_lock:
            record = self.store.load(job_id)
            if record.state not in TERMINAL:
                record.leases += 1
                record.worker = worker
                lost = record.leases - record.attempts  # this lease included
                if lost > 1:
                    self.metrics.inc("medcam_jobs_released_total", help="jobs leased again after a lease expired")
                if lost > self.max_leases:
                    record.errors.append(f"given up after {self.max_leases} leases: each worker died or lost it")
                    record.state = "failed"
                    self.store.save(record)
                    self._changed(record, "failed")
                else:
                    self.store.save(record)
        return {"record": record.summary(), "sent": sorted(self.store.sent(job_id))}

    def update_record(self, job_id: str, fields: dict[str, Any], worker: str) -> dict[str, Any]:
        unknown = set(fields) - set(WORKER_FIELDS)
        if unknown or fields.get("state", "running") not in STATES:
            raise ValueError(f"not a record update: {sorted(unknown) or fields.get('state')}")
        with self._record_lock:
            record = self.store.load(job_id)
            if record.state in TERMINAL:
                raise LeaseLost(f"job {job_id} is already {record.state}")
            for name, value in fields.items():
                setattr(record, name, value)
            record.worker = worker
            if record.state == "delivered":
                record.delivered_at = time.time()
            self.store.save(record)
        if "state" in fields:
            self._changed(record, record.state)
        return record.summary()

    def _changed(self, record: JobRecord, state: str) -> None:
        if self.on_state is not None:
            self.on_state(record, state)

    def store_results(self, job_id: str, body: io.BufferedIOBase) -> int:
        folder = self.store.spool.job_dir(job_id)
        staging = folder / ".results.incoming"
        shutil.rmtree(staging, ignore_errors=True)
        count = unpack_folder(body, staging)
        for path in staging.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        shutil.rmtree(folder / "results", ignore_errors=True)
        staging.rename(folder / "results")
        fsync_directory(folder)
        return count

    # ------------------------------------------------------------------ the server
    def start(self, bind: str, port: int, tls: ssl.SSLContext | None = None) -> WorkApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, code: int, body: bytes = b"", kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, code: int, message: str) -> None:
                self._reply(code, json.dumps({"error": message}).encode())

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self, method: str) -> None:
                peer = self.client_address[0]
                if not api.authorised(self.headers.get("Authorization")):
                    api.metrics.inc("medcam_workers_refused_total", help="payload requests without a worker token")
                    log_event("worker refused", peer=peer, path=self.path, reason="no valid worker token")
                    self.close_connection = True  # its body is never read
                    self._error(401, "not a configured worker (Authorization: Bearer <worker token>)")
                    return
                match = ROUTE.match(self.path)
                allowed = {"POST": ("start", "sent"), "GET": ("study", "results"), "PUT": ("results", "record")}
                if not match or not JOB_ID.match(match["job"]) or match["what"] not in allowed[method]:
                    self.close_connection = True
                    self._error(404, f"no route {method} {self.path}")
                    return
                job, what = match["job"], match["what"]
                worker = self.headers.get("X-Medcam-Worker", peer)[:200]
                try:
                    if not api.leases.holds(job, self.headers.get("X-Medcam-Lease", "")):
                        self.close_connection = True
                        self._error(409, f"job {job}: this worker does not hold its lease")
                        return
                    if what in ("study", "results") and method == "GET":
                        self._send_folder(api.store.spool.job_dir(job) / ("input" if what == "study" else what))
                    elif what == "results":
                        length = int(self.headers.get("Content-Length") or 0)
                        if length > MAX_RESULTS_BYTES:
                            self._error(413, f"results of {length} bytes exceed {MAX_RESULTS_BYTES}")
                            return
                        count = api.store_results(job, io.BytesIO(self.rfile.read(length)))
                        self._reply(200, json.dumps({"files": count}).encode())
                    elif what == "start":
                        self._body()
                        self._reply(200, json.dumps(api.start_job(job, worker)).encode())
                    elif what == "record":
                        fields = json.loads(self._body())
                        self._reply(200, json.dumps(api.update_record(job, fields, worker)).encode())
                    else:  # sent
                        uid = self._body().decode("ascii").strip()
                        if not re.fullmatch(r"[0-9.]{1,64}", uid):
                            self._error(400, f"not a SOP Instance UID: {uid!r}")
                            return
                        api.store.mark_sent(job, uid)
                        self._reply(200, b"{}")
                except LeaseLost as error:
                    self._error(409, str(error))
                except KeyError:
                    self._error(404, f"no job {job}")
                except QueueUnavailable as error:
                    self._error(503, str(error))
                except (JobRecordError, ValueError, tarfile.TarError, json.JSONDecodeError) as error:
                    self._error(400, f"job {job}: {error}")

            def _send_folder(self, folder: Path) -> None:
                if not folder.is_dir():
                    self._error(404, f"{folder.name}/ is not in the job")
                    return
                with tempfile.TemporaryFile() as archive:
                    pack_folder(folder, archive)
                    size = archive.tell()
                    archive.seek(0)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-tar")
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    shutil.copyfileobj(archive, self.wfile, 1024 * 1024)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._route("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._route("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._route("PUT")

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer((bind, port), Handler)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        self.server = server
        threading.Thread(target=server.serve_forever, name="medcam-work-api", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def server_tls(certificate: Path | None, key: Path | None, client_ca: Path | None) -> ssl.SSLContext | None:
    """HTTPS for the channel when a certificate is configured; client certificates required with ``client_ca``."""
    if certificate is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate), str(key))
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_tls(ca: Path | None, certificate: Path | None, key: Path | None) -> ssl.SSLContext:
    """A worker's TLS: trust ``ca`` (else the system's CAs), present ``certificate`` when given."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if certificate is not None:
        context.load_cert_chain(str(certificate), str(key))
    return context


class WorkApiClient:
    """A worker's side of the channel. Requests that cannot reach the serve node (restarting, network) are
    retried for ``retry_seconds``; refusals are raised at once (:class:`LeaseLost` for 409)."""

    def __init__(self, base_url: str, token: str, worker: str, tls: ssl.SSLContext | None = None,
                 retry_seconds: float = 60.0, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.worker = worker
        self.tls = tls
        self.retry_seconds = retry_seconds
        self.timeout = timeout

    def _request(self, method: str, job_id: str, what: str, lease: str, body: bytes | None = None,
                 stream_to: Callable[[io.BufferedIOBase], Any] | None = None) -> Any:
        url = f"{self.base_url}/v1/jobs/{job_id}/{what}"
        headers = {"Authorization": f"Bearer {self.token}", "X-Medcam-Lease": lease, "X-Medcam-Worker": self.worker}
        deadline = time.monotonic() + self.retry_seconds
        while True:
            request = urllib.request.Request(url, data=body if body is not None else b"" if method != "GET" else None,
                                             method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=self.tls) as response:
                    if stream_to is not None:
                        expected = int(response.headers.get("Content-Length") or -1)
                        counted = _CountingReader(response)
                        result = stream_to(counted)
                        while counted.read(1024 * 1024):  # the tar's end padding
                            pass
                        if expected >= 0 and counted.count != expected:
                            raise WorkApiError(f"{method} {url}: {counted.count} of {expected} bytes arrived")
                        return result
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as error:
                try:
                    message = json.loads(error.read()).get("error", str(error))
                except (ValueError, OSError):
                    message = str(error)
                if error.code == 409:
                    raise LeaseLost(message) from None
                if error.code == 503 and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                raise WorkApiError(f"{method} {url}: HTTP {error.code}: {message}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                if time.monotonic() >= deadline:
                    raise WorkApiError(f"{method} {url}: serve node unreachable: {error}") from error
                time.sleep(1.0)

    def start(self, job_id: str, lease: str) -> tuple[JobRecord, set[str]]:
        reply = self._request("POST", job_id, "start", lease)
        return JobRecord(**reply["record"]), set(reply["sent"])

    def download(self, job_id: str, lease: str, what: str, folder: Path) -> int:
        """Fetch the job's ``study`` or ``results`` into ``folder`` (emptied first); returns the file count."""

        def unpack(stream: io.BufferedIOBase) -> int:
            shutil.rmtree(folder, ignore_errors=True)
            return unpack_folder(stream, folder)

        return self._request("GET", job_id, what, lease, stream_to=unpack)

    def upload_results(self, job_id: str, lease: str, folder: Path) -> int:
        buffer = io.BytesIO()
        pack_folder(folder, buffer)
        return self._request("PUT", job_id, "results", lease, body=buffer.getvalue())["files"]

    def update(self, job_id: str, lease: str, **fields: Any) -> JobRecord:
        return JobRecord(**self._request("PUT", job_id, "record", lease, body=json.dumps(fields).encode()))

    def mark_sent(self, job_id: str, lease: str, sop_instance_uid: str) -> None:
        self._request("POST", job_id, "sent", lease, body=sop_instance_uid.encode())


class _CountingReader(io.RawIOBase):
    """Counts the bytes read through it, so a truncated download is noticed."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        self.count += len(data)
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        return data
