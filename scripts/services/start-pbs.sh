#!/usr/bin/env bash
# Torque-style PBS commands (qsub qstat qdel qhold qrls qalter qrerun pbsnodes) on top of
# the Slurm that start-slurm.sh brought up. Debian has no PBS server: these are Slurm's
# own Perl wrappers from the package slurm-wlm-torque.
#
# slurm-wlm-torque "Conflicts: gridengine-client" (both own /usr/bin/qsub ...), and
# installing gridengine silently removes it. So it is never dpkg-installed: the .deb is
# downloaded and unpacked into /opt/slurm-torque/bin, next to symlinks to the Slurm
# commands it calls through ${FindBin::Bin}. Its Perl dependencies are installed
# normally. Use it with PATH=/opt/slurm-torque/bin:$PATH (the user xprpbs has that).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
take_lock

BIN="$XPR_TORQUE_DIR/bin"
STAMP="$XPR_TORQUE_DIR/.version"
PLUGSTACK_D=/etc/slurm/plugstack.conf.d
t0=$(now)

command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q ' is UP' ||
    die "Slurm is not up: run start-slurm.sh first (or up.sh slurm pbs)" /var/log/slurm/slurmctld.log

apt_install libslurm-perl libslurmdb-perl libswitch-perl perl

# ---------------------------------------------------------------- the wrappers
version=$(dpkg-query -W -f='${Version}' libslurm-perl)
if [[ -x "$BIN/qsub" && "$(cat "$STAMP" 2>/dev/null)" == "$version" ]]; then
    log "torque wrappers $version already in $BIN"
