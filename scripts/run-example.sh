#!/usr/bin/env bash
# Set up (first time) and run the example widget platform under opentelemetry-instrument, on the
# embedded default: with no SENTRY_DSN, errors and transactions go to .claude/logs/sentry.log.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/opentelemetry-instrument ] || ! .venv/bin/python -c "import widgettrace, fastapi, mcp" 2>/dev/null; then
  "${PYTHON:-python3}" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[examples]"
fi
export PATH="$PWD/.venv/bin:$PATH"
exec opentelemetry-instrument python examples/run.py "$@"
