"""Workers without a shared disk (Redis leases + the payload channel), with real processes on 127.0.0.1: a
redis-server, `medcam-dicom serve --workers 0`, `medcam-dicom worker` processes each with its own scratch
folder, and a pynetdicom PACS. Faults: a worker killed -9 mid-job, a worker whose explaining raises, Redis
restarted while jobs wait, the serve node restarted while a worker runs, clients that are not workers."""

from __future__ import annotations

import io
import json
import ssl
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from medcam_dicom.cli import main
from medcam_dicom.service.jobs import JobStore
from medcam_dicom.service.leases import LeaseQueue
from medcam_dicom.service.metrics import Metrics
from medcam_dicom.service.spool import Spool
from medcam_dicom.service.work_api import LeaseLost, WorkApi, WorkApiClient, client_tls, pack_folder, unpack_folder
from tests.dicom_inputs import copy_with_new_uids
from tests.service_peers import (
    Pacs,
    RedisServer,
    ServiceProcess,
    WorkerProcess,
    free_port,
    make_certificates,
    stop_together,
    store,
    wait_until,
    write_fast_models,
)

TOKEN = "worker-token-0123456789abcdef"


def model_args(folder: Path) -> list[str]:
    return [arg for path in write_fast_models(folder) for arg in ("--model", str(path))]


def study(folder: Path) -> pydicom.Dataset:
    """CT_small in a study of its own."""
    dataset = pydicom.dcmread(copy_with_new_uids("CT_small.dcm", folder))
    dataset.StudyInstanceUID = generate_uid()
    return dataset


def jobs(spool: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((spool / "jobs").glob("*/job.json"))]


def states(spool: Path) -> list[str]:
    return sorted(j["state"] for j in jobs(spool))


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0


