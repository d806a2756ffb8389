"""Service configuration: TOML < environment < flags, validation naming the setting, job records."""

from __future__ import annotations

from pathlib import Path

import pytest

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
])
def test_bad_settings_name_the_setting(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides, environ={})


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
