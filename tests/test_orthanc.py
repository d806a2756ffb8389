"""PACS round trip with a real Orthanc (Debian package) on loopback ports: stable-study routing by the Lua
script to the service, SEG/SC/SR back in the same study, the loop guard, and restarts of the service."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pydicom
import pytest

from tests.dicom_inputs import bundled, copy_with_new_uids, ct_series
from tests.service_peers import ServiceProcess, free_port, wait_until, write_fast_models

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_local", ROOT / "orthanc" / "run_local.py")
run_local = importlib.util.module_from_spec(_spec)
sys.modules["run_local"] = run_local  # dataclasses look their module up there
_spec.loader.exec_module(run_local)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Orthanc (StableAge 1 s) routing to a running service that sends back to Orthanc."""
    root = tmp_path_factory.mktemp("site")
    orthanc = run_local.Orthanc(root / "orthanc-storage", free_port(), free_port(), free_port(), stable_age=1)
    orthanc.start()
    models = [arg for path in write_fast_models(root / "models") for arg in ("--model", str(path))]
    service = ServiceProcess(root / "spool", ["--destination", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
                                              "--stable-seconds", "1", *models], port=orthanc.service_port)
    service.start()
    yield orthanc, service, root, models
    service.stop()
    orthanc.stop()


def study_series(orthanc, study_id: str) -> list[dict]:
    return [orthanc.get(f"/series/{series}") for series in orthanc.get(f"/studies/{study_id}")["Series"]]


def results_in(orthanc, study_id: str) -> dict[str, int]:
    modalities: dict[str, int] = {}
    for series in study_series(orthanc, study_id):
        if series["MainDicomTags"].get("Manufacturer") == "medcam-dicom":
            modality = series["MainDicomTags"]["Modality"]
            modalities[modality] = modalities.get(modality, 0) + 1
    return modalities


def test_studies_uploaded_to_orthanc_come_back_with_seg_sc_and_sr_once(site):
    orthanc, service, root, _ = site
    studies = {}
    for name in ("CT_small.dcm", "MR_small.dcm", "6154"):
        answer = orthanc.upload(bundled(name))
        studies[name] = answer["ParentStudy"]
    for name, study in studies.items():
        wait_until(lambda s=study: results_in(orthanc, s) == {"SEG": 1, "OT": 1, "SR": 1}, what=f"results of {name}")
    for name, study in studies.items():
        source = pydicom.dcmread(bundled(name), stop_before_pixels=True)
        (seg_series,) = [s for s in study_series(orthanc, study) if s["MainDicomTags"]["Modality"] == "SEG"]
        tags = orthanc.get(f"/instances/{seg_series['Instances'][0]}/tags?simplify")
        assert tags["ReferencedSeriesSequence"][0]["SeriesInstanceUID"] == source.SeriesInstanceUID
        assert tags["StudyInstanceUID"] == source.StudyInstanceUID
    # loop guard: the results made each study unstable again, yet no second round happens
    time.sleep(6)  # > StableAge + the Lua heart beat
    uploaded = {str(pydicom.dcmread(bundled(name), stop_before_pixels=True).StudyInstanceUID) for name in studies}
    jobs = [j for p in (root / "spool" / "jobs").glob("*/job.json")
            if (j := json.loads(p.read_text()))["study_uid"] in uploaded]  # other tests share the site
    assert len(jobs) == 3 and all(j["state"] == "delivered" for j in jobs)
    for study in studies.values():
        assert results_in(orthanc, study) == {"SEG": 1, "OT": 1, "SR": 1}
        (seg_series,) = [s for s in study_series(orthanc, study) if s["MainDicomTags"]["Modality"] == "SEG"]
        assert len(seg_series["Instances"]) == 1


def test_service_killed_mid_job_and_restarted_still_completes_the_study(site, tmp_path):
    orthanc, service, root, models = site
    paths = ct_series(tmp_path / "ct", slices=3)
    study_uid = pydicom.uid.generate_uid()
    for path in paths:  # a study of its own (ct_series keeps CT_small's study)
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID = study_uid
        dataset.save_as(path)
    study = None
    for path in paths:
        study = orthanc.upload(path)["ParentStudy"]
    spool = root / "spool"

    def running():
        return [j for p in (spool / "jobs").glob("*/job.json") if (j := json.loads(p.read_text()))["study_uid"]
                == pydicom.dcmread(paths[0]).StudyInstanceUID and j["state"] in ("running", "sending")]

    wait_until(running, what="the CT study's job to start")
    service.kill()
    restarted = ServiceProcess(spool, service.args, port=service.port).start()
    service.process = restarted.process  # the fixture stops whichever process runs now
    wait_until(lambda: results_in(orthanc, study) == {"SEG": 1, "OT": 1, "SR": 1}, what="results after the restart")
    (sc_series,) = [s for s in study_series(orthanc, study) if s["MainDicomTags"]["Modality"] == "OT"]
    assert len(sc_series["Instances"]) == 3  # one Secondary Capture per slice
    seg_series = [s for s in study_series(orthanc, study) if s["MainDicomTags"]["Modality"] == "SEG"]
    assert len(seg_series[0]["Instances"]) == 1  # delivered once


def test_a_study_stable_while_the_service_is_down_is_flagged_and_sent_again_without_a_second_round(site, tmp_path):
    orthanc, service, root, _ = site
    service.stop()
    try:
        study = orthanc.upload(new_study_file(tmp_path))["ParentStudy"]
        wait_until(lambda: "MedcamRoutingFailed" in orthanc.get(f"/studies/{study}/metadata"), timeout=30,
                   what="the routing failure flag")
        assert results_in(orthanc, study) == {}
    finally:
        service.start()
    # what the Orthanc log tells the operator to run
    orthanc.request("POST", "/modalities/medcam/store", json.dumps({"Resources": [study]}).encode())
    wait_until(lambda: results_in(orthanc, study) == {"SEG": 1, "OT": 1, "SR": 1}, what="results after resend")
    time.sleep(4)  # the results make the study stable again: the SR lists the series, so no second round
    jobs = [json.loads(p.read_text()) for p in (root / "spool" / "jobs").glob("*/job.json")]
    source = [s for s in study_series(orthanc, study) if s["MainDicomTags"].get("Manufacturer") != "medcam-dicom"]
    assert sum(j["study_uid"] == orthanc.get(f"/studies/{study}")["MainDicomTags"]["StudyInstanceUID"]
               for j in jobs) == 1
    assert "MedcamRouted" not in orthanc.get(f"/series/{source[0]['ID']}/metadata")


def new_study_file(folder: Path) -> Path:
    """CT_small in a new study."""
    path = copy_with_new_uids("CT_small.dcm", folder)
    dataset = pydicom.dcmread(path)
    dataset.StudyInstanceUID = pydicom.uid.generate_uid()
    dataset.save_as(path)
    return path
