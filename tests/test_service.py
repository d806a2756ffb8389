"""The DICOM node against real peers on 127.0.0.1: dcmtk echoscu/storescu and a pynetdicom SCU as the
modality, a pynetdicom SCP as the PACS, the service as a subprocess (killed with SIGKILL where the test
says so). Every process a test starts is stopped by it."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from medcam_dicom.cli import main
from medcam_dicom.service.config import load_config
from medcam_dicom.service.status import service_status
from tests.dicom_inputs import bundled, copy_with_new_uids, ct_series
from tests.service_peers import (
    Pacs,
    RedisServer,
    ServiceProcess,
    echo,
    free_port,
    make_certificates,
    store,
    storescu,
    wait_until,
    write_fast_models,
)


def model_args(folder: Path) -> list[str]:
    return [arg for path in write_fast_models(folder) for arg in ("--model", str(path))]


def new_study(name: str, folder: Path) -> Path:
    """A copy of a bundled file in a study of its own."""
    path = copy_with_new_uids(name, folder)
    dataset = pydicom.dcmread(path)
    dataset.StudyInstanceUID = generate_uid()
    dataset.save_as(path)
    return path


def jobs(spool: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((spool / "jobs").glob("*/job.json"))]


def results_per_study(received: list[pydicom.Dataset]) -> dict[str, Counter]:
    per_study: dict[str, Counter] = {}
    for dataset in received:
        per_study.setdefault(str(dataset.StudyInstanceUID), Counter())[dataset.Modality] += 1
    return per_study


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One service (allow-list MODALITY/STORESCU/ECHOSCU, limits) with a live PACS."""
    root = tmp_path_factory.mktemp("node")
    pacs = Pacs().start()
    http_port = free_port()
    service = ServiceProcess(root / "spool", ["--destination", pacs.address, "--stable-seconds", "1",
                                              "--allow", "MODALITY,STORESCU,ECHOSCU,OTHER",
                                              "--max-instance-bytes", "2000000", "--http-port", str(http_port),
                                              "--workers", "2", *model_args(root / "models")])
    service.start()
    yield service, pacs, root, http_port
    service.stop()
    pacs.stop()


