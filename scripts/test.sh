#!/usr/bin/env bash
# Set up everything on a fresh machine of this kind (Debian 12, root) and run the whole test suite:
# uv, the workspace (all distributions, editable), the real schedulers and sshd (Slurm, the
# Torque-style PBS commands, Grid Engine, OpenSSH + a network-namespace "remote host"), a
# remote-side Python for the ssh user, the generated test config, then pytest (the workspace, then
# each distribution alone in a fresh venv: scripts/ci/per-dist.sh), the documentation
# (scripts/docs.sh) and the release check.
#
#   bash scripts/test.sh [pytest args...]
#
# Not root: the services cannot be started; the real-scheduler tests then skip with a reason
# (under CI=true a skip fails the run). EXPYRE_PYTEST_SYSTEMS narrows the systems (regexp).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.local/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

if ! command -v uv >/dev/null 2>&1; then
    step "installing uv (PyPI)"
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet --break-system-packages --user uv
fi

step "workspace: uv sync --all-packages --locked"
uv sync --all-packages --locked

config_dir="${EXPYRE_CI_DIR:-$PWD/.ci-state}"
if [ "$(id -u)" = 0 ]; then
    step "real services: Slurm, Torque-style PBS, Grid Engine, sshd, netns remote host"
    bash scripts/services/up.sh slurm pbs sge sshd netns
    step "remote-side Python for the ssh test users"
    bash scripts/ci/make-remote-python.sh
    step "test config"
    uv run --no-sync python scripts/ci/make_test_config.py "$config_dir/config.json"
    export EXPYRE_PYTEST_CONFIG="$config_dir/config.json"
else
    echo "not root: real schedulers and sshd are not started; their tests will skip (fail under CI=true)"
fi
step "architecture: lint-imports (the import contracts of pyproject.toml, docs/architecture.md)"
uv run --no-sync lint-imports
step "types: mypy --strict on a typed user script (examples/typed_usage.py) and on expyre.executor, expyre.func, expyre.progress"
uv run --no-sync mypy --strict examples/typed_usage.py
uv run --no-sync mypy --strict --follow-imports=silent \
    expyre_core/src/expyre/executor.py expyre_core/src/expyre/func.py expyre_core/src/expyre/progress.py

export EXPYRE_PYTEST_SYSTEMS="${EXPYRE_PYTEST_SYSTEMS:-.*}"
export EXPYRE_PROGRESS=0

# Two phases: most tests wait on schedulers rather than compute, so they run in parallel
# (pytest-xdist, EXPYRE_TEST_WORKERS processes, default 4); the few marked `serial` disturb the
# shared services (stop sshd, drain the node) and run alone afterwards. Exit 5 = nothing selected.
workers="${EXPYRE_TEST_WORKERS:-4}"
rc=0
if [ "$workers" -gt 1 ]; then
    step "pytest, parallel phase ($workers workers): -m 'not serial'"
    uv run --no-sync pytest -n "$workers" -m "not serial" "$@" || rc=$?
    [ "$rc" = 5 ] && rc=0
    step "pytest, serial phase: -m serial"
    rc2=0
    uv run --no-sync pytest -p no:xdist -m serial "$@" || rc2=$?
    [ "$rc2" = 5 ] && rc2=0
    [ "$rc" = 0 ] && rc=$rc2
else
    step "pytest"
    uv run --no-sync pytest "$@" || rc=$?
    [ "$rc" = 5 ] && rc=0
fi

# Then each distribution alone: fresh venvs holding only it and its dependencies, its own tests/
# with -m "not slow and not serial" (the full set, slow tests included, ran above in the
# workspace). EXPYRE_PER_DIST=0 skips this phase (e.g. when narrowing the run with pytest args).
if [ "${EXPYRE_PER_DIST:-1}" != 0 ]; then
    step "per distribution: scripts/ci/per-dist.sh"
    rc3=0
    bash scripts/ci/per-dist.sh || rc3=$?
    [ "$rc" = 0 ] && rc=$rc3
fi

# The documentation site, built with warnings as errors, and its examples run (scripts/docs.sh).
# EXPYRE_DOCS=0 skips it.
if [ "${EXPYRE_DOCS:-1}" != 0 ]; then
    step "documentation: scripts/docs.sh (sphinx-build -W -n, then the pages' examples)"
    rc5=0
    bash scripts/docs.sh || rc5=$?
    [ "$rc" = 0 ] && rc=$rc5
fi

# Last, what a packager needs: every sdist and wheel builds, passes twine check, carries LICENSE and
# metadata, and the README example runs from a clean venv of expyre-core and one plugin.
# EXPYRE_RELEASE_CHECK=0 skips it.
if [ "${EXPYRE_RELEASE_CHECK:-1}" != 0 ]; then
    step "release check: build, twine check, install the wheels into a clean venv, run the example"
    rc4=0
    bash scripts/ci/release-check.sh || rc4=$?
    [ "$rc" = 0 ] && rc=$rc4
fi
exit "$rc"
