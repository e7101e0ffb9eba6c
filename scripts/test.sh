#!/usr/bin/env bash
# Set up everything the test suite needs from the repo's own files, then run it.
#   scripts/test.sh [pytest args...]
# Creates .venv (widgettrace + test extras), .venv-bugsink and Spotlight's node modules
# (scripts/setup-receivers.sh), Chromium and the browser SDK (setup-browser.sh, setup-frontend.sh),
# a real opentelemetry-distro beside ours for the distro-conflict
# test, then runs pytest. WIDGETTRACE_INSTALL=wheel installs a built wheel instead of an editable
# checkout (CI does this, so the installed package is what gets tested).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "${WIDGETTRACE_INSTALL:-editable}" = "wheel" ]; then
  rm -rf .scratch/wheel && mkdir -p .scratch/wheel
  .venv/bin/python -m pip wheel -q --no-deps -w .scratch/wheel .
  .venv/bin/python -m pip install -q ".[test]"
  .venv/bin/python -m pip install -q --no-deps --force-reinstall .scratch/wheel/widgettrace-*.whl
else
  .venv/bin/python -m pip install -q -e ".[test]"
fi
if [ ! -d .venv-extra/opentelemetry-distro/opentelemetry/distro ]; then
  .venv/bin/python -m pip install -q --no-deps --target .venv-extra/opentelemetry-distro \
    "opentelemetry-distro==0.66b2"
fi
if [ -x scripts/setup-receivers.sh ]; then
  scripts/setup-receivers.sh
fi
# Headless Chromium and the Sentry browser SDK for the frontend-tunnel tests.
scripts/setup-browser.sh >/dev/null
scripts/setup-frontend.sh

.venv/bin/ruff check .
scripts/typecheck.sh
.venv/bin/pytest "$@"
