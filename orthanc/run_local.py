"""Run Orthanc and the Med-CAM service together on this machine, with the demo models, upload demo
studies and print where to look. The same `orthanc.json` and `route-to-medcam.lua` serve the tests and
the docker-compose deployment; only the environment variables differ.

    python orthanc/run_local.py                 # Orthanc on :8042 (REST/Explorer) and :4242 (DICOM)
    python orthanc/run_local.py --exit-when-done --max-steps 30
    python orthanc/run_local.py --exit-when-done --screenshots docs/   # + OHIF screenshots of the lesions

Needs the Debian packages `orthanc` and `orthanc-dicomweb` (scripts/install-system.sh installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ORTHANC_DIR = Path(__file__).resolve().parent
DEBIAN_PLUGINS = "/usr/share/orthanc/plugins"
DEMO_FILES = ("CT_small.dcm", "MR_small.dcm", "6154")  # CT slice, MR slice, CR (MONOCHROME1) from pydicom


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Orthanc:
    """An Orthanc process started from ``orthanc.json`` with our environment; REST helpers."""

    storage: Path
    http_port: int
    dicom_port: int
    service_port: int
    service_aet: str = "MEDCAM"
    stable_age: int = 2
    aet: str = "ORTHANC"
    process: subprocess.Popen | None = field(default=None, repr=False)

    def environment(self) -> dict[str, str]:
        return dict(os.environ, ORTHANC_NAME="medcam-local", ORTHANC_STORAGE=str(self.storage),
                    ORTHANC_HTTP_PORT=str(self.http_port), ORTHANC_DICOM_PORT=str(self.dicom_port),
                    ORTHANC_AET=self.aet, ORTHANC_REMOTE_ACCESS="false", ORTHANC_AUTHENTICATION="false",
                    ORTHANC_USER="medcam", ORTHANC_PASSWORD="change-me", ORTHANC_STABLE_AGE=str(self.stable_age),
                    ORTHANC_PLUGINS=DEBIAN_PLUGINS, ORTHANC_LUA=str(ORTHANC_DIR / "route-to-medcam.lua"),
                    MEDCAM_AET=self.service_aet, MEDCAM_HOST="127.0.0.1", MEDCAM_PORT=str(self.service_port))

    def start(self, timeout: float = 60.0) -> Orthanc:
        if shutil.which("Orthanc") is None:
            raise RuntimeError("Orthanc is not installed (Debian packages orthanc, orthanc-dicomweb)")
        self.storage.mkdir(parents=True, exist_ok=True)
        log = open(self.storage.parent / f"{self.storage.name}-orthanc.log", "ab")
        self.process = subprocess.Popen(["Orthanc", str(ORTHANC_DIR / "orthanc.json")], env=self.environment(),
                                        stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see {log.name}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not answer on port {self.http_port} in {timeout} s")

    def stop(self) -> None:
        """Stop and wait for the process to exit (another Orthanc may then use the same storage)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method,
                                         headers={"Content-Type": content_type} if body is not None else {})
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
        return json.loads(data) if data and data[:1] in (b"{", b"[") else data

    def get(self, path: str):
        return self.request("GET", path)

    def service_answers(self) -> bool:
        """C-ECHO from Orthanc to the service (POST /modalities/medcam/echo)."""
        try:
            self.request("POST", "/modalities/medcam/echo", b"{}")
            return True
        except urllib.error.HTTPError:
            return False

    def upload(self, path: Path) -> dict:
        """POST /instances: store a DICOM file."""
        return self.request("POST", "/instances", path.read_bytes(), "application/dicom")

    def find_series(self, **query: str) -> list[dict]:
        """POST /tools/find at series level, expanded."""
        body = json.dumps({"Level": "Series", "Query": query, "Expand": True}).encode()
        return self.request("POST", "/tools/find", body)


def demo_files(workdir: Path) -> list[Path]:
    """The two generated lesion examples (CT, fundus) and pydicom's CT, MR and CR files."""
    import glob

    import pydicom.data

    from medcam_dicom.dicom.examples import write_lesion_examples

    root = os.path.dirname(pydicom.data.__file__)
    bundled = [Path(glob.glob(os.path.join(root, "**", name), recursive=True)[0]) for name in DEMO_FILES]
    return write_lesion_examples(workdir / "example-inputs") + bundled


