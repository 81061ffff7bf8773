#!/usr/bin/env bash
# Make sure exiftool (Debian's libimage-exiftool-perl) is installed: the marking tests read the
# XMP back with it, an independent reader, rather than with the code that wrote it. As root
# (CI) apt-get installs it when missing; otherwise say how, and the tests fail naming it.
set -euo pipefail
if command -v exiftool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo ">> exiftool not found: install it with: sudo apt-get install -y libimage-exiftool-perl" >&2
  exit 0
fi
echo ">> installing exiftool (Debian package libimage-exiftool-perl) for the provenance tests"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends libimage-exiftool-perl >/dev/null
exiftool -ver
