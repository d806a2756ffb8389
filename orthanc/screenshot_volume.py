"""A CT volume explained in 3D, seen in OHIF's MPR layout: the figure of docs/deployment.md.

Starts Orthanc and `medcam-dicom serve --model demo-ct3d` (the same `orthanc.json` and auto-routing Lua as
`run_local.py`), uploads a generated CT series (real CT anatomy with a planted finding,
`write_ct_volume_series`) to Orthanc, waits until the node has sent the SEG back into Orthanc, then opens the
study in OHIF with the MPR hanging protocol (axial, sagittal and coronal views of the volume), loads the SEG
and saves a screenshot. The check is objective, as for the 2D screenshots: viewport pixels the SEG changed.

    python orthanc/screenshot_volume.py --out docs/ohif-volume-mpr.png [--slices 200 --size 512]

Needs Orthanc (scripts/install-system.sh), node/npm and Debian's chromium (orthanc/ohif.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from run_local import ORTHANC_DIR, Orthanc, free_port, start_service


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workdir", type=Path, help="Orthanc storage, spool and logs (default: a temporary folder)")
    args = parser.parse_args()
    from medcam_dicom.dicom.examples import write_ct_volume_series

    sys.path.insert(0, str(ORTHANC_DIR))
    import ohif

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="medcam-volume-"))).resolve()
    orthanc = Orthanc(workdir / "orthanc-storage", free_port(), free_port(), free_port()).start()
    service = start_service(workdir, orthanc, ["--model", "demo-ct3d"])
    server = None
    try:
        while not orthanc.service_answers():
            if service.poll() is not None:
                raise RuntimeError(f"the service exited; see {workdir / 'service.log'}")
            time.sleep(0.5)
        paths, _ = write_ct_volume_series(workdir / "series", slices=args.slices, size=args.size)
        study = None
        for path in paths:
            study = orthanc.upload(path)["ParentStudy"]
        print(f"Uploaded {len(paths)} slices of {args.size}^2 to Orthanc; waiting for the SEG ...", flush=True)
        deadline = time.monotonic() + 600
        while not [s for s in orthanc.find_series(Modality="SEG") if s["ParentStudy"] == study]:
            if time.monotonic() > deadline or service.poll() is not None:
                raise RuntimeError(f"no SEG in Orthanc; see {workdir / 'service.log'}")
            time.sleep(1)
        uid = orthanc.get(f"/studies/{study}")["MainDicomTags"]["StudyInstanceUID"]
        cache = Path(".cache/ohif").resolve()
        dist = ohif.prepare(cache)
        port = free_port()
        server = ohif.serve(dist, port, orthanc.http_port)
        output = args.out.resolve()
        output.parent.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{port}/viewer?StudyInstanceUIDs={uid}&hangingprotocolId=mpr"
        counts = ohif.screenshot(cache, url, output, shutil.which("chromium") or "/usr/bin/chromium")
        print(f"OHIF MPR screenshot {output}: coloured viewport pixels {counts['before']} -> {counts['after']}, "
              f"{counts['changed']} changed in place", flush=True)
        if not ohif.seg_shown(counts):
            print(f"OHIF did not show the SEG (see {output})", file=sys.stderr)
            return 1
        return 0
    finally:
        if server is not None:
            server.shutdown()
        service.terminate()
        service.wait(60)
        orthanc.stop()


if __name__ == "__main__":
    sys.exit(main())
