#!/usr/bin/env bash
# A world-readable Python for the "remote" side of the ssh tests: the test users (xprtest,
# xprpbs) run jobs with it over ssh, so it must have cloudpickle of the SAME version as the
# driver's workspace venv (from uv.lock) and numpy (the driver venv's version), and the same Python minor version (functions
# pickled by value carry bytecode). The driver's own Python lives under /root (mode 0700), which
# the test users cannot enter, so this venv is built on a Python they can run.
#
#   bash scripts/ci/make-remote-python.sh [DEST]      (default /opt/expyre-remote-venv)
#
# Idempotent: does nothing if DEST already has the right versions. Prints DEST/bin/python.
# Env: EXPYRE_REMOTE_PYTHON_BASE  the base interpreter (default: python3.X on /usr/bin or
#      /usr/local/bin, X = the workspace venv's minor version).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${1:-/opt/expyre-remote-venv}"
log() { printf '[make-remote-python] %s\n' "$*" >&2; }
die() { printf 'ERROR: [make-remote-python] %s\n' "$*" >&2; exit 1; }

command -v uv >/dev/null || die "uv is needed (it builds the workspace venv too)"
lock="$here/uv.lock"
[[ -r "$lock" ]] || die "no $lock"
locked() { awk -v n="$1" '/^\[\[package\]\]/{p=0} $0 == "name = \"" n "\"" {p=1} p && /^version = /{gsub(/"/,"",$3); print $3; exit}' "$lock"; }
cp_version=$(locked cloudpickle)
np_version=""
[[ -n "$cp_version" ]] || die "cloudpickle is not in $lock"

driver_py="$here/.venv/bin/python"
if [[ -x "$driver_py" ]]; then
    minor=$("$driver_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
else
    minor=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    log "no workspace venv yet; using the minor version of python3 on PATH: $minor"
fi

base="${EXPYRE_REMOTE_PYTHON_BASE:-}"
if [[ -z "$base" ]]; then
    for c in "/usr/bin/python$minor" "/usr/local/bin/python$minor"; do
        [[ -x "$c" ]] && { base="$c"; break; }
    done
fi
if [[ -z "$base" ]]; then
    command -v apt-get >/dev/null || die "no python$minor in /usr/bin or /usr/local/bin; set EXPYRE_REMOTE_PYTHON_BASE"
    log "installing python$minor from Debian's packages"
    apt-get -q update >/dev/null && apt-get -q -y install --no-install-recommends "python$minor" >/dev/null ||
        die "apt-get install python$minor failed; set EXPYRE_REMOTE_PYTHON_BASE to a Python $minor the test users can run"
    base="/usr/bin/python$minor"
fi
# numpy: the version the driver's venv has (uv.lock holds one per Python version range)
if [[ -x "$driver_py" ]]; then
    np_version=$("$driver_py" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
fi
np_spec="numpy${np_version:+==$np_version}"
got=$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ "$got" == "$minor" ]] || die "$base is Python $got, the driver's venv is $minor"

check() {
    [[ -x "$dest/bin/python" ]] &&
        runuser -u nobody -- "$dest/bin/python" -c "
import sys, cloudpickle, numpy
assert '%d.%d' % sys.version_info[:2] == '$minor', sys.version
assert cloudpickle.__version__ == '$cp_version', cloudpickle.__version__
assert '$np_version' in ('', numpy.__version__), numpy.__version__
" 2>/dev/null
}
if check; then
    log "$dest is up to date (Python $minor, cloudpickle $cp_version, numpy)"
    printf '%s\n' "$dest/bin/python"
    exit 0
fi

log "building $dest on $base (Python $minor) with cloudpickle==$cp_version and $np_spec"
rm -rf "$dest"
uv venv -q --python "$base" --no-project "$dest" >&2
# copies, not hardlinks into root's uv cache
uv pip install -q --python "$dest/bin/python" --link-mode=copy "cloudpickle==$cp_version" "$np_spec" >&2
chmod -R a+rX "$dest"
check || die "$dest/bin/python does not import cloudpickle $cp_version and numpy as user nobody"
log "ready: $dest/bin/python"
printf '%s\n' "$dest/bin/python"
