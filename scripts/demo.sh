#!/usr/bin/env bash
# Installs Octavia and dubs the bundled sample video into Portuguese on the embedded default
# instance (SQLite + local media store under .octavia/). A second run skips finished stages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.octavia}"
.venv/bin/octavia dub samples/octavia_sample.mp4 --to "${OCTAVIA_DEMO_LANGUAGES:-pt}" --out out
