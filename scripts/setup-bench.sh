#!/usr/bin/env bash
# Set up what benchmarks/run.py needs, from the repository's own files:
#   scripts/setup-bench.sh
# - .venv: widgettrace (editable) with the examples and otlp extras, created only if missing
#   (scripts/test.sh normally creates it);
# - .venv-bench: the peers (logfire, ddtrace, sentry-sdk, OpenTelemetry, FastAPI, uvicorn,
#   requests) from pyproject's `bench` extra, WITHOUT widgettrace, so upstream
#   `opentelemetry-instrument` there cannot pick our distro. Packages both venvs share are pinned
#   to the versions in .venv, so each configuration runs the same FastAPI/uvicorn/OTel/Sentry code;
# - wrk (Debian package) as the load generator, when missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[examples,otlp]"
fi

if [ ! -x .venv-bench/bin/python ]; then
  "$PY" -m venv .venv-bench
  .venv-bench/bin/python -m pip install -q --upgrade pip >/dev/null
fi
# The bench extra with self-references (widgettrace[a,b]) replaced by what they pull in
# (widgettrace's own dependencies and those extras), so the peers get the same libraries we do.
.venv/bin/python - > .venv-bench/bench-requirements.txt <<'EOF'
import re

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
out: list[str] = []
seen: set[str] = set()


def expand(reqs: list[str]) -> None:
    for req in reqs:
        m = re.match(r"\s*widgettrace\s*(?:\[([^\]]*)\])?", req, re.I)
        if not m:
            out.append(req)
            continue
        for name in ["", *(e.strip() for e in (m.group(1) or "").split(",") if e.strip())]:
            if name not in seen:
                seen.add(name)
                expand(project["dependencies"] if name == "" else extras[name])


expand(extras["bench"])
# Upstream zero-code setup needs opentelemetry-distro (it registers the SDK configurator);
# it lives only in this venv, where it cannot compete with our distro.
if not any(re.match(r"opentelemetry-distro\b", r) for r in out):
    from importlib.metadata import version

    out.append(f"opentelemetry-distro=={version('opentelemetry-instrumentation')}")
print("\n".join(dict.fromkeys(out)))
EOF
# Same versions as .venv for every distribution both venvs have.
.venv/bin/python -m pip freeze --exclude-editable 2>/dev/null \
  | grep -E '^[A-Za-z0-9_.-]+==' > .venv-bench/bench-constraints.txt || true

if ! .venv-bench/bin/python -m pip install -q -r .venv-bench/bench-requirements.txt \
      -c .venv-bench/bench-constraints.txt; then
  echo "setup-bench: pinned install failed; installing the bench extra unpinned" >&2
  .venv-bench/bin/python -m pip install -q -r .venv-bench/bench-requirements.txt
fi
if .venv-bench/bin/python -I -c "import widgettrace" 2>/dev/null; then
  echo "setup-bench: widgettrace must not be importable in .venv-bench" >&2
  exit 1
fi

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    echo "setup-bench: wrk not found (Debian package wrk); bench_e2e.py needs it" >&2
  fi
fi
echo "setup-bench: ok ($(.venv-bench/bin/python -m pip freeze | grep -ciE '^(logfire|ddtrace|sentry-sdk)=') peers)"
