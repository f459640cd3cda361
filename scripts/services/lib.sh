# shellcheck shell=bash
# Shared helpers for the scripts in scripts/services/. Source it; do not run it.
#
#   . "$(dirname "$0")/lib.sh"
#
# Everything here is plain bash (5.x). The scripts that source it run as root on a
# Debian 12 machine without systemd.

# shellcheck disable=SC2034  # the constants are used by the scripts that source this file
set -euo pipefail

XPR_SERVICES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
XPR_SCRIPT="${XPR_SCRIPT:-$(basename "$0" .sh)}"
XPR_LOG_DIR=/var/log/expyre-services
XPR_STATE_DIR=/etc/expyre-services          # small persistent markers (e.g. netns enabled)
XPR_RUN_DIR=/run/expyre-services            # per-boot scratch (apt-update stamps, lock)
XPR_NETNS_MARKER="$XPR_STATE_DIR/netns.enabled"

# Fixed names used by several scripts.
XPR_TEST_USER=xprtest
XPR_PBS_USER=xprpbs
XPR_SLOW_USER=xprslow # like xprtest, with a slow ~/.bashrc (make-slow-user.sh)
XPR_TORQUE_DIR=/opt/slurm-torque
XPR_SSHD_DIR=/var/lib/expyre-test-sshd
XPR_SSHD_PORT=2222
XPR_NETNS=xpr-remote
XPR_VETH_HOST=xpr-veth0
XPR_VETH_NS=xpr-veth1
XPR_VETH_HOST_IP=10.250.0.1
XPR_VETH_NS_IP=10.250.0.2
XPR_SGE_ROOT=/var/lib/gridengine

# One id per top-level run, so that `apt-get update` happens at most once per run of
# up.sh (which exports it) or of a start script run on its own.
if [[ -z "${XPR_RUN_ID:-}" ]]; then
    XPR_RUN_ID_OWNER=$$ # this process started the run: it removes the run's stamps at exit
    XPR_RUN_ID="$$.$EPOCHSECONDS"
    export XPR_RUN_ID
fi
export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

install -d -m 0755 "$XPR_LOG_DIR" "$XPR_STATE_DIR" "$XPR_RUN_DIR" 2>/dev/null || true

# Every script ends through _xpr_exit: it removes the scratch directory, and when the
# script fails on an unexpected command (set -e) rather than through die, it still
# prints an ERROR line naming the command and line.
XPR_SCRATCH=""
XPR_DIED=""
XPR_LAST_CMD=""
XPR_LAST_LINE=""
_xpr_exit() {
    local rc=$?
    [[ -n "$XPR_SCRATCH" ]] && rm -rf "$XPR_SCRATCH"
    [[ "${XPR_RUN_ID_OWNER:-}" == "$$" ]] && rm -f "$XPR_RUN_DIR/apt-updated.$XPR_RUN_ID"
    if [[ $rc -ne 0 && -z "$XPR_DIED" ]]; then
        printf 'ERROR: [%s] failed (exit status %s) at line %s: %s (logs: %s)\n' \
            "$XPR_SCRIPT" "$rc" "${XPR_LAST_LINE:-?}" "${XPR_LAST_CMD:-?}" "$XPR_LOG_DIR" >&2
    fi
    return $rc
}
set -E
trap 'XPR_LAST_CMD=$BASH_COMMAND; XPR_LAST_LINE=$LINENO' ERR
trap _xpr_exit EXIT

# make_scratch: create this script's scratch directory $XPR_SCRATCH (removed at exit).
make_scratch() {
    XPR_SCRATCH="$XPR_RUN_DIR/tmp.$$"
    rm -rf "$XPR_SCRATCH"
    install -d -m 0755 "$XPR_SCRATCH"
}

log() {
    printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "$XPR_SCRIPT" "$*" >&2
}

# die MESSAGE [LOGFILE...]: print "ERROR: MESSAGE" and the last lines of each readable
# log file named, then exit 1.
die() {
    local msg="$1" f
    shift || true
    XPR_DIED=1
    printf 'ERROR: [%s] %s\n' "$XPR_SCRIPT" "$msg" >&2
    for f in "$@"; do
        if [[ -r "$f" ]]; then
            printf -- '----- last 40 lines of %s -----\n' "$f" >&2
            tail -n 40 "$f" >&2 || true
            printf -- '----- end of %s -----\n' "$f" >&2
        else
            printf -- '----- (log %s does not exist) -----\n' "$f" >&2
        fi
    done
    exit 1
}

require_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root"
}

# Serialise all service scripts: apt/dpkg and daemon restarts must not interleave.
# The lock is taken once per process tree (children of up.sh inherit it). Daemons are
# always started with fd 9 closed (see spawn) so they never keep the lock.
take_lock() {
    if [[ -z "${XPR_LOCK_HELD:-}" ]]; then
        exec 9>"$XPR_RUN_DIR/lock"
        flock -w 900 9 || die "another services script held $XPR_RUN_DIR/lock for 900 s"
        export XPR_LOCK_HELD=1
    fi
}