def test_echo_from_dcmtk_and_unknown_ae_titles_are_rejected(node):
    service, _, _, _ = node
    ok = subprocess.run(["echoscu", "-aet", "ECHOSCU", "-aec", "MEDCAM", "127.0.0.1", str(service.port)],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(["echoscu", "-aet", "INTRUDER", "-aec", "MEDCAM", "127.0.0.1", str(service.port)],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "Rejected" in refused.stderr + refused.stdout
    assert not echo(service.port, called="NOT-MEDCAM", calling="ECHOSCU")


def study_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_ct_series_cr_jpeg2000_and_rle_come_back_as_seg_sc_and_sr(node, tmp_path):
    service, pacs, _, _ = node
    series = ct_series(tmp_path / "ct", slices=3)
    assert storescu(service.port, series).returncode == 0
    cr, j2k, rle = (new_study(n, tmp_path / "single") for n in ("6154", "MR_small_jp2klossless.dcm",
                                                                "MR_small_RLE.dcm"))
    for path in (cr, j2k, rle):
        assert store(service.port, [pydicom.dcmread(path)]) == [0]
    # CT series: SEG + 3 SC + SR; each single image: SEG + SC + SR
    ct_study = study_of(series[0])
    received = pacs.wait_for_study(ct_study, 5)
    assert results_per_study(received)[ct_study] == Counter({"OT": 3, "SEG": 1, "SR": 1})
    for path in (cr, j2k, rle):
        study = study_of(path)
        assert results_per_study(pacs.wait_for_study(study, 3))[study] == Counter({"SEG": 1, "OT": 1, "SR": 1})
    time.sleep(1)
    assert len(pacs.wait_for_study(ct_study, 5)) == 5  # nothing more came for the study
    seg = next(d for d in received if d.Modality == "SEG")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(series[0]).SeriesInstanceUID
    assert seg.NumberOfFrames == 3


def test_concurrent_associations_all_arrive(node, tmp_path):
    service, pacs, _, _ = node
    paths = [new_study("CT_small.dcm", tmp_path / f"c{i}") for i in range(4)]
    statuses = [None] * 4

    def send(index: int) -> None:
        statuses[index] = store(service.port, [pydicom.dcmread(paths[index])], calling="OTHER")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [[0]] * 4
    for path in paths:
        study = study_of(path)
        assert results_per_study(pacs.wait_for_study(study, 3))[study] == Counter({"SEG": 1, "OT": 1, "SR": 1})


def test_garbage_bad_datasets_and_oversized_instances_are_refused_and_service_keeps_serving(node, tmp_path):
    service, _, _, _ = node
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as sock:
        sock.sendall(b"\x00\xff garbage that is not a PDU " * 100)
        time.sleep(0.3)
    bad = pydicom.dcmread(bundled("CT_small.dcm"))
    bad.StudyInstanceUID = "not.a.valid.uid.x"
    assert store(service.port, [bad]) == [0xA900]
    big = pydicom.dcmread(bundled("693_J2KI.dcm"))  # stored as is: under the limit
    huge = pydicom.dcmread(bundled("CT_small.dcm"))
    huge.PixelData = bytes(2_100_000)
    huge.Rows, huge.Columns = 1024, 1025
    assert store(service.port, [huge]) == [0xA700]
    assert store(service.port, [big]) == [0]
    assert echo(service.port, calling="ECHOSCU")


def test_a_non_image_object_is_stored_and_skipped(node, tmp_path):
    service, _, root, _ = node
    report = pydicom.dcmread(bundled("rtplan.dcm"))
    report.StudyInstanceUID = generate_uid()
    assert store(service.port, [report]) == [0]
    record = wait_until(lambda: next((j for j in jobs(root / "spool") if j["study_uid"] == report.StudyInstanceUID
                                      and j["state"] == "delivered"), None), what="the RT plan's job")
    assert record["results"] == [] and not record["errors"]


def test_status_command_and_metrics_endpoint(node, tmp_path, capsys):
    service, pacs, root, http_port = node
    path = new_study("CT_small.dcm", tmp_path)
    assert store(service.port, [pydicom.dcmread(path)]) == [0]
    pacs.wait_for_study(study_of(path), 3)
    wait_until(lambda: any(j["study_uid"] == study_of(path) and j["state"] == "delivered"
                           for j in jobs(root / "spool")), what="the study's job delivered")
    code = main(["status", "--spool", str(root / "spool"), "--json"])
    status = json.loads(capsys.readouterr().out)
    assert code == 0 and status["jobs"]["delivered"] >= 1 and status["unreadable_jobs"] == []
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=10).read())
    assert health["status"] == "ok"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
    assert "medcam_instances_received_total" in metrics and 'medcam_jobs{state="delivered"}' in metrics
    assert "medcam_job_seconds_count" in metrics
    assert '"event": "association"' in service.log() and '"event": "job"' in service.log()


def test_a_study_that_cannot_be_explained_is_reported_and_does_not_block_others(tmp_path):
    pacs = Pacs().start()
    service = ServiceProcess(tmp_path / "spool", ["--destination", pacs.address, "--stable-seconds", "0.5",
                                                  *model_args(tmp_path / "models")]).start()
    try:
        broken = new_study("MR_truncated.dcm", tmp_path / "in")
        good = new_study("CT_small.dcm", tmp_path / "in")
        assert store(service.port, [pydicom.dcmread(broken)]) == [0]
        assert store(service.port, [pydicom.dcmread(good)]) == [0]
        received = pacs.wait_for(3)
        assert set(results_per_study(received)) == {str(pydicom.dcmread(good).StudyInstanceUID)}
        failed = wait_until(lambda: [j for j in jobs(tmp_path / "spool") if j["state"] == "failed"], what="failure")
        assert "Pixel Data (7FE0,0010) cannot be decoded" in failed[0]["errors"][0]
    finally:
        service.stop()
        pacs.stop()


