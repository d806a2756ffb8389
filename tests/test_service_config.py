"""Service configuration: TOML < environment < flags, validation naming the setting, job records."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcam_dicom.cli import main
from medcam_dicom.service.config import ConfigError, Destination, load_config
from medcam_dicom.service.jobs import JobStore
from medcam_dicom.service.spool import Spool, SpoolError


def test_flags_override_environment_override_file(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[medcam]\nae_title = "FROMFILE"\nport = 4000\nallow = ["CT1", "MR1"]\n'
                    'destination = "PACS@pacs.local:104"\nstable_seconds = 30\n')
    config = load_config(path, {"port": None}, environ={"MEDCAM_PORT": "4001", "MEDCAM_ALLOW": "CT9"})
    assert (config.ae_title, config.port, config.allow, config.stable_seconds) == ("FROMFILE", 4001, ("CT9",), 30.0)
    assert config.destination == Destination("PACS", "pacs.local", 104)
    config = load_config(path, {"port": 4002, "spool": str(tmp_path / "s")}, environ={"MEDCAM_PORT": "4001"})
    assert config.port == 4002 and config.spool == Path(tmp_path / "s")


@pytest.mark.parametrize("overrides, message", [
    ({"destination": "PACS-at-host"}, "destination must look like AE@HOST:PORT"),
    ({"ae_title": "A" * 17}, "ae_title must be 1-16"),
    ({"port": 70000}, "port must be a TCP port"),
    ({"tls_certificate": "cert.pem"}, "tls_certificate and tls_key must be given together"),
    ({"queue_url": "amqp://x"}, "queue_url must be 'sqlite' or redis"),
    ({"max_associations": "many"}, "max_associations from --max-associations"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"overlays": "some"}, "overlays must be 'findings' or 'all'"),
    ({"parametric_map": "maybe"}, "parametric_map from --parametric-map: expected true or false"),
])
def test_bad_settings_name_the_setting(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides, environ={})


def test_overlays_and_parametric_map_reach_the_results_settings(tmp_path):
    from medcam_dicom.service.worker import JobRunner

    assert load_config(None, {}, environ={}).overlays == "findings"
    config = load_config(None, {"spool": str(tmp_path), "parametric_map": "true"},
                         environ={"MEDCAM_OVERLAYS": "all"})
    assert config.overlays == "all" and config.parametric_map is True
    settings = JobRunner(config, Spool(config.spool)).settings
    assert settings.overlays == "all" and settings.parametric_map is True


def test_worker_processes_share_the_cores_out_unless_told(monkeypatch):
    import torch

    from medcam_dicom.service.worker import apply_thread_budget

    before = torch.get_num_threads()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert apply_thread_budget(load_config(None, {"workers": 2}, environ={})) == 4
        assert torch.get_num_threads() == 4
        assert apply_thread_budget(load_config(None, {"workers": 16}, environ={})) == 1
        assert apply_thread_budget(load_config(None, {"workers": 2, "threads": 3}, environ={})) == 3
        assert apply_thread_budget(load_config(None, {}, environ={"MEDCAM_THREADS": "2"})) == 2
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the operator's choice is kept unless --threads says
        assert apply_thread_budget(load_config(None, {"workers": 2}, environ={})) == 2
        assert apply_thread_budget(load_config(None, {"threads": 3}, environ={})) == 3
    finally:
        torch.set_num_threads(before)


def test_unknown_setting_in_file_is_named(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text("aetitle = 'X'\n")
    with pytest.raises(ConfigError, match="unknown setting\\(s\\) aetitle"):
        load_config(path, environ={})


def test_spool_paths_come_from_validated_uids_only(tmp_path):
    spool = Spool(tmp_path)
    expected = tmp_path.resolve() / "incoming/1.2.3/1.2.3.4/1.2.3.4.5.dcm"
    assert spool.instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5") == expected
    for bad in ("../../etc", "1.2.03", "", "1.2.3/4", "1." + "2" * 70):
        with pytest.raises(SpoolError):
            spool.instance_path(bad, "1.2", "1.3")
    with pytest.raises(SpoolError, match="not a job id"):
        spool.job_dir("../x")


def test_job_records_and_sent_lists_survive_a_reload(tmp_path):
    spool = Spool(tmp_path)
    store = JobStore(spool)
    job_id = spool.new_job_id()
    spool.job_dir(job_id).mkdir()
    record = store.create("1.2.3", job_id, instances=4)
    record.state = "sending"
    store.save(record)
    store.mark_sent(job_id, "1.2.3.9")
    again = JobStore(Spool(tmp_path))
    assert again.load(job_id).state == "sending" and again.sent(job_id) == {"1.2.3.9"}
    with again.exclusive(job_id) as first:
        with store.exclusive(job_id) as second:
            assert first and not second


def test_unreadable_job_records_are_listed_with_the_file_never_skipped(tmp_path):
    spool = Spool(tmp_path)
    store = JobStore(spool)
    good, truncated, no_record, wrong_fields, being_created = (f"20261128T0000{i:02d}-0000000{i}" for i in range(5))
    store.create("1.2.3", good, instances=1)
    store.create("1.2.4", truncated, instances=1)
    store.path(truncated).write_text('{"job_id": "20261128T')
    (spool.job_dir(no_record) / "input" / "1.2.5").mkdir(parents=True)
    store.create("1.2.6", wrong_fields, instances=1)
    store.path(wrong_fields).write_text('{"job_id": "x", "colour": "blue"}')
    spool.job_dir(being_created).mkdir()
    records, unreadable = store.scan()
    assert [r.job_id for r in records] == [good]
    reasons = {job.job_id: job.reason for job in unreadable}
    assert set(reasons) == {truncated, no_record, wrong_fields}
    assert reasons[truncated].startswith(f"{store.path(truncated)}: not a readable job record")
    assert reasons[no_record] == f"{store.path(no_record)} is missing"
    assert "unexpected keyword argument 'colour'" in reasons[wrong_fields]


def test_quarantine_moves_the_whole_job_with_its_reason_and_deletes_nothing(tmp_path):
    spool = Spool(tmp_path)
    store = JobStore(spool)
    job_id = "20261128T000000-0000000a"
    store.create("1.2.3", job_id, instances=1)
    instance = spool.job_dir(job_id) / "input" / "1.2.3.4" / "1.2.3.4.5.dcm"
    instance.parent.mkdir(parents=True)
    instance.write_bytes(b"DICM")
    store.path(job_id).write_bytes(b"\x00\x00")
    (job,) = store.scan()[1]
    folder = store.quarantine(job)
    assert folder == spool.quarantine / job_id and not spool.job_dir(job_id).exists()
    assert (folder / "input" / "1.2.3.4" / "1.2.3.4.5.dcm").read_bytes() == b"DICM"
    assert (folder / "job.json").read_bytes() == b"\x00\x00"
    assert store.quarantined() == [job] and store.scan() == ([], [])


def test_resend_of_an_unreadable_job_names_the_record_and_the_problem(tmp_path, capsys):
    store = JobStore(Spool(tmp_path))
    job_id = "20261128T000000-0000000b"
    store.create("1.2.3", job_id, instances=1)
    store.path(job_id).write_text("{")
    assert main(["resend", job_id, "--spool", str(tmp_path), "--destination", "PACS@127.0.0.1:104"]) == 2
    error = capsys.readouterr().err
    assert f"job {job_id} cannot be resent: {store.path(job_id)}: not a readable job record" in error

def test_the_site_configuration_in_the_deployment_docs_loads(tmp_path):
    text = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "site.toml"
    path.write_text(example)
    config = load_config(path, environ={})
    assert (config.ae_title, config.port, config.allow) == ("MEDCAM", 11112, ("ORTHANC", "CT1"))
    assert config.destination == Destination("ORTHANC", "pacs.example.org", 4242)
