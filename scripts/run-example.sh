#!/usr/bin/env bash
# Set up expyre on a fresh machine and run the README's example (numpy array sum) on the
# zero-config `local` system: no config.json, no queuing system needed.
#
#   bash scripts/run-example.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet --break-system-packages --user uv
fi
uv sync --all-packages --locked --quiet
# a throw-away expyre root, so the example never touches ~/.expyre
export EXPYRE_ROOT="${EXPYRE_ROOT:-$(mktemp -d /tmp/expyre-example.XXXXXX)}"
uv run --no-sync python examples/readme_example.py
echo "jobs database: $EXPYRE_ROOT/jobs.db   (list it with: EXPYRE_ROOT=$EXPYRE_ROOT uv run xpr ls)"
