#!/usr/bin/env bash
# One line per daemon managed by these scripts: running/stopped, pid, pid file.
# Exit status 0 always (use up.sh to fix what is stopped).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

printf '%-12s %-8s %-8s %s\n' DAEMON STATE PID PIDFILE
while read -r name pidfile comm; do
    pid=$(pid_of "$pidfile")
    if [[ -n "$pid" ]] && proc_alive "$pid" "$comm"; then
        printf '%-12s %-8s %-8s %s\n' "$name" running "$pid" "$pidfile"
    else
        printf '%-12s %-8s %-8s %s\n' "$name" stopped - "$pidfile"
    fi
done < <(xpr_daemons)
if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$XPR_NETNS"; then
    printf '%-12s %-8s %-8s %s\n' "netns" present - "$XPR_NETNS ($XPR_VETH_HOST $XPR_VETH_HOST_IP <-> $XPR_VETH_NS $XPR_VETH_NS_IP)"
fi
