#!/usr/bin/env bash
# Bring up Son of Grid Engine 8.1.9 (Debian's gridengine-*) on this machine: sge_qmaster +
# sge_execd without systemd, queue all.q, parallel environment smp, fast scheduling.
# Idempotent: configuration is compared and only changed objects are rewritten.
#
# Env:
#   SGE_SLOTS=4        slots of all.q on this host
#   SGE_ALLOW_ROOT=1   global min_uid/min_gid 0 so root can submit; 0 keeps Debian's 1000
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
take_lock

SLOTS="${SGE_SLOTS:-4}"
ALLOW_ROOT="${SGE_ALLOW_ROOT:-1}"
[[ "$SLOTS" =~ ^[1-9][0-9]*$ ]] || die "SGE_SLOTS must be a positive integer, not '$SLOTS'"
[[ "$ALLOW_ROOT" == 0 || "$ALLOW_ROOT" == 1 ]] || die "SGE_ALLOW_ROOT must be 0 or 1"

HOST=$(short_host)
host_addr >/dev/null # dies unless the host name resolves to a loopback address
export SGE_ROOT="$XPR_SGE_ROOT" SGE_CELL=default
COMMON="$SGE_ROOT/$SGE_CELL/common"
SPOOL=/var/spool/gridengine
QMASTER_PID="$SPOOL/qmaster/qmaster.pid"
QMASTER_LOG="$SPOOL/qmaster/messages"
t0=$(now)

# ---------------------------------------------------------------- packages
if ! pkg_installed gridengine-master || ! pkg_installed gridengine-exec || ! pkg_installed gridengine-client; then
    log "presetting debconf answers for gridengine (master $HOST, cell default)"
    debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string $HOST
gridengine-client shared/gridengineconfig boolean true
gridengine-client shared/gridenginecell string default
gridengine-client shared/gridenginemaster string $HOST
EOF
fi
apt_install gridengine-master gridengine-exec gridengine-client
ensure_user "$XPR_TEST_USER"
[[ -r "$COMMON/bootstrap" ]] || die "$COMMON/bootstrap missing: the gridengine-master postinst did not set up the cell" "$APT_LOG"

find_bin() {
    local b
    for b in "/usr/sbin/$1" "/usr/lib/gridengine/$1" "$SGE_ROOT/bin/lx-amd64/$1"; do
        [[ -x "$b" ]] && { printf '%s' "$b"; return 0; }
    done
    die "$1 not found"
}
QMASTER_BIN=$(find_bin sge_qmaster)
EXECD_BIN=$(find_bin sge_execd)
QCONF=/usr/bin/qconf
QSTAT=/usr/bin/qstat

# ---------------------------------------------------------------- host_aliases (before qmaster)
# $HOST resolves to 127.0.0.1, whose reverse lookup is "localhost": without this every
# client gets "access denied (client IP resolved to host name "localhost" ...)".
printf '%s localhost\n' "$HOST" >"$XPR_RUN_DIR/host_aliases.new"
aliases_changed=0
install_if_changed "$XPR_RUN_DIR/host_aliases.new" "$COMMON/host_aliases" 0644 root:root && aliases_changed=1
rm -f "$XPR_RUN_DIR/host_aliases.new"

# ---------------------------------------------------------------- sge_qmaster
qmaster_ok() { "$QCONF" -sh >/dev/null 2>&1; }
execd_pidfile() {
    local f
    for f in "$SPOOL"/execd/*/execd.pid; do
        [[ -e "$f" ]] && { printf '%s' "$f"; return 0; }
    done
    printf '%s' "$SPOOL/execd/localhost/execd.pid"
}
stop_execd() { stop_pidfile sge_execd "$(execd_pidfile)" sge_execd 30; }

if [[ $aliases_changed == 1 ]] && pid_alive "$QMASTER_PID" sge_qmaster; then
    log "host_aliases changed; restarting the SGE daemons"
    stop_execd || die "could not stop sge_execd"
    stop_pidfile sge_qmaster "$QMASTER_PID" sge_qmaster 60 || die "could not stop sge_qmaster" "$QMASTER_LOG"
fi
if pid_alive "$QMASTER_PID" sge_qmaster && qmaster_ok; then
    log "sge_qmaster already running (pid $(pid_of "$QMASTER_PID"))"
else
    stop_pidfile sge_qmaster "$QMASTER_PID" sge_qmaster 60 || true
    log "starting sge_qmaster"
    spawn "$XPR_LOG_DIR/sge_qmaster.out" "$QMASTER_BIN" ||
        die "sge_qmaster failed to start" "$QMASTER_LOG" "$XPR_LOG_DIR/sge_qmaster.out"
    wait_until 60 "qconf -sh to answer" qmaster_ok ||
        die "sge_qmaster does not answer: $("$QCONF" -sh 2>&1 | tail -n1)" "$QMASTER_LOG" "$XPR_LOG_DIR/sge_qmaster.out"
fi

# ---------------------------------------------------------------- configuration
make_scratch
tmp="$XPR_SCRATCH"

# Print a qconf object file with continuation lines joined, comments dropped, and
# whitespace squeezed: the form in which two objects are compared.
sge_norm() {
    awk '
        /^#/ { next }
        { line = line $0 }
        /\\$/ { sub(/\\$/, "", line); next }
        { gsub(/[ \t]+/, " ", line); sub(/^ /, "", line); sub(/ $/, "", line); if (line != "") print line; line = "" }
    ' "$1"
}

# sge_edit IN OUT KEY VALUE [KEY VALUE ...]: IN with the values of KEYs replaced (keys
# missing from IN are appended).
sge_edit() {
    local in="$1" out="$2"
    shift 2
    : >"$tmp/kv"
    while (($#)); do
        printf '%s\t%s\n' "$1" "$2" >>"$tmp/kv"
        shift 2
    done
    sge_norm "$in" | awk -F'\t' '
        NR == FNR { want[$1] = $2; order[++n] = $1; next }
        {
            k = $0; sub(/ .*/, "", k)
            if (k in want) { printf "%-24s %s\n", k, want[k]; done[k] = 1 }
            else { v = $0; sub(/^[^ ]+ ?/, "", v); printf "%-24s %s\n", k, v }
        }
        END { for (i = 1; i <= n; i++) if (!(order[i] in done)) printf "%-24s %s\n", order[i], want[order[i]] }
    ' "$tmp/kv" - >"$out"
}

