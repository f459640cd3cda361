#!/usr/bin/env bash
# Stop every daemon started by these scripts, in reverse start order, by pid file only
# (SIGTERM, then SIGKILL after a deadline; a pid whose process name does not match the
# daemon is left alone). The network namespace and the veth pair are kept; packages,
# configuration, users and keys are kept too, so up.sh brings everything back quickly.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
take_lock

t0=$(now)
failed=0
while read -r name pidfile comm; do
    deadline=30
    [[ "$name" == sge_qmaster || "$name" == mariadbd ]] && deadline=60
    stop_pidfile "$name" "$pidfile" "$comm" "$deadline" || { log "could not stop $name"; failed=1; }
done < <(xpr_daemons | tac)
log "stopped in $(elapsed "$t0")s"
bash "$XPR_SERVICES_DIR/status.sh"
[[ $failed == 0 ]] || die "some daemons could not be stopped"