def test_tls_needs_a_client_certificate_signed_by_the_ca(tmp_path):
    files = make_certificates(tmp_path / "pki")
    service = ServiceProcess(tmp_path / "spool", ["--tls-certificate", str(files["server.pem"]), "--tls-key",
                                                  str(files["server.key"]), "--tls-ca", str(files["ca.pem"]),
                                                  "--workers", "0"])
    service.start(wait=False)
    try:
        with_certificate = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files["ca.pem"]))
        with_certificate.load_cert_chain(str(files["client.pem"]), str(files["client.key"]))
        wait_until(lambda: echo(service.port, tls_args=(with_certificate, "127.0.0.1")), timeout=60,
                   what="TLS echo")
        without = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files["ca.pem"]))
        assert not echo(service.port, tls_args=(without, "127.0.0.1"))
        assert not echo(service.port)  # plain TCP to a TLS port
        status = store(service.port, [pydicom.dcmread(bundled("CT_small.dcm"))], tls_args=(with_certificate,
                                                                                           "127.0.0.1"))
        assert status == [0]
    finally:
        service.stop()


def test_destination_down_then_up_is_retried_and_resend_delivers_a_failed_job(tmp_path):
    pacs = Pacs()  # not started yet: the destination is down
    service = ServiceProcess(tmp_path / "spool", ["--destination", pacs.address, "--stable-seconds", "0.5",
                                                  "--send-retries", "8", "--send-backoff-seconds", "0.5",
                                                  *model_args(tmp_path / "models")]).start()
    try:
        assert store(service.port, [pydicom.dcmread(new_study("CT_small.dcm", tmp_path / "a"))]) == [0]
        wait_until(lambda: any(j["attempts"] >= 2 for j in jobs(tmp_path / "spool")), what="failed attempts")
        pacs.start()
        assert len(pacs.wait_for(3)) == 3
        (record,) = wait_until(lambda: [j for j in jobs(tmp_path / "spool") if j["state"] == "delivered"],
                               what="delivery recorded")
        assert "cannot reach" in record["errors"][0]
    finally:
        service.stop()
        pacs.stop()
    # a job whose retries ran out is failed, keeps its results, and `resend` delivers it
    other = Pacs()
    service = ServiceProcess(tmp_path / "spool2", ["--destination", other.address, "--stable-seconds", "0.5",
                                                   "--send-retries", "1", "--send-backoff-seconds", "0.2",
                                                   *model_args(tmp_path / "models")]).start()
    try:
        assert store(service.port, [pydicom.dcmread(new_study("CT_small.dcm", tmp_path / "b"))]) == [0]
        (record,) = wait_until(lambda: [j for j in jobs(tmp_path / "spool2") if j["state"] == "failed"],
                               what="a failed job")
        assert record["attempts"] == 2 and len(record["results"]) == 3
    finally:
        service.stop()
    other.start()
    try:
        code = main(["resend", record["job_id"], "--spool", str(tmp_path / "spool2"), "--destination",
                     other.address])
        assert code == 0
        assert len(other.wait_for(3, timeout=30)) == 3
        assert jobs(tmp_path / "spool2")[0]["state"] == "delivered"
    finally:
        other.stop()


def test_kill_9_mid_study_then_restart_delivers_the_acknowledged_instances_exactly_once(tmp_path):
    pacs = Pacs().start()
    args = ["--destination", pacs.address, "--stable-seconds", "1", *model_args(tmp_path / "models")]
    service = ServiceProcess(tmp_path / "spool", args).start()
    try:
        from pynetdicom import AE

        slices = [pydicom.dcmread(p) for p in ct_series(tmp_path / "ct", slices=4)]
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(slices[0].SOPClassUID, slices[0].file_meta.TransferSyntaxUID)
        association = ae.associate("127.0.0.1", service.port, ae_title="MEDCAM")
        assert association.is_established
        acknowledged = [s for s in slices[:2] if association.send_c_store(s).Status == 0]
        assert len(acknowledged) == 2
        service.kill()  # mid-association: two instances acknowledged, two never sent
        association.abort()
        service = ServiceProcess(tmp_path / "spool", args, port=service.port).start()
        received = pacs.wait_for(1 + 2 + 1)  # SEG + 2 SC + SR for the two acknowledged slices
        time.sleep(2)
        uids = pacs.sop_uids()
        assert len(uids) == len(set(uids)) == 4
        seg = next(d for d in received if d.Modality == "SEG")
        assert int(seg.NumberOfFrames) == 2
    finally:
        service.stop()
        pacs.stop()


