#!/usr/bin/env bash
# Install Debian's Chromium for the tests that drive a real headless browser (HTML report, the
# frontend tunnel). Idempotent; prints the browser's path. A browser build downloaded by a tool
# (playwright install) cannot be fetched on these machines: Debian's package is the one that works.
# Usage: scripts/setup-browser.sh
set -euo pipefail
find_browser() {
  for b in chromium chromium-browser google-chrome; do
    command -v "$b" 2>/dev/null && return 0
  done
  return 1
}
if ! find_browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup-browser: installing chromium with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup-browser: a headless Chromium is needed (apt-get install chromium)" >&2
    exit 1
  fi
fi
find_browser