class Deployment:
    """Redis, the PACS, the serve node (receiving only) and remote workers, all stopped by ``close()``."""

    def __init__(self, root: Path, lease_seconds: float = 3.0, pacs_up: bool = True,
                 extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.redis = RedisServer().start()
        self.pacs = Pacs().start() if pacs_up else Pacs()
        self.payload_port, self.http_port = free_port(), free_port()
        self.models = model_args(root / "models")
        self.common = ["--queue-url", self.redis.url, "--destination", self.pacs.address, "--lease-seconds",
                       str(lease_seconds), *extra, *self.models]
        self.service = ServiceProcess(root / "spool", [
            "--workers", "0", "--stable-seconds", "0.5", "--payload-port", str(self.payload_port), "--http-port",
            str(self.http_port), *self.common], environment={"MEDCAM_WORKER_TOKENS": TOKEN})
        self.workers: list[WorkerProcess] = []

    def start(self) -> Deployment:
        self.service.start()
        return self

    def worker(self, name: str, models: list[str] | None = None) -> WorkerProcess:
        """A worker process with the common settings (``models`` replaces the model descriptions)."""
        args = ["--serve-url", f"http://127.0.0.1:{self.payload_port}", "--workers", "1", "--threads", "1",
                *self.common]
        if models is not None:
            args = [a for a in args if a not in self.models] + models
        worker = WorkerProcess(self.root / f"scratch-{name}", args, TOKEN, name).start()
        self.workers.append(worker)
        return worker

    def send(self, count: int) -> list[str]:
        studies = [study(self.root / f"in-{generate_uid()[-8:]}") for _ in range(count)]
        for dataset in studies:
            assert store(self.service.port, [dataset]) == [0]
        return [str(d.StudyInstanceUID) for d in studies]

    def close(self) -> None:
        stop_together([worker.process for worker in self.workers] + [self.service.process])
        self.pacs.stop()
        self.redis.stop()


@pytest.fixture
def deployment(tmp_path):
    made: list[Deployment] = []

    def make(**kwargs) -> Deployment:
        made.append(Deployment(tmp_path, **kwargs).start())
        return made[-1]

    yield make
    for item in made:
        item.close()


def assert_delivered_exactly_once(pacs: Pacs, studies: list[str], per_study: int = 3) -> None:
    received = pacs.wait_for(per_study * len(studies), timeout=240)
    time.sleep(2)  # a duplicate would arrive now
    uids = [str(d.SOPInstanceUID) for d in pacs.received]
    assert len(uids) == len(set(uids)) == per_study * len(studies), sorted(uids)
    assert {str(d.StudyInstanceUID) for d in received} == set(studies)


def test_two_workers_without_the_serve_nodes_files_one_killed_mid_job_every_study_once(deployment):
    """The issue's "done when": two workers that cannot read the serve node's spool explain a batch; the
    first to start explaining is killed -9; its lease expires, the other takes the job; every study reaches
    the PACS exactly once, and the node counts the expired lease and the re-lease."""
    node = deployment()
    first, second = node.worker("alpha"), node.worker("beta")
    studies = node.send(4)
    victim = wait_until(lambda: next((w for w in (first, second) if '"event": "study fetched"' in w.log()), None),
                        timeout=120, what="a worker fetching a study")
    victim.kill()
    survivor = second if victim is first else first
    assert_delivered_exactly_once(node.pacs, studies)
    wait_until(lambda: states(node.service.spool) == ["delivered"] * 4, what="4 delivered records")
    records = jobs(node.service.spool)
    assert {r["worker"] for r in records} == {survivor.name}
    assert max(r["leases"] for r in records) == 2  # the victim's job, leased again
    assert metric(node.http_port, "medcam_leases_expired_total") >= 1
    assert metric(node.http_port, "medcam_jobs_released_total") >= 1
    assert metric(node.http_port, "medcam_workers_seen") >= 1
    assert '"event": "job re-queued"' in node.service.log() and '"reason": "lease expired"' in node.service.log()
    assert survivor.log().count('"state": "delivered"') == 4  # the worker explained and sent them all
    assert node.service.log().count('"event": "job finished"') == 4  # the node only kept the records
    # the workers never saw the node's spool: their scratch holds no study any more, the node's has all
    assert not list((node.root / f"scratch-{survivor.name}").rglob("*.dcm"))
    assert len(list((node.service.spool / "jobs").rglob("input/*/*.dcm"))) == 4


def test_a_worker_whose_explaining_raises_fails_the_job_and_keeps_working(deployment, tmp_path):
    """A worker whose model cannot be loaded: each job fails with the reason in its record (never left
    queued or running), the worker stays up and takes the next job."""
    broken = tmp_path / "broken.yaml"
    (tmp_path / "broken.ts").write_bytes(b"not a torchscript archive")
    broken.write_text("name: broken\nclassifier: {torchscript: broken.ts}\nclass_names: [normal, lesion]\n"
                      "mode: 2d\ninput: {size: [64, 64], channels: 1, intensity: {percentiles: [1, 99]}}\n"
                      "applies_to: {colour: false}\n")
    node = deployment()
    worker = node.worker("gamma", models=["--model", str(broken)])
    node.send(2)
    wait_until(lambda: states(node.service.spool) == ["failed", "failed"], timeout=120, what="2 failed jobs")
    for record in jobs(node.service.spool):
        assert any("explaining failed" in error for error in record["errors"]), record["errors"]
        assert record["worker"] == "gamma" and record["leases"] == 1
    assert worker.alive()
    assert not node.pacs.received


def test_a_remote_worker_retries_a_destination_that_is_down_then_delivers_once(deployment):
    """The PACS is down: the worker's sends fail, the job goes back to the queue with backoff (state
    `sending`, its results kept on the serve node), and once the PACS is up a worker delivers it, once."""
    node = deployment(pacs_up=False, extra=("--send-retries", "8", "--send-backoff-seconds", "0.5"))
    node.worker("zeta")
    studies = node.send(1)
    (record,) = wait_until(lambda: [j for j in jobs(node.service.spool) if j["attempts"] >= 2], timeout=120,
                           what="failed sending attempts")
    assert record["state"] == "sending" and "cannot reach" in record["errors"][0]
    results = node.service.spool / "jobs" / record["job_id"] / "results"
    assert len(list(results.rglob("*.dcm"))) == 3 == len(record["results"])  # SEG, SC, SR kept on the node
    node.pacs.start()
    assert_delivered_exactly_once(node.pacs, studies)
    wait_until(lambda: states(node.service.spool) == ["delivered"], what="the delivery recorded")
    (record,) = jobs(node.service.spool)
    assert record["leases"] >= 3  # each retry is a new lease, by the same or another worker


def test_a_job_leased_too_often_is_failed_not_passed_around(tmp_path):
    """In-process channel: each `start` under a new lease counts; past max_leases the job is failed with the
    reason, the node is told, and a failed job refuses further state changes."""
    redis = RedisServer().start()
    api = None
    try:
        spool = Spool(tmp_path / "spool")
        store = JobStore(spool)
        job = spool.new_job_id()
        store.create("1.2.3.4", job, 1)
        (spool.job_dir(job) / "input").mkdir()
        queue = LeaseQueue(redis.url, lease_seconds=30)
        changed: list[str] = []
        api = WorkApi(store, queue, (TOKEN,), Metrics(), max_leases=2,
                      on_state=lambda record, state: changed.append(state)).start("127.0.0.1", 0)
        client = WorkApiClient(f"http://127.0.0.1:{api.address[1]}", TOKEN, "w", retry_seconds=0)
        for expected in ("queued", "queued", "failed"):
            queue.enqueue(job)
            lease = queue.claim("w")
            record, sent = client.start(job, lease.token)
            assert record.state == expected and sent == set()
            queue.release(lease)
        assert record.leases == 3 and "given up after 2 leases" in record.errors[-1] and changed == ["failed"]
        # a lease that ended in a failed sending attempt (handed back with backoff) does not count
        other = spool.new_job_id()
        store.create("1.2.3.5", other, 1)
        for attempts in (0, 1, 2):
            record = store.load(other)
            record.attempts = attempts
            store.save(record)
            queue.enqueue(other)
            lease = queue.claim("w")
            assert client.start(other, lease.token)[0].state == "queued"
            queue.release(lease)
        queue.enqueue(job)
        lease = queue.claim("w")
        with pytest.raises(LeaseLost, match="already failed"):
            client.update(job, lease.token, state="running")
        assert store.load(job).state == "failed"
    finally:
        if api is not None:
            api.stop()
        redis.stop()


def test_redis_restarted_while_jobs_wait_loses_no_job(deployment):
    """Jobs queued in a Redis without persistence; Redis restarts (the queue is gone); the serve node's
    reaper re-queues them from its job records; a worker started afterwards delivers them."""
    node = deployment()
    studies = node.send(2)
    wait_until(lambda: states(node.service.spool) == ["queued", "queued"], what="2 queued jobs")
    assert LeaseQueue(node.redis.url).pending_count() == 2
    assert metric(node.http_port, "medcam_jobs_requeued_total") == 0
    node.redis.restart()
    # no "queue is empty now" check: the reaper may already have re-queued both by the time Redis answers
    # (it did on a fast run). That it had to is what the counter says: it counts only jobs missing from the queue.
    wait_until(lambda: LeaseQueue(node.redis.url).pending_count() == 2, timeout=30, what="re-queued by the reaper")
    wait_until(lambda: metric(node.http_port, "medcam_jobs_requeued_total") == 2, timeout=10, what="2 counted")
    node.worker("delta")
    assert_delivered_exactly_once(node.pacs, studies)


def test_the_serve_node_restarted_while_a_worker_runs_loses_nothing(deployment):
    """SIGTERM to the serve node while a remote worker explains; it comes back on the same ports; the
    worker's requests retried meanwhile go through, and every study is delivered once."""
    node = deployment()
    worker = node.worker("epsilon")
    studies = node.send(3)
    wait_until(lambda: '"event": "study fetched"' in worker.log(), timeout=120, what="the worker explaining")
    assert node.service.stop() == 0
    node.service.start()
    assert_delivered_exactly_once(node.pacs, studies)
    wait_until(lambda: states(node.service.spool) == ["delivered"] * 3, what="3 delivered records")
    assert worker.alive()


def test_the_payload_channel_refuses_clients_that_are_not_workers(tmp_path):
    """No token or a wrong one: 401 and a log line; the right token without the job's lease: 409. With
    TLS and a CA, a client without a certificate does not get through the handshake."""
    redis = RedisServer().start()
    files = make_certificates(tmp_path / "pki")
    payload_port = free_port()
    service = ServiceProcess(tmp_path / "spool", [
        "--workers", "0", "--queue-url", redis.url, "--payload-port", str(payload_port), "--tls-certificate",
        str(files["server.pem"]), "--tls-key", str(files["server.key"]), "--tls-ca", str(files["ca.pem"])],
        environment={"MEDCAM_WORKER_TOKENS": TOKEN})
    try:
        service.start(wait=False)
        with_certificate = ssl.create_default_context(cafile=str(files["ca.pem"]))
        with_certificate.load_cert_chain(str(files["client.pem"]), str(files["client.key"]))
        url = f"https://127.0.0.1:{payload_port}/v1/jobs/20260101T000000-0123abcd/study"

        def status(headers: dict[str, str], context: ssl.SSLContext) -> int | str:
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10,
                                            context=context) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code
            except (urllib.error.URLError, OSError):  # ssl.SSLError & co: the handshake refused
                return "no HTTP answer"

        wait_until(lambda: status({}, with_certificate) == 401, timeout=60, what="the payload channel")
        assert status({"Authorization": "Bearer wrong-token-0123456789"}, with_certificate) == 401
        assert status({"Authorization": f"Bearer {TOKEN}", "X-Medcam-Lease": "forged"}, with_certificate) == 409
        without = ssl.create_default_context(cafile=str(files["ca.pem"]))
        forged = {"Authorization": f"Bearer {TOKEN}", "X-Medcam-Lease": "forged"}
        assert status(forged, without) == "no HTTP answer"
        worker = WorkApiClient(f"https://127.0.0.1:{payload_port}", TOKEN, "w", retry_seconds=0,
                               tls=client_tls(files["ca.pem"], files["client.pem"], files["client.key"]))
        with pytest.raises(LeaseLost, match="does not hold its lease"):  # the worker's own TLS gets through
            worker.start("20260101T000000-0123abcd", "forged")
        assert '"event": "worker refused"' in service.log()
    finally:
        service.stop()
        redis.stop()


