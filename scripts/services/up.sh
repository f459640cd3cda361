#!/usr/bin/env bash
# Bring up the chosen services, in an order that works, from a bare Debian 12 machine or
# from one where they are already up (then it only checks and smoke-tests, quickly).
#
#   bash scripts/services/up.sh [slurm] [pbs] [sge] [sshd] [netns]
#
# No argument means: slurm pbs sge sshd, plus netns once "up.sh netns" has enabled it
# (rm /etc/expyre-services/netns.enabled to drop it). "pbs" implies "slurm" (the PBS
# commands are Slurm's Torque wrappers); "netns" implies "sshd"; EXPYRE_NETNS=1 adds
# "netns". Order: slurm, pbs, sge, sshd, netns. slurm-wlm-torque is never
# dpkg-installed (the gridengine packages would silently remove it), so pbs and sge
# can come in any order, but pbs needs a running Slurm.
# Prints the time per service and a status table; exits 1 if any service failed.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
take_lock

ORDER=(slurm pbs sge sshd netns)
declare -A want=()
if [[ $# -eq 0 ]]; then
    for s in slurm pbs sge sshd; do want[$s]=1; done
    # Once enabled, the namespace stays in the default set: stop-all.sh + up.sh restore all.
    if netns_enabled; then
        want[netns]=1
        log "netns was enabled earlier ($XPR_NETNS_MARKER), so it is included"
    fi
fi
for a in "$@"; do
    case "$a" in
        slurm | pbs | sge | sshd | netns) want[$a]=1 ;;
        all) for s in "${ORDER[@]}"; do want[$s]=1; done ;;
        -h | --help)
            sed -n '2,13p' "$0"
            exit 0
            ;;
        *) die "unknown service '$a'; choose from: ${ORDER[*]} (or all)" ;;
    esac
done
[[ "${EXPYRE_NETNS:-0}" == 1 ]] && want[netns]=1
[[ -n "${want[pbs]:-}" ]] && want[slurm]=1
[[ -n "${want[netns]:-}" ]] && want[sshd]=1

selected=()
for s in "${ORDER[@]}"; do [[ -n "${want[$s]:-}" ]] && selected+=("$s"); done
log "services: ${selected[*]}"

T0=$(now)
declare -A result=() took=()

# Slurm and SGE must already know about the namespace when they are configured.
if [[ -n "${want[netns]:-}" ]]; then
    netns_mark_enabled
fi

t=$(now)
apt_install python3 python3-venv rsync # a Python and rsync for the ssh user's "remote" side
base_took=$(elapsed "$t")

export XPR_DONE_SERVICES=""
for s in "${selected[@]}"; do
    case "$s" in
        netns) script="start-netns-sshd.sh" ;;
        *) script="start-$s.sh" ;;
    esac
    log "==> $script"
    t=$(now)
    if EXPYRE_NETNS=0 bash "$XPR_SERVICES_DIR/$script"; then
        result[$s]=ok
        XPR_DONE_SERVICES="$XPR_DONE_SERVICES $s"
    else
        result[$s]=FAILED
    fi
    took[$s]=$(elapsed "$t")
    log "<== $script: ${result[$s]} in ${took[$s]}s"
done

total=$(elapsed "$T0")
echo
printf '%-8s %-7s %8s\n' SERVICE RESULT SECONDS
printf '%-8s %-7s %8s\n' base ok "$base_took"
rc=0
for s in "${selected[@]}"; do
    printf '%-8s %-7s %8s\n' "$s" "${result[$s]}" "${took[$s]}"
    [[ "${result[$s]}" == ok ]] || rc=1
done
printf '%-8s %-7s %8s\n' total "$([[ $rc == 0 ]] && echo ok || echo FAILED)" "$total"
echo
bash "$XPR_SERVICES_DIR/status.sh"
if [[ $rc != 0 ]]; then
    failed=()
    for s in "${selected[@]}"; do [[ "${result[$s]}" == ok ]] || failed+=("$s"); done
    die "failed: ${failed[*]} (see the ERROR lines above; logs in $XPR_LOG_DIR, /var/log/slurm, /var/spool/gridengine, $XPR_SSHD_DIR)"
fi