now() { printf '%s' "$EPOCHREALTIME"; }

# elapsed START: seconds since START (from `now`), one decimal.
elapsed() {
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

# wait_until DEADLINE_SECONDS DESCRIPTION COMMAND...
# Runs COMMAND (output discarded) until it succeeds, sleeping 0.05 s at first and at most
# 0.5 s between tries. Returns 0 when it succeeded, 1 (after a message) when the deadline
# passed.
wait_until() {
    local deadline="$1" what="$2"
    shift 2
    local start=$EPOCHREALTIME pause=0.05
    local end
    end=$(awk -v s="$start" -v d="$deadline" 'BEGIN { printf "%.3f", s + d }')
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if awk -v n="$EPOCHREALTIME" -v e="$end" 'BEGIN { exit !(n >= e) }'; then
            log "gave up after ${deadline}s waiting for: $what"
            return 1
        fi
        sleep "$pause"
        pause=$(awk -v p="$pause" 'BEGIN { p = p * 1.5; if (p > 0.5) p = 0.5; printf "%.3f", p }')
    done
}

# pid_of PIDFILE: print the pid stored in PIDFILE (empty if missing or not a number).
pid_of() {
    local f="$1" pid=""
    [[ -r "$f" ]] && read -r pid <"$f" 2>/dev/null || true
    [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s' "$pid"
    return 0
}

# proc_alive PID [COMM]: true when PID exists and is not a zombie/dead task. With COMM,
# the process name (/proc/PID/comm) must also equal COMM, so that a pid file left behind
# by a dead daemon never matches an unrelated process that got the same pid.
proc_alive() {
    local pid="$1" comm="${2:-}" stat state
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    # Field 3, after the command name in parentheses (which may contain spaces).
    state="${stat##*) }"
    state="${state%% *}"
    case "$state" in
        Z | X | x) return 1 ;;
    esac
    if [[ -n "$comm" ]]; then
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]] || return 1
    fi
    return 0
}

proc_gone() { ! proc_alive "$1"; }

# pid_alive PIDFILE [COMM]: true when the pid in PIDFILE is a live (non-zombie) process.
pid_alive() {
    local pid
    pid=$(pid_of "$1")
    [[ -n "$pid" ]] && proc_alive "$pid" "${2:-}"
}

# spawn LOGFILE COMMAND...: start a daemon that forks by itself, detached from our
# session, with stdin from /dev/null, stdout/stderr appended to LOGFILE and the lock fd
# closed. Returns the exit status of the command's foreground part.
spawn() {
    local out="$1"
    shift
    setsid "$@" </dev/null >>"$out" 2>&1 9>&-
}

# spawn_bg LOGFILE COMMAND...: the same for a program that stays in the foreground.
spawn_bg() {
    local out="$1"
    shift
    setsid -f "$@" </dev/null >>"$out" 2>&1 9>&-
}

# stop_pidfile NAME PIDFILE COMM [DEADLINE]: SIGTERM the process in PIDFILE (only if its
# name is COMM), wait until it is gone, SIGKILL after DEADLINE seconds. Never by name.
stop_pidfile() {
    local name="$1" pidfile="$2" comm="$3" deadline="${4:-20}" pid
    pid=$(pid_of "$pidfile")
    if [[ -z "$pid" ]] || ! proc_alive "$pid" "$comm"; then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until "$deadline" "$name (pid $pid) to exit" proc_gone "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for ${deadline}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 10 "$name (pid $pid) to die" proc_gone "$pid" || return 1
    fi
    rm -f "$pidfile"
}

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

APT_LOG="$XPR_LOG_DIR/apt.log"
APT_OPTS=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# apt_update [force]: `apt-get update`, at most once per run unless forced.
apt_update() {
    local stamp="$XPR_RUN_DIR/apt-updated.$XPR_RUN_ID"
    if [[ "${1:-}" != force && -e "$stamp" ]]; then
        return 0
    fi
    log "apt-get update"
    if ! apt-get -q -o DPkg::Lock::Timeout=300 update >>"$APT_LOG" 2>&1; then
        return 1
    fi
    touch "$stamp"
}

# apt_install PKG...: install the packages that are not installed yet (no recommends,
# non-interactive). One retry after a fresh `apt-get update` and `dpkg --configure -a`.
apt_install() {
    local missing=() p t0
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    t0=$(now)
    log "apt-get install ${missing[*]}"
    if apt_update && apt-get "${APT_OPTS[@]}" install "${missing[@]}" >>"$APT_LOG" 2>&1; then
        log "installed ${missing[*]} in $(elapsed "$t0")s"
        return 0
    fi
    log "apt-get install failed once; retrying after apt-get update"
    dpkg --configure -a >>"$APT_LOG" 2>&1 || true
    if apt_update force && apt-get "${APT_OPTS[@]}" install "${missing[@]}" >>"$APT_LOG" 2>&1; then
        log "installed ${missing[*]} in $(elapsed "$t0")s (second try)"
        return 0
    fi
    die "apt-get install ${missing[*]} failed twice" "$APT_LOG"
}