def test_kill_9_mid_job_then_restart_delivers_exactly_once(tmp_path):
    pacs = Pacs().start()
    models = tmp_path / "models"
    slow = write_fast_models(models)[0]
    slow.write_text(slow.read_text().replace("max_steps: 3, min_steps: 1", "max_steps: 40, min_steps: 40"))
    args = ["--destination", pacs.address, "--stable-seconds", "0.5",
            *[arg for path in write_fast_models(models)[1:] for arg in ("--model", str(path))]]
    args = ["--model", str(slow), *args]
    service = ServiceProcess(tmp_path / "spool", args).start()
    try:
        assert storescu(service.port, ct_series(tmp_path / "ct", slices=3)).returncode == 0
        wait_until(lambda: any(j["state"] == "running" for j in jobs(tmp_path / "spool")), what="a running job")
        service.kill()
        assert not pacs.received
        service = ServiceProcess(tmp_path / "spool", args, port=service.port).start()
        pacs.wait_for(5, timeout=180)
        time.sleep(2)
        uids = pacs.sop_uids()
        assert len(uids) == len(set(uids)) == 5
        assert [j["state"] for j in jobs(tmp_path / "spool")] == ["delivered"]
    finally:
        service.stop()
        pacs.stop()


def test_kill_9_mid_send_then_restart_delivers_every_result_with_only_the_one_in_flight_repeated(tmp_path):
    pacs = Pacs(delay=1.0).start()  # each C-STORE takes a second: time to kill the sender mid-way
    args = ["--destination", pacs.address, "--stable-seconds", "0.5", *model_args(tmp_path / "models")]
    service = ServiceProcess(tmp_path / "spool", args).start()
    try:
        assert storescu(service.port, ct_series(tmp_path / "ct", slices=3)).returncode == 0
        pacs.wait_for(2, timeout=120)
        service.kill()
        first = pacs.sop_uids()
        assert 2 <= len(first) < 5
        service = ServiceProcess(tmp_path / "spool", args, port=service.port).start()
        wait_until(lambda: [j for j in jobs(tmp_path / "spool") if j["state"] == "delivered"], timeout=120,
                   what="delivery after restart")
        uids = pacs.sop_uids()
        assert len(set(uids)) == 5
        repeated = [uid for uid, count in Counter(uids).items() if count > 1]
        assert repeated in ([], [first[-1]])  # at most the result the PACS was storing when we died
    finally:
        service.stop()
        pacs.stop()


def test_unknown_host_is_refused_and_sigterm_stops_gracefully(tmp_path):
    service = ServiceProcess(tmp_path / "spool", ["--workers", "1", "--allow-hosts", "10.11.12.13"])
    service.start(wait=False)
    time.sleep(0.5)
    try:
        wait_until(lambda: "service started" in service.log(), timeout=60, what="start")
        time.sleep(0.5)
        assert not echo(service.port)
        assert '"reason": "host not allowed"' in service.log()
    finally:
        assert service.stop() == 0
    assert '"event": "service stopped"' in service.log()


def test_a_node_on_a_redis_queue_explains_with_its_own_lease_workers(tmp_path):
    """`serve --workers 1 --queue-url redis://...`: the node's own worker takes leases from Redis like a
    remote one, over a loopback channel of its own (no payload port, no tokens configured); the lease is
    released after delivery and `status` reads the queue. Remote workers: tests/test_scaleout.py."""
    redis = RedisServer().start()
    pacs = Pacs().start()
    spool = tmp_path / "spool"
    service = ServiceProcess(spool, ["--workers", "1", "--stable-seconds", "0.5", "--destination", pacs.address,
                                     "--queue-url", redis.url, *model_args(tmp_path / "models")])
    try:
        service.start()
        assert store(service.port, [pydicom.dcmread(new_study("CT_small.dcm", tmp_path / "in"))]) == [0]
        assert len(pacs.wait_for(3, timeout=120)) == 3
        wait_until(lambda: [j["state"] for j in jobs(spool)] == ["delivered"], what="delivered")
        (record,) = jobs(spool)
        assert record["leases"] == 1 and record["worker"] == "MEDCAM-embedded-0"
        assert '"event": "job leased"' in service.log() and '"event": "job finished"' in service.log()
        status = service_status(load_config(overrides={"spool": str(spool), "queue_url": redis.url}))
        assert status["queue_length"] == 0 and status["leases"] == [] and status["queue_error"] is None
        assert list(status["workers_seen"]) == ["MEDCAM-embedded-0"]
        assert not list((spool / "scratch").rglob("*.dcm"))  # the worker's scratch copy is cleaned up
    finally:
        service.stop()
        pacs.stop()
        redis.stop()