def start_service(workdir: Path, orthanc: Orthanc, extra: list[str]) -> subprocess.Popen:
    log = open(workdir / "service.log", "ab")
    command = [sys.executable, "-m", "medcam_dicom.cli", "serve", "--spool", str(workdir / "spool"), "--bind",
               "127.0.0.1", "--port", str(orthanc.service_port), "--ae-title", orthanc.service_aet,
               "--destination", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}", "--stable-seconds", "2", *extra]
    return subprocess.Popen(command, stdout=log, stderr=log)


def take_screenshots(orthanc: Orthanc, studies: list[tuple[str, str]], folder: Path, port: int) -> None:
    """OHIF screenshots (``ohif-<name>.png``) of each study with its SEG shown."""
    sys.path.insert(0, str(ORTHANC_DIR))
    import ohif

    dist = ohif.prepare(Path(".cache/ohif").resolve())
    server = ohif.serve(dist, port, orthanc.http_port)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, study in studies:
            uid = orthanc.get(f"/studies/{study}")["MainDicomTags"]["StudyInstanceUID"]
            output = (folder / f"ohif-{name}.png").resolve()
            counts = ohif.screenshot(Path(".cache/ohif").resolve(), f"http://127.0.0.1:{port}/viewer?StudyInstanceUIDs={uid}",
                                     output, shutil.which("chromium") or "/usr/bin/chromium")
            print(f"  OHIF screenshot {output}: coloured viewport pixels {counts['before']} -> {counts['after']}, "
                  f"{counts['changed']} changed in place", flush=True)
            if not ohif.seg_shown(counts):
                raise RuntimeError(f"OHIF did not show the SEG of {name} (see {output})")
    finally:
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="medcam-local", help="Orthanc storage, spool and logs")
    parser.add_argument("--http-port", type=int, default=8042)
    parser.add_argument("--dicom-port", type=int, default=4242)
    parser.add_argument("--service-port", type=int, default=11112)
    parser.add_argument("--max-steps", type=int, help="Med-CAM steps (default: the demo models' 300)")
    parser.add_argument("--exit-when-done", action="store_true", help="stop once the results are in Orthanc")
    parser.add_argument("--screenshots", help="folder for OHIF screenshots of the two lesion studies "
                                              "(orthanc/ohif.py; needs npm and chromium)")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    orthanc = Orthanc(workdir / "orthanc-storage", args.http_port, args.dicom_port, args.service_port).start()
    extra = []
    if args.max_steps:
        models = workdir / "models"
        models.mkdir(exist_ok=True)
        shipped = Path(__file__).resolve().parents[1] / "medcam_dicom" / "models" / "descriptions"
        for name in ("demo-ct", "demo-mr", "demo-colour", "demo-any"):
            text = (shipped / f"{name}.yaml").read_text()
            (models / f"{name}.yaml").write_text(text + f"medcam: {{max_steps: {args.max_steps}, "
                                                        f"min_steps: {min(30, args.max_steps)}}}\n")
            extra += ["--model", str(models / f"{name}.yaml")]
    service = start_service(workdir, orthanc, extra)
    try:
        while not orthanc.service_answers():
            if service.poll() is not None:
                raise RuntimeError(f"the service exited; see {workdir / 'service.log'}")
            time.sleep(0.5)
        studies, lesion_studies = set(), []
        for path in demo_files(workdir):
            study = orthanc.upload(path)["ParentStudy"]
            studies.add(study)
            if path.name.startswith("lesion-"):
                lesion_studies.append((path.stem, study))
        print(f"Uploaded {len(studies)} demo studies to Orthanc; waiting for Med-CAM results ...", flush=True)
        while True:
            # every explained series gets an SR; only findings get a SEG (a "normal" study has none)
            done = {s["ParentStudy"] for s in orthanc.find_series(Modality="SR")} & studies
            if done == studies:
                break
            if service.poll() is not None:
                raise RuntimeError(f"the service exited; see {workdir / 'service.log'}")
            time.sleep(1)
        for study in sorted(studies):
            info = orthanc.get(f"/studies/{study}")
            print(f"  study {info['MainDicomTags'].get('StudyInstanceUID')}: "
                  f"http://127.0.0.1:{args.http_port}/app/explorer.html#study?uuid={study}")
        print(f"Orthanc Explorer: http://127.0.0.1:{args.http_port}/app/explorer.html ; DICOMweb: "
              f"http://127.0.0.1:{args.http_port}/dicom-web/ ; OHIF: python orthanc/ohif.py --orthanc-port "
              f"{args.http_port}")
        if args.screenshots:
            take_screenshots(orthanc, lesion_studies, Path(args.screenshots), args.http_port + 1)
        if not args.exit_when_done:
            print("Ctrl-C stops Orthanc and the service.", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(60)
        orthanc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
