#!/usr/bin/env bash
# Install the browser side of the frontend-tunnel tests (idempotent; a second run takes < 1 s):
#   * the real Sentry browser SDK (@sentry/browser), playwright-core (driver only: the browser is
#     Debian's Chromium from scripts/setup-browser.sh) and esbuild, from npm, in
#     tests/receivers/browser/node_modules, exactly as package-lock.json pins them;
#   * tests/receivers/browser/build/sentry-browser.js: @sentry/browser bundled for the test page
#     (the npm package has no browser bundle since v9).
# Usage: scripts/setup-frontend.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=tests/receivers/browser
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup-frontend: node and npm are needed (apt-get install nodejs npm)" >&2
  exit 1
fi
installed() { # version of an installed package, or nothing
  [ -f "$DIR/node_modules/$1/package.json" ] &&
    node -p "require('./$DIR/node_modules/$1/package.json').version" 2>/dev/null || true
}
wanted() { node -p "require('./$DIR/package.json').dependencies['$1']"; }
stale=""
for pkg in @sentry/browser playwright-core esbuild; do
  [ "$(installed "$pkg")" = "$(wanted "$pkg")" ] || stale=1
done
if [ -n "$stale" ]; then
  echo "setup-frontend: installing @sentry/browser@$(wanted @sentry/browser) (npm ci)"
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -n "$stale" ] || [ ! -s "$DIR/build/sentry-browser.js" ] ||
  [ "$DIR/entry.mjs" -nt "$DIR/build/sentry-browser.js" ]; then
  (cd "$DIR" && npm run --silent build >/dev/null)
fi
echo "setup-frontend: @sentry/browser $(installed @sentry/browser) bundled in $DIR/build"
