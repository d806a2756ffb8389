"""Serve the prebuilt OHIF viewer (npm package @ohif/app, pinned) against Orthanc's DICOMweb from one
origin, and optionally open a study in headless Chromium with our SEG overlay shown and save a screenshot.

    python orthanc/ohif.py --orthanc-port 8042                      # viewer on http://127.0.0.1:3000
    python orthanc/ohif.py --orthanc-port 8042 --screenshot docs/ohif-ct.png --study <StudyInstanceUID>

Needs node/npm (the viewer and playwright-core are fetched once into --cache) and Debian's chromium.
The screenshot check is objective: pixels of the viewport canvas that change when the SEG is shown.
"""

from __future__ import annotations

import argparse
import http.client
import json
import mimetypes
import shutil
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OHIF_VERSION = "3.12.10"
PLAYWRIGHT_VERSION = "1.49.1"
HERE = Path(__file__).resolve().parent
PROXIED = ("/dicom-web", "/wado")


def prepare(cache: Path) -> Path:
    """Download @ohif/app's prebuilt dist/ and playwright-core into ``cache`` once; returns dist/."""
    dist = cache / f"ohif-app-{OHIF_VERSION}" / "package" / "dist"
    if not dist.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", f"@ohif/app@{OHIF_VERSION}", "--silent"], cwd=cache, check=True)
        with tarfile.open(cache / f"ohif-app-{OHIF_VERSION}.tgz") as archive:
            archive.extractall(cache / f"ohif-app-{OHIF_VERSION}", filter="data")
        (cache / f"ohif-app-{OHIF_VERSION}.tgz").unlink()
    if not (cache / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(cache),
                        f"playwright-core@{PLAYWRIGHT_VERSION}"], check=True)
    return dist


def serve(dist: Path, port: int, orthanc_port: int) -> ThreadingHTTPServer:
    """The viewer and a same-origin proxy to Orthanc (Host header passed through, so Orthanc's BulkDataURIs
    point back at this origin); unknown paths get index.html (OHIF routes such as /viewer)."""
    mimetypes.add_type("application/wasm", ".wasm")
    mimetypes.add_type("application/javascript", ".js")
    config = (HERE / "ohif-app-config.js").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            body = self.rfile.read(length) if length else None
            connection = http.client.HTTPConnection("127.0.0.1", orthanc_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "accept-encoding")}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser gave up on this request (a newer one replaced it): nothing to report
            connection.close()

        def _static(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/app-config.js":
                data, kind = config, "application/javascript"
            else:
                target = (dist / path.lstrip("/")).resolve()
                if not target.is_file() or dist.resolve() not in target.parents:
                    target = dist / "index.html"
                data = target.read_bytes()
                kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._proxy() if self.path.startswith(PROXIED) else self._static()

        def do_POST(self) -> None:  # noqa: N802
            self._proxy()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def screenshot(cache: Path, url: str, output: Path, chromium: str) -> dict:
    """Open ``url`` (a /viewer?StudyInstanceUIDs=... page), load the SEG and save a screenshot; returns the
    coloured pixels before and after the SEG was shown and the pixels it changed."""
    result = subprocess.run(["node", str(HERE / "ohif_screenshot.cjs"), url, str(output), chromium],
                            cwd=cache, capture_output=True, text=True, timeout=300,
                            env={"NODE_PATH": str(cache / "node_modules"), "PATH": "/usr/bin:/bin"})
    if result.returncode != 0:
        raise RuntimeError(f"screenshot failed: {result.stderr[-2000:]}{result.stdout[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def seg_shown(counts: dict) -> bool:
    """Whether the SEG visibly changed the viewport: pixels changed in place, or (when OHIF replaced the
    canvas with a differently sized one) the number of coloured pixels moved while an image is still shown."""
    return counts["changed"] > 100 or (counts["after"] > 0 and abs(counts["after"] - counts["before"]) > 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orthanc-port", type=int, default=8042)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--cache", default=".cache/ohif", help="where the viewer and playwright-core are kept")
    parser.add_argument("--study", help="StudyInstanceUID to open (with --screenshot)")
    parser.add_argument("--screenshot", help="PNG to write; needs --study")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    dist = prepare(cache)
    server = serve(dist, args.port, args.orthanc_port)
    base = f"http://127.0.0.1:{args.port}"
    try:
        if args.screenshot:
            if not args.study:
                parser.error("--screenshot needs --study")
            counts = screenshot(cache, f"{base}/viewer?StudyInstanceUIDs={args.study}", Path(args.screenshot).resolve(),
                                args.chromium)
            print(json.dumps(counts))
            return 0 if seg_shown(counts) else 1
        print(f"OHIF: {base} (Orthanc DICOMweb on port {args.orthanc_port}); Ctrl-C stops it.")
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
