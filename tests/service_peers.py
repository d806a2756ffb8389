"""Real peers for the service tests, all on 127.0.0.1 with free ports: the service as a subprocess, a
pynetdicom storage SCP as the PACS, and helpers for dcmtk and pynetdicom SCUs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

FAST_MODELS = """\
classifier: {demo: %s}
mode: 2d
input: {size: [128, 128], channels: %d, intensity: %s}
applies_to: %s
medcam: {max_steps: 3, min_steps: 1}
"""


def wait_until(condition, timeout: float = 120.0, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy (returned), else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_fast_models(folder: Path) -> list[Path]:
    """Model descriptions like the demo defaults but with 3 Med-CAM steps (the tests check plumbing)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [("fast-ct", "ct", 1, "{window: [40, 400]}", "{modality: [CT], colour: false}"),
             ("fast-colour", "fundus", 3, "{range: [0, 255]}", "{colour: true}"),
             ("fast-any", "ct", 1, "{percentiles: [1, 99]}", "{colour: false}")]
    paths = []
    for name, demo, channels, intensity, rules in specs:
        path = folder / f"{name}.yaml"
        path.write_text(f"name: {name}\n" + FAST_MODELS % (demo, channels, intensity, rules))
        paths.append(path)
    return paths


class Pacs:
    """A pynetdicom storage SCP that records every instance it stores (the PACS receiving our results)."""

    def __init__(self, ae_title: str = "PACS", port: int | None = None, delay: float = 0.0) -> None:
        self.ae_title = ae_title
        self.delay = delay  # seconds each C-STORE takes after the instance is recorded (a slow PACS)
        self.port = port or free_port()
        self.received: list[pydicom.Dataset] = []
        self._lock = threading.Lock()
        self.server = None

    def _store(self, event: evt.Event) -> int:
        with self._lock:
            self.received.append(event.dataset)
        time.sleep(self.delay)
        return 0x0000

    def start(self) -> Pacs:
        ae = AE(ae_title=self.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def sop_uids(self) -> list[str]:
        with self._lock:
            return [str(d.SOPInstanceUID) for d in self.received]

    def wait_for(self, count: int, timeout: float = 120.0) -> list[pydicom.Dataset]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.1)
        raise AssertionError(f"PACS received {len(self.received)} of {count} instances in {timeout} s")

    def wait_for_study(self, study_uid: str, count: int, timeout: float = 120.0) -> list[pydicom.Dataset]:
        """The first ``count`` instances of one study (results of other tests' studies are ignored)."""

        def of_study() -> list[pydicom.Dataset]:
            with self._lock:
                return [d for d in self.received if str(d.StudyInstanceUID) == study_uid]

        found = wait_until(lambda: len(of_study()) >= count, timeout, what=f"{count} instances of study {study_uid}")
        assert found
        return of_study()

    @property
    def address(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"


def stop_together(processes: list[subprocess.Popen | None], timeout: float = 60.0) -> None:
    """SIGTERM every running process at once, then wait for each (SIGKILL after ``timeout``): graceful
    stops overlap instead of adding up."""
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def terminate(process: subprocess.Popen, timeout: float = 60.0) -> int:
    """SIGTERM (a graceful stop), then SIGKILL after ``timeout`` seconds; the exit status."""
    stop_together([process], timeout)
    return process.returncode


class RedisServer:
    """``redis-server`` on a free loopback port, ready once it answers PING; no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 30.0) -> RedisServer:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save",
                                         "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_until(lambda: self.process.poll() is not None or self.ping(), timeout, what="redis-server")
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def restart(self) -> RedisServer:
        """Stop and start again on the same port: without persistence, every key is gone."""
        self.stop()
        return self.start()


class WorkerProcess:
    """``medcam-dicom worker`` on a Redis queue in a subprocess, with its own scratch folder (it cannot see the
    serve node's spool) and its token in the environment."""

    def __init__(self, scratch: Path, args: list[str], token: str, name: str) -> None:
        self.scratch = scratch
        self.args = args
        self.token = token
        self.name = name
        self.process: subprocess.Popen | None = None
        self.log_path = scratch.parent / f"{name}.log"

    def start(self) -> WorkerProcess:
        command = [sys.executable, "-m", "medcam_dicom.cli", "worker", "--spool", str(self.scratch),
                   "--worker-name", self.name, *self.args]
        environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", MEDCAM_WORKER_TOKEN=self.token)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 60.0) -> int | None:
        if not self.alive():
            return self.process.returncode if self.process else None
        return terminate(self.process, timeout)


class ServiceProcess:
    """``medcam-dicom serve`` in a subprocess; stop() sends SIGTERM, kill() sends SIGKILL."""

    def __init__(self, spool: Path, args: list[str], ae_title: str = "MEDCAM", port: int | None = None,
                 environment: dict[str, str] | None = None) -> None:
        self.spool = spool
        self.environment = environment or {}
        self.port = port or free_port()
        self.ae_title = ae_title
        self.args = args
        self.process: subprocess.Popen | None = None
        self.log_path = spool.parent / f"{spool.name}-service.log"

    def start(self, wait: bool = True) -> ServiceProcess:
        command = [sys.executable, "-m", "medcam_dicom.cli", "serve", "--spool", str(self.spool), "--bind",
                   "127.0.0.1", "--port", str(self.port), "--ae-title", self.ae_title, *self.args]
        log = open(self.log_path, "ab")
        environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **self.environment)
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.log()}")
            if echo(self.port, self.ae_title):
                return
            time.sleep(0.2)
        raise AssertionError(f"service did not answer C-ECHO in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        return terminate(self.process, timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def echo(port: int, called: str = "MEDCAM", calling: str = "ECHOSCU", tls_args=None) -> bool:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 5
    association = ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls_args)
    if not association.is_established:
        return False
    status = association.send_c_echo()
    association.release()
    return bool(status) and status.Status == 0


def store(port: int, datasets: list[pydicom.Dataset], called: str = "MEDCAM", calling: str = "MODALITY",
          tls_args=None) -> list[int | None]:
    """C-STORE with a pynetdicom SCU (one association); returns the status of each request."""
    ae = AE(ae_title=calling)
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls_args)
    if not association.is_established:
        return [None] * len(datasets)
    statuses = []
    for dataset in datasets:
        status = association.send_c_store(dataset)
        statuses.append(int(status.Status) if status and "Status" in status else None)
    association.release()
    return statuses


def storescu(port: int, paths: list[Path], called: str = "MEDCAM", calling: str = "STORESCU"
             ) -> subprocess.CompletedProcess:
    """dcmtk's storescu, proposing the files' own transfer syntaxes (-xs would force one)."""
    return subprocess.run(["storescu", "-aet", calling, "-aec", called, "127.0.0.1", str(port),
                           *[str(p) for p in paths]], capture_output=True, text=True, timeout=120)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=medcam-test-ca")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
            f"/CN={name}")
        (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {name: folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}