def test_worker_processes_on_one_machine_share_the_spools_sqlite_queue_each_job_done_once(tmp_path):
    """Two `medcam-dicom worker` processes beside `serve --workers 0`, on the node's own spool and embedded
    queue (no Redis), each with one torch thread: three studies, each explained and delivered once."""
    pacs = Pacs().start()
    common = ["--destination", pacs.address, *model_args(tmp_path / "models")]
    service = ServiceProcess(tmp_path / "spool", ["--workers", "0", "--stable-seconds", "0.5", *common])
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = []
    try:
        service.start()
        for path in logs:
            with open(path, "wb") as log:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "medcam_dicom.cli", "worker", "--spool", str(tmp_path / "spool"),
                     "--workers", "1", "--threads", "1", *common], stdout=log, stderr=log))
        studies = [pydicom.dcmread(new_study("CT_small.dcm", tmp_path / f"in{i}")) for i in range(3)]
        for dataset in studies:
            assert store(service.port, [dataset]) == [0]
        received = pacs.wait_for(9, timeout=180)  # SEG, SC and SR per study
        wait_until(lambda: [j["state"] for j in jobs(tmp_path / "spool")] == ["delivered"] * 3, what="delivered")
        time.sleep(2)  # a duplicate delivery would arrive now
        assert len(pacs.received) == 9 and len({d.SOPInstanceUID for d in received}) == 9
        assert {str(d.StudyInstanceUID) for d in received} == {str(d.StudyInstanceUID) for d in studies}
        texts = [path.read_text() for path in logs]
        assert all('"torch_threads": 1' in text for text in texts), texts
        assert sum(text.count('"state": "delivered"') for text in texts) == 3
        assert '"state": "delivered"' not in service.log()
    finally:
        service.stop()
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        pacs.stop()


def test_an_unreadable_job_record_is_reported_then_quarantined_with_its_study_kept(tmp_path, capsys):
    """A truncated job.json: /metrics, the log and `status` report it while the service runs; the next start
    moves the job folder, study included, to spool/quarantine/ and keeps reporting it. Nothing is dropped."""
    pacs = Pacs().start()
    http_port = free_port()
    args = ["--destination", pacs.address, "--stable-seconds", "0.5", "--http-port", str(http_port),
            *model_args(tmp_path / "models")]
    spool = tmp_path / "spool"
    service = ServiceProcess(spool, args).start()
    try:
        path = new_study("CT_small.dcm", tmp_path / "in")
        assert store(service.port, [pydicom.dcmread(path)]) == [0]
        pacs.wait_for_study(study_of(path), 3)
        (record,) = wait_until(lambda: [j for j in jobs(spool) if j["state"] == "delivered"], what="delivery")
        job_json = spool / "jobs" / record["job_id"] / "job.json"
        job_json.write_bytes(job_json.read_bytes()[:40])  # truncated, as after a disk fault

        def metric(name: str) -> str:
            text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
            return next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " "))

        assert metric("medcam_jobs_unreadable") == "1"
        assert '"event": "job record unreadable"' in service.log()
        assert main(["status", "--spool", str(spool)]) == 1
        out = capsys.readouterr().out
        assert f"UNREADABLE job {record['job_id']}" in out and "job.json: not a readable job record" in out
    finally:
        service.stop()
    service = ServiceProcess(spool, args, port=service.port).start()
    try:
        quarantined = spool / "quarantine" / record["job_id"]
        assert not (spool / "jobs" / record["job_id"]).exists()
        assert [p.name for p in (quarantined / "input").rglob("*.dcm")] == [
            f"{pydicom.dcmread(path).SOPInstanceUID}.dcm"]
        assert "not a readable job record" in (quarantined / "reason.txt").read_text()
        assert '"event": "job quarantined"' in service.log()
        assert metric("medcam_jobs_quarantined") == "1" and metric("medcam_jobs_unreadable") == "0"
        assert main(["status", "--spool", str(spool), "--json"]) == 1
        status = json.loads(capsys.readouterr().out)
        listed = [(j["job"], j["folder"]) for j in status["unreadable_jobs"]]
        assert listed == [(record["job_id"], str(quarantined.resolve()))]
    finally:
        service.stop()
        pacs.stop()
