#!/usr/bin/env python3
"""Write the config.json that points the test suite at the real systems this machine runs.

CI's clusters are reached exactly as a user's are: this file plus ``EXPYRE_PYTEST_CONFIG`` (its
path) and ``EXPYRE_PYTEST_SYSTEMS`` (a regexp selecting systems). Core counts are read from the
running services (Slurm node CPUs, SGE slots), falling back to the services scripts' defaults.

    python3 scripts/ci/make_test_config.py /var/lib/expyre-ci/config.json

When the network-namespace "remote host" is enabled (scripts/services/start-netns-sshd.sh), it
adds ``ssh_slurm_netns``: Slurm over ssh to ``xpr-remote``, a host whose logins carry ``SLURM_CONF``
(its own slurm.conf, naming the controller's address as seen from there), as at sites with
several clusters behind one login node.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REMOTE_PYTHON = "/opt/expyre-remote-venv/bin/python"
SSH = {"remsh_cmd": "ssh -p 2222", "rundir": "expyre_rundir", "python_cmd": REMOTE_PYTHON}
# the marker and ssh alias of scripts/services/start-netns-sshd.sh (port 22, known host key)
NETNS_MARKER = Path("/etc/expyre-services/netns.enabled")
NETNS_HOST = "xpr-remote"


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def slurm_cpus() -> int:
    m = re.search(r"CPUTot=(\d+)", _run(["scontrol", "show", "node"]))
    return int(m.group(1)) if m else 4


def sge_slots() -> int:
    out = _run(["/usr/bin/qconf", "-sq", "all.q"]) if Path("/usr/bin/qconf").exists() else ""
    m = re.search(r"^slots\s+(?:\d+,\[[^\]]*\])*\s*(\d+)", out, re.M)
    return int(m.group(1)) if m else 4


def systems() -> dict:
    n = slurm_cpus()
    slurm_parts = {"debug": {"ncores": n, "max_time": "10m"}, "long": {"ncores": n, "max_time": None}}
    slots = sge_slots()
    sge_parts = {"all.q": {"ncores": slots, "max_time": None}}
    pbs_header = ["#PBS -l nodes={nnodes}:ppn={ncores_per_node}"]
    sge_header = ["#$ -pe smp {tot_ncores}"]
    fast = {"vanish_grace": 10}
    out = {
        "slurm_local": {"host": None, "scheduler": "slurm", "scheduler_options": fast, "partitions": slurm_parts},
        "sge_local": {"host": None, "scheduler": "sge", "scheduler_options": fast, "header": sge_header, "partitions": sge_parts},
        "pbs_local": {"host": None, "scheduler": "pbs", "header": pbs_header, "partitions": slurm_parts,
                      "scheduler_options": {"bin_dir": "/opt/slurm-torque/bin", **fast}},
        "ssh_local": {"host": "xprtest@127.0.0.1", "scheduler": "local", **SSH},
        "ssh_slurm": {"host": "xprtest@127.0.0.1", "scheduler": "slurm", "scheduler_options": fast,
                      "partitions": slurm_parts, **SSH},
        "ssh_sge": {"host": "xprtest@127.0.0.1", "scheduler": "sge", "scheduler_options": fast, "header": sge_header,
                    "partitions": sge_parts, **SSH},
        "ssh_pbs": {"host": "xprpbs@127.0.0.1", "scheduler": "pbs", "header": pbs_header, "partitions": slurm_parts,
                    "scheduler_options": {"flavor": "auto", **fast}, **SSH},
    }
    # named to sort after ssh_slurm: tests that take the first Slurm-over-ssh system keep that one
    if NETNS_MARKER.exists():
        out["ssh_slurm_netns"] = {"host": f"xprtest@{NETNS_HOST}", "scheduler": "slurm", "scheduler_options": fast,
                              "partitions": slurm_parts, **SSH, "remsh_cmd": "ssh"}
    else:
        print(f"{NETNS_MARKER} is absent: no ssh_slurm_netns system (scripts/services/up.sh netns adds the host)",
              file=sys.stderr)
    return out


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    text = json.dumps({"systems": systems()}, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