# ensure_user NAME: an ordinary user with a home directory, bash, and a locked password.
ensure_user() {
    local name="$1"
    if ! id -u "$name" >/dev/null 2>&1; then
        log "creating user $name"
        useradd --create-home --shell /bin/bash "$name"
    fi
    local home
    home=$(getent passwd "$name" | cut -d: -f6)
    if [[ ! -d "$home" ]]; then
        install -d -m 0755 -o "$name" -g "$(id -gn "$name")" "$home"
    fi
    # Locked password ("!" prefix): key login only (sshd uses PAM, which accepts that).
    if [[ "$(getent shadow "$name" | cut -d: -f2)" != '!'* ]]; then
        usermod --lock "$name" >/dev/null 2>&1 || passwd -l "$name" >/dev/null
    fi
}

user_home() { getent passwd "$1" | cut -d: -f6; }

# install_if_changed SRC DEST MODE OWNER: copy SRC to DEST if contents differ; returns 0
# when DEST changed, 1 when it was already identical. Mode and owner are always set.
install_if_changed() {
    local src="$1" dest="$2" mode="$3" owner="$4" rc=1
    if ! cmp -s "$src" "$dest"; then
        install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$src" "$dest"
        rc=0
    fi
    chmod "$mode" "$dest"
    chown "$owner" "$dest"
    return $rc
}

# set_block FILE TAG CONTENT: keep exactly one "# >>> TAG" ... "# <<< TAG" block with
# CONTENT in FILE (appended if absent). Returns 0 when FILE changed.
set_block() {
    local file="$1" tag="$2" content="$3" tmp
    tmp=$(mktemp)
    if [[ -e "$file" ]]; then
        awk -v b="# >>> $tag" -v e="# <<< $tag" '
            $0 == b { skip = 1; next }
            $0 == e { skip = 0; next }
            !skip { print }' "$file" >"$tmp"
    fi
    printf '# >>> %s\n%s\n# <<< %s\n' "$tag" "$content" "$tag" >>"$tmp"
    if cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1
    fi
    if [[ -e "$file" ]]; then
        cat "$tmp" >"$file" # keep owner and mode
    else
        mv "$tmp" "$file"
        tmp=""
    fi
    rm -f "${tmp:-/nonexistent}"
    return 0
}

netns_enabled() { [[ -e "$XPR_NETNS_MARKER" ]]; }

short_host() { hostname -s; }

# host_addr: the IPv4 address the short host name resolves to. It must be a loopback
# address (every daemon here is bound to it); a name that does not resolve at all is
# mapped to 127.0.0.1 in /etc/hosts.
host_addr() {
    local h addr
    h=$(short_host)
    addr=$(getent ahostsv4 "$h" | awk 'NR == 1 { print $1 }')
    if [[ -z "$addr" ]]; then
        log "host name $h does not resolve; adding '127.0.0.1 $h' to /etc/hosts"
        set_block /etc/hosts "expyre hostname" "127.0.0.1 $h" >/dev/null || true
        addr=127.0.0.1
    fi
    [[ "$addr" == 127.* ]] ||
        die "host name $h resolves to $addr, not to a loopback address; map it to 127.0.0.1 in /etc/hosts first"
    printf '%s' "$addr"
}

# netns_mark_enabled: record that the network-namespace "remote host" is wanted, and name
# its address in /etc/hosts (xpr-remote). Done before Slurm and SGE are configured, so
# that both pick the namespace up (slurmctld/slurmdbd reachable from it, SGE submit host).
netns_mark_enabled() {
    touch "$XPR_NETNS_MARKER"
    set_block /etc/hosts "expyre netns" "$XPR_VETH_NS_IP $XPR_NETNS" || true
}

# xpr_daemons: one line per daemon these scripts manage, in start order:
#   NAME PIDFILE COMM
xpr_daemons() {
    local execd_pid=/var/spool/gridengine/execd/localhost/execd.pid f
    for f in /var/spool/gridengine/execd/*/execd.pid; do
        [[ -e "$f" ]] && { execd_pid="$f"; break; }
    done
    cat <<EOF
munged /run/munge/munged.pid munged
mariadbd /run/mysqld/mysqld.pid mariadbd
slurmdbd /run/slurmdbd.pid slurmdbd
slurmctld /run/slurmctld.pid slurmctld
slurmd /run/slurmd.pid slurmd
sge_qmaster /var/spool/gridengine/qmaster/qmaster.pid sge_qmaster
sge_execd $execd_pid sge_execd
sshd $XPR_SSHD_DIR/sshd.pid sshd
netns-sshd $XPR_SSHD_DIR/netns-sshd.pid sshd
EOF
}
