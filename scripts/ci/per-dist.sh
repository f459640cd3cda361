#!/usr/bin/env bash
# Each distribution's tests, with only that distribution and its dependencies installed.
#
#   bash scripts/ci/per-dist.sh [pytest args...]
#
# For expyre-core alone, then expyre-core + each plugin under plugins/ (and + the example plugin of
# examples/plugin/), this builds a fresh venv with uv from the workspace sources (regular,
# non-editable installs, checked: not the workspace's .venv), adds the test tools (pytest,
# pytest-xdist, numpy) and runs that distribution's tests/ there:
#
#   expyre-core            expyre_core/tests
#   expyre-<x>             plugins/expyre_<x>/tests
#   expyre-shellq          examples/plugin/tests
#
# A test that needs another distribution belongs in the root tests/ (cross-distribution tests).
# Default pytest args: -m "not slow and not serial": scripts/test.sh runs the full set (slow ones
# included) in the workspace first, so this pass only proves the distributions stand alone; the
# serial tests disturb shared services and run only in test.sh's serial phase. Real-scheduler
# tests in a plugin's tests do run here (with EXPYRE_PYTEST_CONFIG as in test.sh), on the selected
# systems whose transport is installed: a scheduler plugin alone reaches its systems on this
# machine; its systems behind ssh run in the workspace phase, where expyre-ssh is installed
# (expyre.testing.selected_systems).
#
# pytest runs from the repository root with --rootdir and --confcutdir set to it, so the root
# conftest.py is loaded: under CI=true a skipped test fails the run. The script checks that it was
# loaded (its report header line) and fails otherwise.
#
# Environment: EXPYRE_PER_DIST_WORKERS (xdist workers, default 2), EXPYRE_PER_DIST_PYTHON (the
# interpreter uv uses for the venvs; default: uv's choice), EXPYRE_PER_DIST_ONLY (a regexp of
# distribution names to run, e.g. 'core|slurm'), EXPYRE_PER_DIST_DIR (where the venvs go; default
# a temporary directory, removed afterwards).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$HOME/.local/bin:$PATH"
repo="$PWD"

workers="${EXPYRE_PER_DIST_WORKERS:-2}"
only="${EXPYRE_PER_DIST_ONLY:-.*}"
if [ -n "${EXPYRE_PER_DIST_DIR:-}" ]; then
    work="$EXPYRE_PER_DIST_DIR"
    mkdir -p "$work"
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/expyre-per-dist.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
fi
pytest_args=("$@")
[ "${#pytest_args[@]}" = 0 ] && pytest_args=(-m "not slow and not serial")
xdist=()
[ "$workers" -gt 1 ] && xdist=(-n "$workers")
python_arg=()
[ -n "${EXPYRE_PER_DIST_PYTHON:-}" ] && python_arg=(--python "$EXPYRE_PER_DIST_PYTHON")

# name | sources to install | tests
dists=("expyre-core|expyre_core|expyre_core/tests")
for p in plugins/expyre_*/; do
    p="${p%/}"
    dists+=("expyre-${p#plugins/expyre_}|expyre_core $p|$p/tests")
done
dists+=("expyre-shellq|expyre_core examples/plugin|examples/plugin/tests")

failed=()
for entry in "${dists[@]}"; do
    IFS='|' read -r name sources tests <<<"$entry"
    [[ "$name" =~ $only ]] || continue
    printf '\n== %s: fresh venv with %s; pytest %s\n' "$name" "$sources" "$tests"
    venv="$work/${name}"
    rm -rf "$venv"
    uv venv --quiet "${python_arg[@]}" "$venv"
    srcs=()
    for s in $sources; do srcs+=("./$s"); done
    # --no-sources: the workspace's [tool.uv.sources] would install expyre-core editable (from
    # expyre_core/src); the distributions are built and installed like any user's
    uv pip install --quiet --no-sources --python "$venv/bin/python" "${srcs[@]}" pytest pytest-xdist numpy
    "$venv/bin/python" - "$repo" <<'PY'
import pathlib, sys
import expyre
repo = pathlib.Path(sys.argv[1]).resolve()
if pathlib.Path(expyre.__file__).resolve().is_relative_to(repo):
    sys.exit(f"expyre is imported from the workspace ({expyre.__file__}), not from the fresh venv")
PY
    log="$work/${name}.log"
    rc=0
    # (PYTHONPATH emptied: nothing of the workspace may leak in)
    env -u PYTHONPATH -u VIRTUAL_ENV "$venv/bin/python" -m pytest --rootdir="$repo" --confcutdir="$repo" \
        -c "$repo/pyproject.toml" -p no:cacheprovider "${xdist[@]}" "${pytest_args[@]}" "$tests" 2>&1 | tee "$log" \
        || rc=${PIPESTATUS[0]}
    [ "$rc" = 5 ] && rc=0  # nothing selected
    if ! grep -q "^expyre: skipped tests " "$log"; then
        echo "$name: the repository's conftest.py was not loaded (no 'expyre: skipped tests' report header)" >&2
        rc=1
    fi
    [ "$rc" = 0 ] || failed+=("$name")
done

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nper-distribution tests failed for: %s\n' "${failed[*]}" >&2
    exit 1
fi
printf '\nper-distribution tests passed\n'
