"""The Slurm plugin's clean submit environment through the ssh transport's remote script: what
Slurm sets in a job or step is removed, the client's own settings (SLURM_CONF...) are kept. Needs
both plugins, so it lives with the workspace's tests."""

from __future__ import annotations

import subprocess

from expyre_slurm import SlurmScheduler
from expyre_slurm.environment import CLIENT_INPUT_NAMES
from expyre_ssh import remote

KEPT = {**{name: "kept" for name in CLIENT_INPUT_NAMES}, "SLURM_CONF": "/etc/slurm/other/slurm.conf",
        "SLURM_CLUSTERS": "alpha", "SBATCH_ACCOUNT": "proj1", "SQUEUE_FORMAT": "%i"}
JOB = {"SLURM_JOB_ID": "4242", "SLURM_JOBID": "4242", "SLURM_NTASKS": "1", "SLURM_CPUS_PER_TASK": "3",
       "SLURM_MEM_PER_NODE": "100", "SLURM_NODELIST": "vm", "SLURM_ARRAY_TASK_ID": "2", "SLURM_STEP_ID": "0",
       "SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_0": "3", "SLURMD_NODENAME": "vm"}


def test_ssh_script_removes_job_variables_and_keeps_client_ones() -> None:
    script = remote.build_script(["env"], unset_env_prefixes=SlurmScheduler.foreign_env_prefixes)
    env_in = {"PATH": "/usr/bin:/bin", **KEPT, **JOB}
    # as sshd runs it: the login shell gets the remote command, stdin the script
    proc = subprocess.run(["sh", "-c", remote.REMOTE_COMMAND], input=remote.encode_stdin(script, None),
                          capture_output=True, env=env_in, timeout=60)
    out, rc = remote.split_trailer(proc.stdout.decode())
    assert rc == 0, proc.stderr
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert {k: env.get(k) for k in KEPT} == KEPT
    assert not set(JOB) & set(env)
