#!/usr/bin/env bash
# System packages the tests use as real peers: dicom3tools (dciodvfy validates our SEG/SC/SR), dcmtk
# (echoscu/storescu as the modality, storescp for the receive benchmark), openssl (test certificates),
# redis-server (the queue for remote workers), orthanc + orthanc-dicomweb (the PACS round trip),
# libpixelmed-java (pixelmed's DicomSRValidator, the SR validator of IHE AI Results testing) with a JDK
# (the tests run many SRs through one validator with a single-file Java program, which needs the compiler).
# Installs only what is missing; needs root or sudo (CI runs as root).
set -euo pipefail
missing=()
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v Orthanc >/dev/null 2>&1 || missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
[ -e /usr/share/java/pixelmed.jar ] || missing+=(libpixelmed-java)
# pixelmed's runtime, with the compiler module that `java Program.java` needs
java --list-modules 2>/dev/null | grep -q '^jdk.compiler@' || missing+=(default-jdk-headless)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-system.sh: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