else
    log "fetching slurm-wlm-torque=$version (unpacked, not installed)"
    make_scratch
    tmp="$XPR_SCRATCH"
    apt_update
    if ! (cd "$tmp" && apt-get -q download "slurm-wlm-torque=$version") >>"$APT_LOG" 2>&1; then
        apt_update force
        (cd "$tmp" && apt-get -q download "slurm-wlm-torque=$version") >>"$APT_LOG" 2>&1 ||
            die "apt-get download slurm-wlm-torque=$version failed" "$APT_LOG"
    fi
    dpkg-deb -x "$tmp"/slurm-wlm-torque_*.deb "$tmp/x" || die "dpkg-deb -x failed"
    install -d -m 0755 "$BIN" "$XPR_TORQUE_DIR/share/man/man1"
    for f in "$tmp"/x/usr/bin/*; do
        install -m 0755 "$f" "$BIN/$(basename "$f")"
    done
    cp -f "$tmp"/x/usr/share/man/man1/*.1.gz "$XPR_TORQUE_DIR/share/man/man1/" 2>/dev/null || true
    printf '%s\n' "$version" >"$STAMP"
    log "installed $(ls "$tmp/x/usr/bin" | tr '\n' ' ')into $BIN"
fi
# qsub & co. run ${FindBin::Bin}/sbatch etc., so the Slurm commands must sit next to them.
for c in sbatch salloc srun scontrol squeue scancel sinfo sacct; do
    target=$(command -v "$c" 2>/dev/null || true)
    [[ "$target" == "$BIN/"* ]] && target="/usr/bin/$c"
    [[ -x "$target" ]] || die "$c not found (is slurm-client installed?)"
    [[ "$(readlink "$BIN/$c" 2>/dev/null)" == "$target" ]] || ln -sfn "$target" "$BIN/$c"
done
for c in qsub qstat qdel qhold qrls qalter pbsnodes; do
    [[ -x "$BIN/$c" ]] || die "$BIN/$c missing after unpacking slurm-wlm-torque"
done

# ---------------------------------------------------------------- spank_pbs
# Gives every Slurm job PBS_JOBID, PBS_O_WORKDIR, ...; slurmstepd reads plugstack at each
# job launch, so no restart is needed.
spank=$(find /usr/lib -name spank_pbs.so -path '*slurm*' 2>/dev/null | head -n1)
[[ -n "$spank" ]] || die "spank_pbs.so not found (package slurm-wlm-basic-plugins)"
install -d -m 0755 "$PLUGSTACK_D"
if [[ ! -e /etc/slurm/plugstack.conf ]] || ! grep -q 'plugstack.conf.d' /etc/slurm/plugstack.conf; then
    echo "include $PLUGSTACK_D/*.conf" >>/etc/slurm/plugstack.conf
fi
printf 'required %s\n' "$spank" >"$XPR_RUN_DIR/pbs.conf.new"
install_if_changed "$XPR_RUN_DIR/pbs.conf.new" "$PLUGSTACK_D/pbs.conf" 0644 root:root &&
    log "enabled $spank in $PLUGSTACK_D/pbs.conf" || true
rm -f "$XPR_RUN_DIR/pbs.conf.new"

# ---------------------------------------------------------------- users
ensure_user "$XPR_TEST_USER"
ensure_user "$XPR_PBS_USER"
pbs_home=$(user_home "$XPR_PBS_USER")
pbs_path="$BIN:/usr/local/bin:/usr/bin:/bin"
for f in .profile .bashrc; do
    [[ -e "$pbs_home/$f" ]] || install -m 0644 -o "$XPR_PBS_USER" -g "$XPR_PBS_USER" /dev/null "$pbs_home/$f"
    set_block "$pbs_home/$f" "expyre torque wrappers" \
        "case \":\$PATH:\" in *\":$BIN:\"*) ;; *) PATH=\"$BIN:\$PATH\" ;; esac; export PATH" || true
done
# For ssh sessions (sshd has PermitUserEnvironment PATH,...; see start-sshd.sh).
install -d -m 0700 -o "$XPR_PBS_USER" -g "$XPR_PBS_USER" "$pbs_home/.ssh"
envf="$pbs_home/.ssh/environment"
[[ -e "$envf" ]] || install -m 0600 -o "$XPR_PBS_USER" -g "$XPR_PBS_USER" /dev/null "$envf"
if ! grep -qx "PATH=$pbs_path" "$envf"; then
    { grep -v '^PATH=' "$envf" || true; echo "PATH=$pbs_path"; } >"$envf.new"
    cat "$envf.new" >"$envf"
    rm -f "$envf.new"
fi

# ---------------------------------------------------------------- smoke: qsub as xprtest
smoke=/tmp/expyre-pbs-smoke.sh
printf '#!/bin/bash\n#PBS -N xpr-pbs-smoke\ntrue\n' >"$smoke"
chmod 0755 "$smoke"
as_test() { runuser -u "$XPR_TEST_USER" -- env PATH="$BIN:/usr/bin:/bin" "$@"; }
[[ "$(as_test bash -c 'command -v qsub')" == "$BIN/qsub" ]] || die "qsub on PATH is not $BIN/qsub"
jid=$(cd /tmp && as_test qsub -o /dev/null -e /dev/null -l walltime=00:01:00 "$smoke" 2>"$XPR_LOG_DIR/pbs-smoke.err") ||
    die "smoke qsub failed" "$XPR_LOG_DIR/pbs-smoke.err" /var/log/slurm/slurmctld.log
jid=$(printf '%s' "$jid" | tr -d '[:space:]')
[[ "$jid" =~ ^[0-9]+ ]] || die "qsub printed '$jid', not a job id" "$XPR_LOG_DIR/pbs-smoke.err"
pbs_done() {
    local out
    out=$(as_test qstat "$jid" 2>/dev/null) || return 0 # gone (exit 153)
    [[ -z "$out" ]] && return 0
    awk -v id="$jid" '$1 == id { print $5 }' <<<"$out" | grep -qx C
}
wait_until 60 "PBS smoke job $jid to reach state C" pbs_done ||
    die "PBS smoke job $jid not finished after 60 s: $(as_test qstat "$jid" 2>&1 | tail -n1)" /var/log/slurm/slurmctld.log
state=$(scontrol show job -o "$jid" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true)
[[ -z "$state" || "$state" == COMPLETED ]] || die "PBS smoke job $jid ended $state" /var/log/slurm/slurmctld.log
log "PBS smoke job $jid done (qsub/qstat from $BIN); pbs ready in $(elapsed "$t0")s"