def test_leases_are_exclusive_renewable_and_expire(tmp_path, capsys):
    """The queue's primitives on a real Redis: one claim per job, renew/release only by the holder, a
    duplicate hand-off dropped, delayed jobs due later, orphans found when nobody holds or queues a job;
    `medcam-dicom status` lists the holders and the workers heard from."""
    redis = RedisServer().start()
    try:
        queue = LeaseQueue(redis.url, lease_seconds=1)
        for job in ("a", "b", "a"):
            queue.enqueue(job)
        first = queue.claim("w1")
        assert first.job_id == "a" and queue.holds("a", first.token)
        queue.heartbeat("w1")
        Spool(tmp_path / "spool")
        assert main(["status", "--spool", str(tmp_path / "spool"), "--queue-url", redis.url]) == 0
        out = capsys.readouterr().out
        assert "lease  a held by w1 since" in out and "worker w1, last heard 0 s ago" in out and "queue  2" in out
        second = queue.claim("w2")
        assert second.job_id == "b"
        assert queue.claim("w2") is None  # the duplicate "a" is dropped while w1 holds it
        assert not queue.renew(type(first)("a", "forged", "w3", 0)) and queue.renew(first)
        assert queue.holders()["a"]["worker"] == "w1"
        assert queue.release(second) and not queue.release(second)
        assert queue.orphans(["a", "b"]) == ["b"]
        time.sleep(1.3)  # w1 stopped renewing
        assert not queue.holds("a", first.token) and queue.orphans(["a"]) == ["a"]
        queue.enqueue("c", delay=1.0)
        assert queue.waiting("c") and queue.claim("w1") is None
        time.sleep(1.1)
        assert queue.claim("w1").job_id == "c"
        claims: list[str] = []
        for job in ("d", "e", "f"):
            queue.enqueue(job)
        threads = [threading.Thread(target=lambda: claims.append(getattr(queue.claim("t"), "job_id", None)))
                   for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(c for c in claims if c) == ["d", "e", "f"]
    finally:
        redis.stop()


def test_a_tar_from_a_worker_cannot_write_outside_the_job(tmp_path):
    (tmp_path / "results" / "a").mkdir(parents=True)
    (tmp_path / "results" / "a" / "x.dcm").write_bytes(b"x")
    buffer = io.BytesIO()
    pack_folder(tmp_path / "results", buffer)
    assert unpack_folder(io.BytesIO(buffer.getvalue()), tmp_path / "copy") == 1
    assert (tmp_path / "copy" / "a" / "x.dcm").read_bytes() == b"x"
    for name in ("../escape.dcm", "/etc/escape.dcm"):
        evil = io.BytesIO()
        with tarfile.open(fileobj=evil, mode="w") as archive:
            member = tarfile.TarInfo(name)
            member.size = 1
            archive.addfile(member, io.BytesIO(b"x"))
        with pytest.raises(ValueError, match="points outside"):
            unpack_folder(io.BytesIO(evil.getvalue()), tmp_path / "target")
    assert not (tmp_path / "escape.dcm").exists()