# same_object CURRENT WANTED: true when every key of WANTED has the same value in CURRENT
# (keys that only CURRENT has, such as an exec host's load_values, are ignored).
same_object() {
    cmp -s <(sge_norm "$2") <(sge_norm "$2" | awk 'NR == FNR { k = $0; sub(/ .*/, "", k); cur[k] = $0; next }
        { k = $0; sub(/ .*/, "", k); if (k in cur) print cur[k] }' <(sge_norm "$1") -)
}

# sge_apply WHAT NAME FILE SHOWOPT ADDOPT MODOPT: create or modify an object from FILE
# unless the current one (qconf SHOWOPT NAME) already has the same content.
sge_apply() {
    local what="$1" name="$2" file="$3" show="$4" add="$5" mod="$6"
    if "$QCONF" "$show" "$name" >"$tmp/current" 2>/dev/null; then
        if same_object "$tmp/current" "$file"; then
            return 0
        fi
        log "updating SGE $what $name"
        "$QCONF" "$mod" "$file" >>"$XPR_LOG_DIR/qconf.out" 2>&1 ||
            die "qconf $mod $what $name failed" "$XPR_LOG_DIR/qconf.out" "$QMASTER_LOG"
    else
        log "adding SGE $what $name"
        "$QCONF" "$add" "$file" >>"$XPR_LOG_DIR/qconf.out" 2>&1 ||
            die "qconf $add $what $name failed" "$XPR_LOG_DIR/qconf.out" "$QMASTER_LOG"
    fi
}

# Admin and submit host (and the network-namespace host xpr-remote, when enabled: it
# reaches the qmaster through its own /etc/hosts, where $HOST is the veth address).
"$QCONF" -sh 2>/dev/null | grep -qx "$HOST" ||
    { log "adding admin host $HOST"; "$QCONF" -ah "$HOST" >>"$XPR_LOG_DIR/qconf.out" 2>&1 || die "qconf -ah $HOST failed" "$XPR_LOG_DIR/qconf.out"; }
submit_hosts=("$HOST")
netns_enabled && submit_hosts+=("$XPR_NETNS")
for h in "${submit_hosts[@]}"; do
    if ! "$QCONF" -ss 2>/dev/null | grep -qx "$h"; then
        log "adding submit host $h"
        "$QCONF" -as "$h" >>"$XPR_LOG_DIR/qconf.out" 2>&1 || die "qconf -as $h failed" "$XPR_LOG_DIR/qconf.out" "$QMASTER_LOG"
    fi
done

# Execution host.
cat >"$tmp/$HOST" <<EOF
hostname              $HOST
load_scaling          NONE
complex_values        NONE
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
sge_apply "exec host" "$HOST" "$tmp/$HOST" -se -Ae -Me

# Host group @allhosts.
printf 'group_name @allhosts\nhostlist %s\n' "$HOST" >"$tmp/allhosts"
sge_apply "host group" @allhosts "$tmp/allhosts" -shgrp -Ahgrp -Mhgrp

# Parallel environment smp: all slots of a job on one host.
cat >"$tmp/smp" <<'EOF'
pe_name            smp
slots              9999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
sge_apply "parallel environment" smp "$tmp/smp" -sp -Ap -Mp

# Queue all.q, from the current queue or from the built-in template.
"$QCONF" -sq all.q >"$tmp/q.cur" 2>/dev/null || "$QCONF" -sq >"$tmp/q.cur" 2>/dev/null ||
    die "neither 'qconf -sq all.q' nor the queue template 'qconf -sq' worked" "$QMASTER_LOG"
sge_edit "$tmp/q.cur" "$tmp/all.q" qname all.q hostlist @allhosts slots "$SLOTS" pe_list smp \
    load_thresholds NONE shell /bin/bash
sge_apply queue all.q "$tmp/all.q" -sq -Aq -Mq

# Scheduler: run every second and right after submissions/finishes.
"$QCONF" -ssconf >"$tmp/sconf.cur" 2>/dev/null || die "qconf -ssconf failed" "$QMASTER_LOG"
sge_edit "$tmp/sconf.cur" "$tmp/sconf" schedule_interval 0:0:1 flush_submit_sec 1 flush_finish_sec 1 \
    job_load_adjustments NONE
if ! same_object "$tmp/sconf.cur" "$tmp/sconf"; then
    log "updating the SGE scheduler configuration"
    "$QCONF" -Msconf "$tmp/sconf" >>"$XPR_LOG_DIR/qconf.out" 2>&1 || die "qconf -Msconf failed" "$XPR_LOG_DIR/qconf.out"
fi

# Global configuration. `qconf -Mconf FILE` takes the configuration name from the FILE
# NAME, so the file must be called "global". login_shells none: job shells do not read login
# profiles. Otherwise root's profile runs `pyenv rehash` in every job, and a job killed mid-rehash
# leaves a stale lock that makes every later job wait 60 s (seen here). Jobs set up their
# environment through the system's "commands" instead, as expyre's config intends.
mkdir -p "$tmp/conf"
"$QCONF" -sconf global >"$tmp/global.cur" 2>/dev/null || die "qconf -sconf global failed" "$QMASTER_LOG"
reporting=$(sge_norm "$tmp/global.cur" | sed -n 's/^reporting_params //p')
[[ -n "$reporting" ]] || reporting="accounting=true reporting=false flush_time=00:00:15 joblog=false sharelog=00:00:00"
if [[ "$reporting" == *flush_time=* ]]; then
    reporting=$(sed 's/flush_time=[^ ]*/flush_time=00:00:01/' <<<"$reporting")
else
    reporting="$reporting flush_time=00:00:01"
fi
if [[ "$ALLOW_ROOT" == 1 ]]; then min_id=0; else min_id=1000; fi
sge_edit "$tmp/global.cur" "$tmp/conf/global" min_uid "$min_id" min_gid "$min_id" \
    reporting_params "$reporting" load_report_time 00:00:10 login_shells none
if ! same_object "$tmp/global.cur" "$tmp/conf/global"; then
    log "updating the SGE global configuration (min_uid $min_id, accounting flush 1 s, no login shells)"
    "$QCONF" -Mconf "$tmp/conf/global" >>"$XPR_LOG_DIR/qconf.out" 2>&1 || die "qconf -Mconf global failed" "$XPR_LOG_DIR/qconf.out"
fi

# ---------------------------------------------------------------- sge_execd
if pid_alive "$(execd_pidfile)" sge_execd; then
    log "sge_execd already running (pid $(pid_of "$(execd_pidfile)"))"
else
    stop_execd || true
    log "starting sge_execd"
    spawn "$XPR_LOG_DIR/sge_execd.out" "$EXECD_BIN" ||
        die "sge_execd failed to start" "$XPR_LOG_DIR/sge_execd.out" "$QMASTER_LOG"
    wait_until 30 "sge_execd pid file" bash -c "ls $SPOOL/execd/*/execd.pid" ||
        die "sge_execd wrote no pid file" "$XPR_LOG_DIR/sge_execd.out" "$QMASTER_LOG"
fi
EXECD_LOG="$(dirname "$(execd_pidfile)")/messages"

queue_flags() {
    "$QSTAT" -f -q "all.q@$HOST" 2>/dev/null |
        awk -v q="all.q@$HOST" '$1 == q { found = 1; print (NF >= 6 ? $6 : "ok") } END { if (!found) print "missing" }'
}
queue_ok() { [[ "$(queue_flags)" == ok ]]; }
if ! wait_until 30 "all.q@$HOST without state flags" queue_ok; then
    log "all.q@$HOST has state '$(queue_flags)'; clearing and enabling it once"
    /usr/bin/qmod -c "all.q@$HOST" >>"$XPR_LOG_DIR/qconf.out" 2>&1 || true
    /usr/bin/qmod -e "all.q@$HOST" >>"$XPR_LOG_DIR/qconf.out" 2>&1 || true
    wait_until 30 "all.q@$HOST without state flags" queue_ok ||
        die "all.q@$HOST still has state '$(queue_flags)'" "$EXECD_LOG" "$QMASTER_LOG"
fi

# ---------------------------------------------------------------- smoke job
smoke_out="$XPR_LOG_DIR/sge-smoke.out"
if ! (cd /tmp && timeout 90 runuser -u "$XPR_TEST_USER" -- /usr/bin/qsub -sync y -b y -N xpr-smoke \
    -o /dev/null -e /dev/null /bin/true) >"$smoke_out" 2>&1; then
    die "smoke 'qsub -sync y -b y /bin/true' as $XPR_TEST_USER failed" "$smoke_out" "$EXECD_LOG" "$QMASTER_LOG"
fi
log "$(grep -o 'Job [0-9]* exited with exit code 0' "$smoke_out" || tail -n1 "$smoke_out")"
log "sge ready in $(elapsed "$t0")s (all.q@$HOST, $SLOTS slots, PE smp)"
