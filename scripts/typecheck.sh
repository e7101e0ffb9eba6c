#!/usr/bin/env bash
# mypy --strict over the widgettrace package as it is installed: widgettrace/, instrumentation/
# and exporters/ are mapped into one package by setuptools' package-dir, which mypy cannot follow,
# so lay the same tree out with symlinks and check that.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=.scratch/typecheck
rm -rf "$tree" && mkdir -p "$tree/widgettrace"
for f in widgettrace/*; do ln -s "$PWD/$f" "$tree/widgettrace/$(basename "$f")"; done
ln -s "$PWD/instrumentation" "$tree/widgettrace/instrumentation"
ln -s "$PWD/exporters" "$tree/widgettrace/exporters"
ln -s "$PWD/insights" "$tree/widgettrace/insights"
cd "$tree" && ../../.venv/bin/mypy --config-file ../../pyproject.toml -p widgettrace "$@"
