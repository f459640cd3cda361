#!/usr/bin/env bash
# Re-record the Grid Engine outputs in this directory from a real cluster (the one that
# scripts/services/start-sge.sh brings up: all.q with 4 slots, PE smp). Run as the user the tests
# run as; it submits a handful of short jobs, waits for them, and deletes what it left queued.
#   bash plugins/expyre_sge/tests/data/record.sh
set -euo pipefail
out="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
me=$(id -un)
sub() { /usr/bin/qsub -terse -cwd -S /bin/bash -o /dev/null -e /dev/null "$@"; }
printf 'sleep 120\n' >sleep.sh
printf 'exit 0\n' >ok.sh
printf 'exit 3\n' >three.sh
wait_state() { # job state
    for _ in $(seq 100); do
        /usr/bin/qstat -u "$me" | awk -v j="$1" '$1 == j { print $5 }' | grep -qx "$2" && return 0
        sleep 0.1
    done
    echo "job $1 never reached $2" >&2; return 1
}
wait_gone() { for _ in $(seq 100); do /usr/bin/qacct -j "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }

# finished jobs for qacct: ok, exit 3, h_rt exceeded, qdel while running
ok=$(sub -N rec_ok ok.sh)
three=$(sub -N rec_three three.sh)
hrt=$(sub -N rec_hrt -l h_rt=0:00:02 sleep.sh)
killed=$(sub -N rec_killed sleep.sh)
wait_state "$killed" r
/usr/bin/qdel "$killed" >/dev/null
for j in "$ok" "$three" "$hrt" "$killed"; do wait_gone "$j"; done
/usr/bin/qacct -j "$ok" >"$out/qacct_ok.txt"
/usr/bin/qacct -j "$three" >"$out/qacct_exit3.txt"
/usr/bin/qacct -j "$hrt" >"$out/qacct_h_rt.txt"
/usr/bin/qacct -j "$killed" >"$out/qacct_qdel.txt"
{ /usr/bin/qacct -j 9999999 || true; } >"$out/qacct_unknown.txt" 2>&1

# jobs in many states at once
r=$(sub -N rec_running sleep.sh)
hr=$(sub -N rec_hold_running sleep.sh)
s=$(sub -N rec_suspended sleep.sh)
wait_state "$r" r; wait_state "$hr" r; wait_state "$s" r
/usr/bin/qhold "$hr" >/dev/null; /usr/bin/qmod -sj "$s" >/dev/null
wait_state "$hr" hr; wait_state "$s" s
qw=$(sub -N rec_waiting -pe smp 4 sleep.sh)
hqw=$(sub -N rec_held -h sleep.sh)
arr=$(sub -N rec_array -h -t 1-3 sleep.sh | cut -d. -f1)
eqw=$(/usr/bin/qsub -terse -cwd -S /bin/bash -o /dev/null -e /nonexistent_dir/x.err -N rec_error ok.sh)
wait_state "$eqw" Eqw
d=$(sub -N rec_deleting sleep.sh)
/usr/bin/qdel "$r" >/dev/null
/usr/bin/qstat -xml -u "$me" >"$out/qstat_xml_states.xml"
/usr/bin/qstat -xml -u "$me" -s prsz >"$out/qstat_xml_find.xml"
/usr/bin/qstat -j "$eqw,$hqw" >"$out/qstat_j_error.txt"
/usr/bin/qdel "$hr" "$s" "$qw" "$hqw" "$arr" "$eqw" "$d" >"$out/qdel_mixed.txt" 2>&1 || true
/usr/bin/qdel "$ok" 9999999 >"$out/qdel_gone.txt" 2>&1 || true
echo "recorded into $out"
