#!/usr/bin/env bash
# The benchmarks of bench/ in one command (see bench/bench.py --help):
#   bash bench/run.sh             # all scenarios, 3 repetitions, writes bench/results/results.{json,png}
#   bash bench/run.sh --quick     # smoke test (small N, 1 repetition), bench/results/quick.{json,png}
#   bash bench/run.sh -s local,db # some scenarios
#   bash bench/run.sh -s scale,poll,ssh-shell   # many calls (vs Dask), poll cost, a slow remote .bashrc
# Needs uv; Slurm and the test sshd for the slurm/executor/ssh/bigarg/poll/ssh-shell scenarios
# (bash scripts/services/up.sh slurm sshd, which also makes the user xprslow of ssh-shell; the
# remote venv: bash scripts/ci/make-remote-python.sh). The peers (original ExPyRe, submitit, Dask)
# are installed below into bench/.venv-peers from bench/requirements-peers.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet --break-system-packages --user uv
fi
# expyre: the workspace's own environment
uv sync --all-packages --locked --quiet
# the peers: a separate venv (both ExPyRes import as `expyre`)
peers="$here/.venv-peers"
if [[ ! -x "$peers/bin/python" ]]; then
    uv venv --quiet --python "$(uv run --no-sync python -c 'import sys; print(sys.executable)')" "$peers"
fi
VIRTUAL_ENV="$peers" uv pip install --quiet -r "$here/requirements-peers.txt"
exec uv run --no-sync python "$here/bench.py" "$@"
