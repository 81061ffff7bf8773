#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed (the review form's browser test
# drives it through playwright-python with executable_path=/usr/bin/chromium; no browser is
# ever downloaded by playwright). As root: apt-get installs it when missing. Not root and not
# installed: say so and carry on; the browser test then skips with the reason.
set -euo pipefail
BROWSER=${OXEN_TEST_CHROMIUM:-/usr/bin/chromium}
if [ -x "$BROWSER" ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo ">> $BROWSER not found and not root: skipping the install (the browser test will be skipped)." \
       "Install it with: sudo apt-get install -y chromium" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo ">> $BROWSER not found and no apt-get here: the browser test will be skipped." >&2
  exit 0
fi
echo ">> installing chromium (Debian package) for the review form's browser test"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
"$BROWSER" --version
