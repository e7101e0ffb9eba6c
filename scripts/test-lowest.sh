#!/usr/bin/env bash
# The lowest-versions job: the suite against the LOWEST version of every direct dependency that
# pyproject.toml allows (scripts/lowest-constraints.txt), so the ranges we publish are ranges we
# have run. .ci/run calls it after the main job (which runs at the newest versions).
#   scripts/test-lowest.sh [pytest args...]     (default: the whole suite)
# Builds .venv-lowest (widgettrace installed as a wheel, not editable, like CI's main job), checks
# every pinned distribution really is at its pin, then runs pytest there. Needs the receivers
# that scripts/test.sh sets up (.venv-bugsink, Spotlight's node modules).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-lowest
CONSTRAINTS=scripts/lowest-constraints.txt

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
rm -rf .scratch/wheel-lowest && mkdir -p .scratch/wheel-lowest
"$VENV/bin/python" -m pip wheel -q --no-deps -w .scratch/wheel-lowest .
"$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" ".[test]"
"$VENV/bin/python" -m pip install -q --no-deps --force-reinstall .scratch/wheel-lowest/widgettrace-*.whl
if [ -x scripts/setup-receivers.sh ] && [ ! -x .venv-bugsink/bin/python ]; then
  scripts/setup-receivers.sh
fi

# pip keeps what already satisfies a range; make sure every pin is what is installed.
"$VENV/bin/python" - "$CONSTRAINTS" <<'PY'
import sys
from importlib import metadata
wrong = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    installed = metadata.version(name)
    if installed != version:
        wrong.append(f"{name} {installed} (pinned {version})")
if wrong:
    sys.exit("test-lowest: not at the lowest versions: " + ", ".join(wrong))
print("test-lowest: every direct dependency at its lowest supported version")
PY

start=$(date +%s)
"$VENV/bin/pytest" -q -p no:cacheprovider "$@"
echo "test-lowest: suite at the lowest versions took $(( $(date +%s) - start )) s"
