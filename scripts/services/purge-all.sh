#!/usr/bin/env bash
# DESTRUCTIVE: undo what up.sh did, back to a machine without these services, so that a
# from-scratch run of up.sh can be measured again. Needs XPR_PURGE_YES=1.
# Stops the daemons (stop-all.sh), removes the network namespace and veth pair, purges
# the packages the scripts installed, their data (Slurm state and accounting database,
# SGE spool), the test sshd directory, /opt/slurm-torque, the users xprtest, xprpbs and xprslow
# with their homes, and the lines the scripts added to /etc/hosts, /etc/ssh/. Root's
# ~/.ssh/id_ed25519 is kept (only the test keys are taken out of its authorized_keys).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
[[ "${XPR_PURGE_YES:-0}" == 1 ]] || die "this removes packages, data and users; run with XPR_PURGE_YES=1"
take_lock
t0=$(now)

bash "$XPR_SERVICES_DIR/stop-all.sh" >/dev/null || die "stop-all.sh failed"

if ip link show "$XPR_VETH_HOST" >/dev/null 2>&1; then ip link del "$XPR_VETH_HOST"; fi
if ip netns list | awk '{print $1}' | grep -qx "$XPR_NETNS"; then ip netns del "$XPR_NETNS"; fi

pkgs=()
for p in munge libmunge2 slurmctld slurmd slurm-client slurmdbd slurm-wlm-basic-plugins \
    mariadb-server mariadb-client mariadb-common mysql-common libslurm-perl libslurmdb-perl \
    libswitch-perl gridengine-master gridengine-exec gridengine-client gridengine-common \
    openssh-server rsync; do
    pkg_installed "$p" && pkgs+=("$p")
done
if ((${#pkgs[@]})); then
    log "purging ${pkgs[*]}"
    apt-get -y -q -o DPkg::Lock::Timeout=300 purge "${pkgs[@]}" >>"$APT_LOG" 2>&1 || die "apt-get purge failed" "$APT_LOG"
    apt-get -y -q -o DPkg::Lock::Timeout=300 autoremove --purge >>"$APT_LOG" 2>&1 || die "apt-get autoremove failed" "$APT_LOG"
fi

rm -rf /etc/slurm /var/lib/slurm /var/log/slurm /var/spool/slurmd /etc/munge /var/lib/munge /var/log/munge \
    /run/munge /var/lib/mysql /var/log/mysql /run/mysqld /etc/mysql \
    "$XPR_SGE_ROOT" /var/spool/gridengine /etc/gridengine /etc/default/gridengine \
    "$XPR_TORQUE_DIR" "$XPR_SSHD_DIR" "/etc/netns/$XPR_NETNS" "$XPR_STATE_DIR" \
    /etc/ssh/ssh_config.d/expyre-test-sshd.conf /etc/ssh/ssh_config.d/expyre-netns-sshd.conf \
    /tmp/expyre-pbs-smoke.sh
# In place (not sed -i, which replaces the file): /etc/hosts may be a bind mount.
sed '/^# >>> expyre netns$/,/^# <<< expyre netns$/d; /^# >>> expyre hostname$/,/^# <<< expyre hostname$/d' /etc/hosts >"$XPR_RUN_DIR/hosts.new"
cat "$XPR_RUN_DIR/hosts.new" >/etc/hosts
rm -f "$XPR_RUN_DIR/hosts.new"
if [[ -e /etc/ssh/ssh_known_hosts ]]; then
    sed -i '/^# >>> expyre test sshd$/,/^# <<< expyre test sshd$/d; /^# >>> expyre netns sshd$/,/^# <<< expyre netns sshd$/d' \
        /etc/ssh/ssh_known_hosts
fi
for u in "$XPR_TEST_USER" "$XPR_PBS_USER" "$XPR_SLOW_USER"; do
    if id -u "$u" >/dev/null 2>&1; then
        userdel -r "$u" >/dev/null 2>&1 || userdel "$u"
    fi
done
if [[ -e /root/.ssh/authorized_keys ]]; then
    sed -i '/ xprtest@expyre-test$/d; / xprpbs@expyre-test$/d; / root@expyre-test$/d' /root/.ssh/authorized_keys
fi
rm -f "$XPR_RUN_DIR"/apt-updated.*
log "purged in $(elapsed "$t0")s"
