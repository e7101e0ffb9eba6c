#!/usr/bin/env bash
# Install the real receivers the end-to-end tests start on 127.0.0.1 (idempotent; seconds when done):
#   * Bugsink (PyPI) in its own venv .venv-bugsink (it pulls Django, which must not be in the app's
#     venv: sentry-sdk would switch on its Django integration there), plus pre-migrated databases
#     and an API token in .venv-bugsink/widgettrace-template (tests copy them instead of migrating);
#   * Spotlight's node package in widgettrace/devtools/spotlight_node/node_modules (hono pinned by overrides).
# Usage: scripts/setup-receivers.sh        (PYTHON=python3.x to pick the interpreter for the venv)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUGSINK_SPEC="bugsink==2.6.2"
BUGSINK_VERSION="2.6.2"
SPOTLIGHT_DIR=widgettrace/devtools/spotlight_node
SPOTLIGHT_VERSION="4.11.8"
HONO_VERSION="4.12.25"  # newer hono breaks every Spotlight request (package.json overrides)
start=$(date +%s)

# --- Spotlight (npm, in the background while Bugsink installs) ---------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup-receivers: installing nodejs and npm with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "setup-receivers: node and npm are needed for Spotlight (apt-get install nodejs npm)" >&2
    exit 1
  fi
fi
node_version() { # version of an installed package, or nothing
  [ -f "$SPOTLIGHT_DIR/node_modules/$1/package.json" ] &&
    node -p "require('./$SPOTLIGHT_DIR/node_modules/$1/package.json').version" 2>/dev/null || true
}
npm_pid=""
npm_log=$(mktemp)
if [ "$(node_version @spotlightjs/spotlight)" != "$SPOTLIGHT_VERSION" ] ||
  [ "$(node_version hono)" != "$HONO_VERSION" ]; then
  echo "setup-receivers: installing @spotlightjs/spotlight@$SPOTLIGHT_VERSION (npm)"
  npm_cmd=install
  [ -f "$SPOTLIGHT_DIR/package-lock.json" ] && npm_cmd=ci
  (cd "$SPOTLIGHT_DIR" && npm "$npm_cmd" --no-audit --no-fund --loglevel=error) >"$npm_log" 2>&1 &
  npm_pid=$!
fi

# --- Bugsink ---------------------------------------------------------------------------------
installed=""
if [ -x .venv-bugsink/bin/python ]; then
  installed=$(.venv-bugsink/bin/python -c \
    "import importlib.metadata as m; print(m.version('bugsink'))" 2>/dev/null || true)
fi
if [ "$installed" != "$BUGSINK_VERSION" ]; then
  echo "setup-receivers: installing $BUGSINK_SPEC into .venv-bugsink"
  [ -x .venv-bugsink/bin/python ] || "$PY" -m venv .venv-bugsink
  .venv-bugsink/bin/python -m pip install -q --disable-pip-version-check "$BUGSINK_SPEC" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
# Migrated databases + token, rebuilt only when the Bugsink version changes.
"$PY" widgettrace/devtools/bugsink.py --build-template >/dev/null

if [ -n "$npm_pid" ]; then
  if ! wait "$npm_pid"; then
    cat "$npm_log" >&2
    echo "setup-receivers: npm failed in $SPOTLIGHT_DIR" >&2
    exit 1
  fi
  [ "$(node_version hono)" = "$HONO_VERSION" ] || {
    echo "setup-receivers: hono is not $HONO_VERSION after npm (check overrides)" >&2
    exit 1
  }
fi
rm -f "$npm_log"

echo "setup-receivers: Bugsink $BUGSINK_VERSION (.venv-bugsink), Spotlight $SPOTLIGHT_VERSION" \
  "($SPOTLIGHT_DIR) ready in $(( $(date +%s) - start )) s"
